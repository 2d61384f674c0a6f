"""Clients: tokens stored only as hashes; a read token sees only its own payments."""

from __future__ import annotations

import pytest
from sqlalchemy import MetaData, select

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.domain.payment import PayCommand
from walletd.domain.report import ReportQuery
from walletd.errors import InvalidRequestError, NotFoundError
from walletd.service import admin
from walletd.service.report import client_report
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


@pytest.mark.parametrize("name", ["", "x" * 65, "has space", "semi;colon"])
def test_a_client_name_outside_letters_digits_dash_underscore_is_refused(
    ledger: Ledger, name: str
) -> None:
    with pytest.raises(InvalidRequestError, match="client name"):
        admin.add_client(ledger.store, name, frozenset({"pay"}))


@pytest.mark.parametrize("scopes", [frozenset(), frozenset({"pay", "approve-all"})])
def test_scopes_must_be_a_non_empty_subset_of_the_known_ones(
    ledger: Ledger, scopes: frozenset[str]
) -> None:
    with pytest.raises(InvalidRequestError, match="scopes"):
        admin.add_client(ledger.store, "newcomer", scopes)


def test_show_budget_reads_a_client_or_the_global_budget_and_its_spend(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, None, admin.BudgetChange(daily=50_000))
    ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header("2500")))
    budget, state = admin.show_budget(ledger.store, None)
    daily = {w.window: w for w in state.windows}["daily"]
    assert (state.client, budget.daily, daily.spent, daily.remaining) == (
        "global", 50_000, 2500, 47_500,
    )  # fmt: skip
    budget, state = admin.show_budget(ledger.store, "svc")
    assert (state.client, budget.per_request, state.frozen) == ("svc", 10_000, False)
    with pytest.raises(NotFoundError):
        admin.show_budget(ledger.store, "nobody")


def test_a_client_report_covers_only_the_caller_whatever_the_query_says(ledger: Ledger) -> None:
    other_token = admin.add_client(ledger.store, "other", frozenset({"read", "pay"}))
    admin.set_budget(ledger.store, "other", admin.BudgetChange(daily=100_000))
    other = ledger.service.authenticate(other_token)
    ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header("2500")))
    ledger.service.pay(other, PayCommand("a", "GET", "http://h/x", demand_header("4000")))
    query = ReportQuery(client="other", group_by=("client",))
    report = client_report(ledger.store, ledger.caller, query, now_ms=2**62)
    assert [row.key for row in report.rows] == [("svc",)]
    assert report.totals.payments.amount == 2500
    with pytest.raises(InvalidRequestError):
        client_report(ledger.store, ledger.caller, ReportQuery(group_by=("shoe-size",)), 2**62)
