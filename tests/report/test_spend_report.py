"""`walletd spend-report`: exact sums by status and on-chain check, read-only, in four formats."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, datetime
from pathlib import Path

import pytest

from tests.plugins.daemon import PAY_TO
from tests.report.conftest import Books, sqlite_path, sqlite_shell, walletd
from walletd.domain.payment import PaymentStatus as S, PayReceipt
from walletd.domain.report import Tally, parse_time, total_of
from walletd.errors import InvalidRequestError
from walletd.report.csv_format import read_csv
from walletd.report.json_format import read_json

TX = "0x" + "cd" * 32


def _history(books: Books) -> None:
    """alpha: one of every status; beta: one pending payment and two refusals."""
    plan = [
        ("a1", 3000, "llama", "api.example", S.SETTLED, TX),
        ("a2", 3000, "llama", "api.example", S.EXPIRED, None),
        ("a3", 4000, "qwen", "img.example", S.DISPUTED, None),
        ("a4", 2000, "qwen", "img.example", S.CANCELLED, None),
        ("a5", 1000, "llama", "api.example", S.REJECTED, None),
        ("a6", 1500, "llama", "api.example", None, None),
        ("a7", 1000, "llama", "api.example", S.SETTLED, None),
    ]
    for key, amount, model, host, target, tx in plan:
        got = books.pay("alpha", key, amount, host=host, model=model)
        assert isinstance(got, PayReceipt), got
        if target is not None:
            books.move(got.payment_id, target, settled_tx=tx)
    assert isinstance(books.pay("beta", "b1", 5000, model="llama"), PayReceipt)
    assert not isinstance(books.pay("beta", "b2", 9000, model="llama"), PayReceipt)
    assert not isinstance(books.pay("beta", "b3", 4000, model="qwen"), PayReceipt)


EXPECTED = {
    "settled": Tally(2, 4000),
    "pending": Tally(3, 7500),
    "expired": Tally(1, 3000),
    "disputed": Tally(1, 4000),
    "cancelled": Tally(1, 2000),
    "refused": Tally(2, 13000),
}


def test_buckets_and_the_chain_check_sum_exactly(books: Books) -> None:
    _history(books)
    report = books.report()
    totals = report.totals
    assert dict(totals.statuses) == EXPECTED
    assert totals.confirmed == Tally(1, 3000)
    assert totals.unconfirmed == Tally(7, 17500)
    assert totals.payments == Tally(8, 20500)
    assert [(r.reason, r.rule, r.count, r.amount) for r in report.refusals] == [
        ("BUDGET_EXCEEDED", "daily", 2, 13000)
    ]


def test_rows_group_by_client_status_model_host_payee_and_day(books: Books) -> None:
    _history(books)
    by = {r.key: r for r in books.report("client", "status").rows}
    assert by[("beta", "refused")].tally("refused") == Tally(2, 13000)
    assert by[("beta", "pending")].tally("pending") == Tally(1, 5000)
    assert by[("alpha", "settled")].confirmed == Tally(1, 3000)
    models = {r.key: r for r in books.report("model").rows}
    assert models[("qwen",)].tally("refused") == Tally(1, 4000)
    assert models[("qwen",)].payments == Tally(2, 6000)
    hosts = books.report("host", "payee").rows
    assert {r.key for r in hosts} == {
        ("api.example", PAY_TO.lower()),
        ("img.example", PAY_TO.lower()),
    }
    today = datetime.now(UTC).date().isoformat()
    (day,) = books.report("day").rows
    assert day.key == (today,) and day.payments == Tally(8, 20500)
    for dims in (("client",), ("model", "status"), ("host", "day")):
        assert total_of(books.report(*dims).rows) == books.report().totals


def test_time_window_and_client_filter(books: Books) -> None:
    _history(books)
    now = parse_time("0m", 10**13)
    assert books.report(since_ms=now).totals.payments == Tally(0, 0)
    assert books.report(client="beta").totals.statuses["refused"] == Tally(2, 13000)
    assert books.report(client="beta").totals.payments == Tally(1, 5000)
    assert parse_time("24h", 100_000_000) == 100_000_000 - 86_400_000
    assert parse_time("30m", 1_800_000) == 0
    assert parse_time("2026-11-01", 0) == 1_793_491_200_000
    assert parse_time("2026-11-01T01:00:00+01:00", 0) == 1_793_491_200_000
    with pytest.raises(InvalidRequestError):
        parse_time("yesterday", 0)


@pytest.mark.slow
def test_csv_and_json_round_trip_to_the_same_totals(books: Books, tmp_path: Path) -> None:
    _history(books)
    for dims in ((), ("client", "model"), ("status", "day", "host")):
        group = [a for d in dims for a in ("--group-by", d)]
        outs = {}
        for fmt in ("csv", "json"):
            out = tmp_path / f"r.{fmt}"
            walletd("spend-report", "--db-url", books.url, "--format", fmt, "--out", str(out),
                    *group, check=True)  # fmt: skip
            outs[fmt] = out.read_text()
        rows, total, audit = read_csv(outs["csv"])
        from_json = read_json(outs["json"])
        assert audit == "ok"
        assert total == from_json.totals == books.report(*dims).totals
        assert total_of(rows) == total == total_of(from_json.rows)
        assert [r.key for r in rows] == [r.key for r in from_json.rows]
        assert dict(total.statuses) == EXPECTED
    doc = json.loads(outs["json"])
    assert doc["totals"]["statuses"]["settled"] == {"count": 2, "amount": 4000, "usdc": "0.004000"}


def test_the_report_is_read_only_and_does_not_wait_for_the_write_lock(sqlite_books: Books) -> None:
    _history(sqlite_books)
    db = sqlite_path(sqlite_books.url)
    before = Path(db).read_bytes()
    holder = sqlite3.connect(db, isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # what a Pay holds: the ledger's write lock
    try:
        proc = walletd("spend-report", "--db-url", sqlite_books.url, "--format", "json")
        assert proc.returncode == 0, proc.stderr
        assert json.loads(proc.stdout)["totals"]["payments"]["amount"] == 20500
        assert walletd("audit", "verify", "--db-url", sqlite_books.url).returncode == 0
    finally:
        holder.rollback()
        holder.close()
    assert Path(db).read_bytes() == before


@pytest.mark.parametrize("fmt", ["table", "csv", "json", "html"])
def test_a_broken_chain_is_announced_on_stderr_and_in_every_format(
    sqlite_books: Books, fmt: str
) -> None:
    _history(sqlite_books)
    sqlite_shell(
        sqlite_path(sqlite_books.url), "UPDATE payments SET amount = 2 WHERE amount = 4000"
    )
    proc = walletd("spend-report", "--db-url", sqlite_books.url, "--format", fmt)
    assert proc.returncode == 4
    assert "WARNING: LEDGER AUDIT FAILED" in proc.stderr
    out = proc.stdout
    if fmt == "json":
        audit = json.loads(out)["audit"]
        assert audit["ok"] is False and audit["warning"].startswith("WARNING: LEDGER AUDIT FAILED")
    elif fmt == "csv":
        _, _, cell = read_csv(out)
        assert cell.startswith("FAILED: payment_events id=")
    elif fmt == "html":
        assert 'class="audit failed"' in out and "LEDGER AUDIT FAILED" in out
    else:
        assert "LEDGER AUDIT FAILED" in out


def test_an_unknown_client_or_dimension_is_refused(sqlite_books: Books) -> None:
    proc = walletd("spend-report", "--db-url", sqlite_books.url, "--client", "nobody")
    assert proc.returncode == 1 and "no client named 'nobody'" in proc.stderr
    proc = walletd("spend-report", "--db-url", sqlite_books.url, "--group-by", "colour")
    assert proc.returncode == 2
