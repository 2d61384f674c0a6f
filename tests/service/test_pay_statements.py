"""What a Pay reads: nothing for scoped limits when none is set, and a new one at once."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.db import transaction
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain.payment import PayCommand
from walletd.errors import RateLimitedError
from walletd.service import admin


def _pay(ledger: Ledger, key: str) -> None:
    ledger.service.pay(ledger.caller, PayCommand(key, "GET", "http://h.example/x", demand_header()))


def _statements_of_a_pay(ledger: Ledger, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    _pay(ledger, "warm")
    seen: list[str] = []
    raw = transaction.Transaction._raw

    def recording(self: transaction.Transaction, sql: str, params: Any = ()) -> Any:
        seen.append(sql)
        return raw(self, sql, params)

    monkeypatch.setattr(transaction.Transaction, "_raw", recording)
    _pay(ledger, "k1")
    assert seen, "the Pay ran no hot statement"
    return seen


def test_a_pay_without_scoped_limits_reads_no_limit_rows(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whether any limit applies comes with the client's row, not from a statement of its own."""
    seen = _statements_of_a_pay(ledger, monkeypatch)
    assert [sql for sql in seen if re.match(r"SELECT [^()]* FROM scoped_limits", sql)] == []


def test_a_pay_under_a_client_budget_alone_reads_the_lifetimes_with_its_windows(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No global budget: the window sums still read both lifetime totals the new row adds to."""
    seen = _statements_of_a_pay(ledger, monkeypatch)
    assert [sql for sql in seen if sql.startswith("SELECT scope, amount FROM spend_buckets")] == []


def test_a_limit_set_by_another_process_applies_to_the_next_pay(
    ledger: Ledger, ledger_url: str
) -> None:
    """The operator's command runs on its own engines, as the CLI does beside a daemon."""
    _pay(ledger, "k1")
    engines = make_engines(ledger_url)
    try:
        admin.set_budget(
            Store(engines), "svc", admin.BudgetChange(selector="host=h.example", rates={"hour": 1})
        )
    finally:
        engines.dispose()
    with pytest.raises(RateLimitedError):
        _pay(ledger, "k2")


def test_what_is_outstanding_is_read_without_an_orm_session(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A Pay with a known balance reads it: a plain statement, like the rest of Pay."""
    _pay(ledger, "k1")
    with ledger.store.read() as tx:
        paid = tx.tracked_payment(tx.list_payments(None, 1)[0].payment_id)

    def no_session(self: object) -> None:
        raise AssertionError("opened an ORM session")

    monkeypatch.setattr(transaction.Transaction, "_session", property(no_session))
    with ledger.store.write() as tx:
        assert tx.outstanding() == (1, paid.amount)
        assert tx.outstanding(paid.payer) == (1, paid.amount)
        assert tx.outstanding("0x" + "9" * 40) == (0, 0)
