"""What Pay reads to enforce budgets is covered by ``walletd audit verify`` too.

The running totals (``spend_buckets``) are recomputed from the payments; every
client, budget and freeze change is a hash-chained admin event, replayed and
compared with the live rows; and ``audit head`` prints one head per chain,
which ``audit verify --anchor`` takes back, so a cut-off tail of any chain is
seen. Edits are made with plain SQL outside walletd, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text

from tests.report.conftest import Books, walletd
from walletd.db import migrate, tables
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain import audit
from walletd.domain.budget import Budget
from walletd.domain.payment import PaymentStatus as S, PayReceipt
from walletd.errors import BudgetExceededError
from walletd.service import admin
from walletd.service.clock import now_ms

CHAINS = ("payment_events", "decisions", "key_events", "admin_events")
"""Every hash-chained table (``walletd.domain.CHAINS``), in ``audit head`` order."""
BUCKETS = "spend_buckets"


def _sql(books: Books, statement: str) -> None:
    """Change the ledger behind walletd's back (an intruder with the database)."""
    with books.store.engines.write.begin() as conn:
        conn.execute(text(statement))


def _verify(books: Books) -> tuple[int, dict[str, Any]]:
    proc = walletd("audit", "verify", "--db-url", books.url, "--json")
    return proc.returncode, json.loads(proc.stdout)


def _breaks(books: Books, table: str) -> list[audit.Break]:
    result = books.verify()
    return [b for b in result.breaks if b.table == table]


# ----------------------------------------------------------------- running totals


def test_zeroed_spend_buckets_fail_verify_naming_the_bucket(books: Books) -> None:
    """The attack: zero the totals of an exhausted client, and it gets another signature."""
    for key in ("a1", "a2", "a3", "a4", "a5", "a6"):
        assert isinstance(books.pay("alpha", key, 3000), PayReceipt)
    assert isinstance(books.pay("alpha", "a7", 3000), BudgetExceededError)  # 18000 of 20000
    assert books.verify().ok
    _sql(books, "UPDATE spend_buckets SET amount = 0 WHERE span >= 0")
    assert isinstance(books.pay("alpha", "a8", 3000), PayReceipt)  # what verify must expose

    result = books.verify()
    assert not result.ok
    named = {b.subject for b in result.breaks if b.table == BUCKETS}
    assert "client alpha lifetime" in named and "global lifetime" in named
    assert any(s.startswith("client alpha day ") for s in named if s), named
    lifetime = next(b for b in result.breaks if b.subject == "client alpha lifetime")
    assert "stored 3000, the payments sum to 21000" in lifetime.problem

    proc = walletd("audit", "verify", "--db-url", books.url)
    assert proc.returncode == 1
    assert "spend_buckets (client alpha" in proc.stdout
    code, doc = _verify(books)
    assert code == 1 and doc["ok"] is False
    assert {"table": "spend_buckets", "subject": "client alpha lifetime"}.items() <= next(
        b for b in doc["breaks"] if b["subject"] == "client alpha lifetime"
    ).items()


def test_released_and_pruned_buckets_verify_and_only_kept_ones_are_compared(
    books: Books,
) -> None:
    paid = [books.pay("alpha", k, 2000) for k in ("p1", "p2", "p3")]
    assert all(isinstance(p, PayReceipt) for p in paid)
    books.move(paid[0].payment_id, S.EXPIRED)  # type: ignore[union-attr]
    books.move(paid[1].payment_id, S.SETTLED)  # type: ignore[union-attr]
    result = books.verify()
    assert result.ok, result.breaks
    assert result.buckets > 0
    with books.store.write() as tx:  # every second, minute and hour bucket is pruned
        tx.prune_spend_buckets(now_ms() + 2 * 86_400_000)
    result = books.verify()
    assert result.ok, result.breaks
    # What is kept (day and lifetime buckets) is still compared exactly.
    _sql(books, "UPDATE spend_buckets SET amount = amount - 1 WHERE span = 86400000")
    named = {b.subject for b in _breaks(books, BUCKETS)}
    assert any(s and s.startswith("client alpha day ") for s in named), named
    assert any(s and s.startswith("global day ") for s in named), named


def test_a_deleted_bucket_is_named_as_missing(books: Books) -> None:
    assert isinstance(books.pay("beta", "b1", 1000), PayReceipt)
    _sql(books, "DELETE FROM spend_buckets WHERE span = 0 AND scope <> 0")
    (brk,) = _breaks(books, BUCKETS)
    assert brk.subject == "client beta lifetime"
    assert "stored missing, the payments sum to 1000" in brk.problem


# ------------------------------------------------------------ clients and budgets


def test_every_client_budget_and_freeze_change_is_a_chained_admin_event(books: Books) -> None:
    admin.add_client(books.store, "gamma", frozenset({"read"}))
    admin.set_budget(books.store, None, admin.BudgetChange(monthly=50_000))
    admin.set_frozen(books.store, True)
    admin.set_frozen(books.store, False)
    admin.revoke_client(books.store, "gamma")
    admin.revoke_client(books.store, "gamma")  # already revoked: nothing changes, no event
    A = tables.AdminEvent
    with books.store.engines.read.connect() as conn:
        rows = conn.execute(select(A).order_by(A.id)).all()
    ops = [(r.operation, r.client) for r in rows]
    assert ops == [
        ("snapshot", ""),
        ("client-add", "alpha"),
        ("budget-set", "alpha"),
        ("client-add", "beta"),
        ("budget-set", "beta"),
        ("client-add", "gamma"),
        ("budget-set", ""),
        ("freeze", ""),
        ("freeze", ""),
        ("client-revoke", "gamma"),
    ]
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert "token" not in json.dumps([json.loads(r.data) for r in rows]).replace("token_hash", "")
    result = books.verify()
    assert result.ok, result.breaks
    assert (result.admin_events, result.clients) == (10, 3)
    code, doc = _verify(books)
    assert code == 0 and doc["admin_events"] == 10


@pytest.mark.parametrize(
    ("sql", "table", "subject", "problem"),
    [
        ("UPDATE clients SET daily = 99000000 WHERE name = 'beta'", "clients", "client beta",
         "budget edited: daily is 99000000, the admin events say 8000"),
        ("UPDATE clients SET daily = NULL, payees = '0xabc' WHERE name = 'alpha'", "clients",
         "client alpha", "budget edited: daily is None, the admin events say 20000"),
        ("UPDATE clients SET revoked_at_ms = NULL WHERE name = 'gone'", "clients", "client gone",
         "row edited: revoked_at_ms is None"),
        ("UPDATE clients SET token_hash = 'x' WHERE name = 'alpha'", "clients", "client alpha",
         "row edited: token_hash is 'x'"),
        ("UPDATE wallet_state SET total = NULL", "wallet_state", "global",
         "budget edited: total is None, the admin events say 1000000"),
        ("UPDATE wallet_state SET frozen = false", "wallet_state", "global",
         "row edited: frozen is False, the admin events say True"),
        ("INSERT INTO clients (id, name, token_hash, scopes, created_at_ms, payees, hosts) "
         "VALUES (99, 'intruder', 'h', 'pay', 0, '', '')", "clients", "client intruder",
         "added outside walletd"),
        ("DELETE FROM clients WHERE name = 'gone'", "clients", "client gone",
         "client row is missing"),
    ],
    ids=["budget", "budget-cleared", "unrevoked", "token-swapped", "global-budget", "unfrozen",
         "client-inserted", "client-deleted"],
)  # fmt: skip
def test_edited_client_or_budget_fails_verify_naming_it(
    books: Books, sql: str, table: str, subject: str, problem: str
) -> None:
    admin.add_client(books.store, "gone", frozenset({"read"}))
    admin.revoke_client(books.store, "gone")
    admin.set_budget(books.store, None, admin.BudgetChange(total=1_000_000))
    admin.set_frozen(books.store, True)
    assert books.verify().ok
    _sql(books, sql)
    found = [b for b in books.verify().breaks if b.table == table and b.subject == subject]
    assert any(problem in b.problem for b in found), books.verify().breaks
    proc = walletd("audit", "verify", "--db-url", books.url)
    assert proc.returncode == 1 and f"{table}" in proc.stdout and f"({subject})" in proc.stdout


def test_upgrade_records_the_existing_clients_in_a_snapshot(ledger_url: str) -> None:
    engines = make_engines(ledger_url)
    try:
        migrate.upgrade(engines.write, "0006")
        with engines.write.begin() as conn:
            conn.execute(
                text(
                    "INSERT INTO clients (id, name, token_hash, scopes, created_at_ms, "
                    "daily, payees, hosts) VALUES (7, 'old', 'h', 'pay', 5, 1000, '', '')"
                )
            )
            conn.execute(text("UPDATE wallet_state SET frozen = true, hourly = 42"))
        migrate.upgrade(engines.write)
        store = Store(engines)
        with store.write() as tx:
            tx.set_client_budget("old", Budget(daily=2000))
        books = Books(ledger_url, store, None)  # type: ignore[arg-type]
        result = books.verify()
        assert result.ok and (result.admin_events, result.clients) == (2, 1), result.breaks
        with engines.write.begin() as conn:
            conn.execute(text("UPDATE clients SET daily = 1000 WHERE name = 'old'"))
            conn.execute(text("UPDATE wallet_state SET hourly = NULL"))
        found = {(b.table, b.subject) for b in books.verify().breaks}
        assert found == {("clients", "client old"), ("wallet_state", "global")}
    finally:
        engines.dispose()


# ---------------------------------------------------------------------- anchors


def _history(books: Books) -> None:
    for key in ("h1", "h2"):
        assert isinstance(books.pay("alpha", key, 1000), PayReceipt)
    assert not isinstance(books.pay("beta", "h3", 9000), PayReceipt)  # a refusal decision
    with books.store.write() as tx:
        tx.add_key_event(now_ms(), "rotate", ("0x" + "1" * 40, "0x" + "2" * 40), {})
        tx.add_key_event(now_ms(), "change-passphrase", ("0x" + "2" * 40, "0x" + "2" * 40), {})
    admin.add_client(books.store, "late", frozenset({"read"}))


def test_audit_head_prints_every_chain_and_verify_takes_it_back(
    books: Books, tmp_path: Path
) -> None:
    _history(books)
    as_text = walletd("audit", "head", "--db-url", books.url, check=True).stdout
    as_json = walletd("audit", "head", "--db-url", books.url, "--json", check=True).stdout
    heads = json.loads(as_json)
    assert sorted(heads) == sorted(CHAINS)
    assert [line.split()[0] for line in as_text.splitlines()] == list(CHAINS)
    (tmp_path / "head.json").write_text(as_json)
    legacy = f"{heads['payment_events']['id']}:{heads['payment_events']['hash']}"
    for anchor in (as_text, f"@{tmp_path / 'head.json'}", legacy, as_text.splitlines()[2]):
        proc = walletd("audit", "verify", "--db-url", books.url, "--anchor", anchor)
        assert proc.returncode == 0, (anchor, proc.stdout, proc.stderr)
    proc = walletd("audit", "verify", "--db-url", books.url, "--anchor", as_text, "--json")
    anchors = json.loads(proc.stdout)["anchors"]
    assert sorted(a["chain"] for a in anchors) == sorted(CHAINS)
    assert all(a["ok"] for a in anchors)
    bad = walletd("audit", "verify", "--db-url", books.url, "--anchor", "nonsense:1:" + "a" * 64)
    assert bad.returncode == 2 and "unknown chain" in bad.stderr


def test_an_empty_chain_anchors_and_stays_anchored(books: Books) -> None:
    head = walletd("audit", "head", "--db-url", books.url, check=True).stdout
    assert f"key_events 0:{audit.GENESIS}" in head
    assert walletd("audit", "verify", "--db-url", books.url, "--anchor", head).returncode == 0


@pytest.mark.parametrize("chain", CHAINS)
def test_a_truncated_tail_of_any_chain_fails_an_anchored_verify(
    books: Books, chain: str, tmp_path: Path
) -> None:
    _history(books)
    anchor = tmp_path / "head.txt"
    anchor.write_text(walletd("audit", "head", "--db-url", books.url, check=True).stdout)
    tail = json.loads(walletd("audit", "head", "--db-url", books.url, "--json").stdout)[chain]
    if chain == "admin_events":
        # The newest admin event added a client: cut both, so the rows still agree.
        _sql(books, "DELETE FROM clients WHERE name = 'late'")
    _sql(books, f"DELETE FROM {chain} WHERE id = {tail['id']}")
    if chain in ("decisions", "key_events", "admin_events"):
        assert books.verify().ok  # the shorter chain is consistent: only the anchor can tell
    proc = walletd("audit", "verify", "--db-url", books.url, "--anchor", f"@{anchor}")
    assert proc.returncode == 1
    assert f"FAILED: anchor {chain}: row {tail['id']} is gone" in proc.stdout
    doc = json.loads(
        walletd("audit", "verify", "--db-url", books.url, "--anchor", f"@{anchor}", "--json").stdout
    )
    failed = [a["chain"] for a in doc["anchors"] if not a["ok"]]
    assert failed == [chain] and doc["ok"] is False
