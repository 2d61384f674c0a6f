"""Clients: tokens stored only as hashes; a read token sees only its own payments."""

from __future__ import annotations

from sqlalchemy import MetaData, select

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.domain.payment import PayCommand
from walletd.service import admin
from walletd.service.tokens import hash_token


def _dump(ledger: Ledger) -> str:
    """Every row of every table (reflected, so new tables are included), as text."""
    meta = MetaData()
    with ledger.store.engines.read.connect() as conn:
        meta.reflect(conn)
        rows = [row for table in meta.sorted_tables for row in conn.execute(select(table))]
    return "\n".join(repr(tuple(row)) for row in rows)


def test_token_is_stored_only_as_its_hash(ledger: Ledger) -> None:
    dump = _dump(ledger)
    assert ledger.token not in dump
    assert hash_token(ledger.token) in dump  # the dump really holds the clients table
    assert ledger.token.startswith("wdt_")


def test_each_client_lists_only_its_own_payments(ledger: Ledger) -> None:
    other_token = admin.add_client(ledger.store, "other", frozenset({"read", "pay"}))
    admin.set_budget(ledger.store, "other", admin.BudgetChange(daily=100_000))
    other = ledger.service.authenticate(other_token)
    url = "http://127.0.0.1:9/x"
    ledger.service.pay(ledger.caller, PayCommand("a", "GET", url, demand_header()))
    ledger.service.pay(other, PayCommand("a", "GET", url, demand_header()))
    mine = ledger.service.list_payments(ledger.caller, 10)
    theirs = ledger.service.list_payments(other, 10)
    assert [p.client for p in mine] == ["svc"]
    assert [p.client for p in theirs] == ["other"]
    assert mine[0].payment_id != theirs[0].payment_id


def test_budget_windows_report_spent_and_remaining(ledger: Ledger) -> None:
    ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header("2500")))
    windows = {w.window: w for w in ledger.service.get_budget(ledger.caller).windows}
    assert (windows["daily"].spent, windows["daily"].remaining) == (2500, 97_500)
    assert windows["per_request"].limit == 10_000
