"""The tamper-evident ledger: every event and decision chains to the one before it.

Edits are made the way an intruder (or a careless operator) would: with the
``sqlite3`` shell on the ledger file, outside walletd. ``walletd audit verify``
must then fail and name the row.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import pytest
from sqlalchemy import select

from tests.report.conftest import Books, make_books, sqlite_path, sqlite_shell, walletd
from tests.service.conftest import CountingSigner
from walletd.db import migrate, tables
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain import audit
from walletd.domain.payment import PaymentStatus as S, PayReceipt
from walletd.domain.policy import Limits
from walletd.service.wallet import WalletService


def _paid(books: Books, *keys: str, client: str = "alpha") -> list[PayReceipt]:
    receipts = [books.pay(client, key) for key in keys]
    assert all(isinstance(r, PayReceipt) for r in receipts), receipts
    return receipts  # type: ignore[return-value]


def _some_history(books: Books) -> list[PayReceipt]:
    paid = _paid(books, "a1", "a2", "a3")
    books.move(paid[0].payment_id, S.SETTLED, settled_tx="0x" + "ab" * 32)
    books.move(paid[1].payment_id, S.EXPIRED)
    assert not isinstance(books.pay("beta", "b1", 9000), PayReceipt)  # refused: over budget
    return paid


def _verify_json(url: str) -> tuple[int, dict[str, Any]]:
    proc = walletd("audit", "verify", "--db-url", url, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_every_event_and_decision_links_to_the_one_before(books: Books) -> None:
    _some_history(books)
    with books.store.engines.read.connect() as conn:
        for model in (tables.PaymentEvent, tables.Decision):
            rows = conn.execute(select(model.id, model.prev_hash, model.hash).order_by(model.id))
            prev, ids = audit.GENESIS, []
            for ident, prev_hash, digest in rows:
                assert prev_hash == prev
                prev = digest
                ids.append(ident)
            assert ids == list(range(1, len(ids) + 1))
    result = books.verify()
    assert result.ok, result.breaks
    assert (result.events, result.decisions, result.payments) == (5, 4, 3)
    code, doc = _verify_json(books.url)
    assert code == 0 and doc["ok"] is True and doc["first_break"] is None


def test_amount_edited_with_the_sqlite3_shell_fails_verify_naming_the_row(
    sqlite_books: Books,
) -> None:
    paid = _some_history(sqlite_books)
    victim = paid[2].payment_id
    sqlite_shell(
        sqlite_path(sqlite_books.url), f"UPDATE payments SET amount = 1 WHERE id = '{victim}'"
    )
    last_event = sqlite_shell(
        sqlite_path(sqlite_books.url),
        f"SELECT max(id) FROM payment_events WHERE payment_id = '{victim}'",
    ).strip()
    proc = walletd("audit", "verify", "--db-url", sqlite_books.url)
    assert proc.returncode == 1
    assert f"first broken link: payment_events id={last_event} payment={victim}" in proc.stdout
    code, doc = _verify_json(sqlite_books.url)
    assert code == 1 and doc["ok"] is False
    assert doc["first_break"]["payment_id"] == victim
    assert doc["first_break"]["id"] == int(last_event)


@pytest.mark.parametrize(
    ("sql", "table", "problem"),
    [
        ("UPDATE payments SET payee = '0x000000000000000000000000000000000000dEaD' "
         "WHERE id = '{p}'", "payment_events", "payment row differs"),
        ("UPDATE payments SET status = 'expired', released_at_ms = 1 WHERE id = '{p}'",
         "payment_events", "payment row differs"),
        ("UPDATE payment_events SET data = '{{\"tx\": \"0xfake\"}}' WHERE id = {e}",
         "payment_events", "hash does not match"),
        ("DELETE FROM payment_events WHERE id = {e}", "payment_events", "prev_hash"),
        ("UPDATE decisions SET amount = 0 WHERE outcome = 'refused'", "decisions",
         "hash does not match"),
    ],
    ids=["payee", "status", "event-data", "event-deleted", "refusal-amount"],
)  # fmt: skip
def test_each_kind_of_edit_is_caught(
    sqlite_books: Books, sql: str, table: str, problem: str
) -> None:
    paid = _some_history(sqlite_books)
    db = sqlite_path(sqlite_books.url)
    target = paid[0].payment_id
    first_event = sqlite_shell(
        db, f"SELECT min(id) FROM payment_events WHERE payment_id = '{target}'"
    ).strip()
    sqlite_shell(db, sql.format(p=target, e=first_event))
    result = sqlite_books.verify()
    assert not result.ok
    first = result.first_break
    assert first is not None and first.table == table and problem in first.problem, first


@pytest.mark.slow
def test_audit_head_prints_the_last_hash_and_an_anchor_catches_a_rewrite(
    sqlite_books: Books,
) -> None:
    _some_history(sqlite_books)
    head = json.loads(walletd("audit", "head", "--db-url", sqlite_books.url, "--json",
                              check=True).stdout)  # fmt: skip
    events = head["payment_events"]
    assert events["hash"] == sqlite_books.verify().events_head and events["id"] == 5
    anchor = f"{events['id']}:{events['hash']}"
    assert (
        walletd("audit", "verify", "--db-url", sqlite_books.url, "--anchor", anchor).returncode == 0
    )
    # A rewrite that recomputes every hash still moves the anchored head.
    sqlite_shell(sqlite_path(sqlite_books.url), f"UPDATE payment_events SET hash = '{'0' * 64}' "
                 f"WHERE id = {events['id']}")  # fmt: skip
    proc = walletd("audit", "verify", "--db-url", sqlite_books.url, "--anchor", anchor)
    assert proc.returncode == 1
    assert f"anchor payment_events: row {events['id']} no longer has hash" in proc.stdout


def test_migration_chains_the_events_that_were_there(sqlite_ledger_url: str) -> None:
    engines = make_engines(sqlite_ledger_url)
    try:
        migrate.upgrade(engines.write, "0002")
        with engines.write.begin() as conn:
            conn.exec_driver_sql(
                "INSERT INTO clients (id, name, token_hash, scopes, created_at_ms, payees, hosts) "
                "VALUES (1, 'old', 'h', 'pay', 0, '', '')"
            )
            for i in (1, 2):
                conn.exec_driver_sql(
                    "INSERT INTO payments (id, client_id, idempotency_key, fingerprint, status, "
                    "amount, payee, network, asset, payer, method, url, host, nonce, valid_after, "
                    "valid_before, header_name, header_value, labels, created_at_ms) VALUES "
                    f"('pay_{i}', 1, 'k{i}', 'f', 'signed', {i}000, '0xp', 'eip155:8453', '0xa', "
                    f"'0xw', 'POST', 'https://h/x', 'h', '0x{i}', 0, 1, 'X', 'v', '{{}}', {i})"
                )
                conn.exec_driver_sql(
                    "INSERT INTO payment_events (payment_id, at_ms, status, cause, data) "
                    f"VALUES ('pay_{i}', {i}, 'signed', 'pay', '{{}}')"
                )
        migrate.upgrade(engines.write)
        store = Store(engines)
        with store.write() as tx:
            tx.move("pay_1", S.SIGNED, S.EXPIRED, 10, "test", {})
    finally:
        engines.dispose()
    books = Books(sqlite_ledger_url, Store(make_engines(sqlite_ledger_url)), None)  # type: ignore[arg-type]
    result = books.verify()
    assert result.ok and result.events == 3, result.breaks
    sqlite_shell(
        sqlite_path(sqlite_ledger_url), "UPDATE payments SET amount = 5 WHERE id = 'pay_2'"
    )
    first = books.verify().first_break
    assert first is not None and (first.row_id, first.payment_id) == (2, "pay_2")
    books.store.engines.dispose()


def test_concurrent_writers_on_separate_engines_keep_one_chain(ledger_url: str) -> None:
    """Pays, refusals and reconciler moves from several 'processes' at once: one valid chain."""
    base, engines = make_books(ledger_url)
    stores = [Store(make_engines(ledger_url)) for _ in range(3)]
    errors: list[BaseException] = []

    def work(i: int) -> None:
        service = WalletService(stores[i], CountingSigner(), Limits())
        mine = Books(ledger_url, stores[i], service, dict(base.callers))
        try:
            for n in range(6):
                got = mine.pay("alpha" if n % 2 else "beta", f"w{i}-{n}", 1000 + n)
                if isinstance(got, PayReceipt) and n % 3 == 0:
                    mine.move(got.payment_id, S.REJECTED)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(240)
    try:
        assert not errors, errors
        result = base.verify()
        assert result.ok, result.breaks
        assert result.decisions == 18
    finally:
        for store in stores:
            store.engines.dispose()
        engines.dispose()  # type: ignore[attr-defined]
