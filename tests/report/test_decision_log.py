"""Every Pay decision is in the decision log: paid with its payment, refused with its reason."""

from __future__ import annotations

import json

from sqlalchemy import select

from tests.plugins.daemon import PAY_TO
from tests.report.conftest import Books
from walletd.db import tables
from walletd.domain.payment import PayReceipt
from walletd.errors import BudgetExceededError, PolicyDeniedError, UnauthenticatedError
from walletd.service import admin


def _decisions(books: Books) -> list[tables.Decision]:
    with books.store.engines.read.connect() as conn:
        rows = conn.execute(select(tables.Decision).order_by(tables.Decision.id))
        return list(rows)  # type: ignore[arg-type]


def _payments(books: Books) -> int:
    with books.store.engines.read.connect() as conn:
        return len(conn.execute(select(tables.Payment.id)).all())


def test_paid_and_refused_decisions_carry_client_host_payee_amount_and_rule(books: Books) -> None:
    paid = books.pay("alpha", "k1", 4000, host="chat.example", model="m1")
    assert isinstance(paid, PayReceipt)
    over = books.pay("beta", "k2", 9000, host="img.example", model="m2")
    assert isinstance(over, BudgetExceededError)
    admin.set_budget(books.store, "alpha", admin.BudgetChange(hosts=frozenset({"chat.example"})))
    denied = books.pay("alpha", "k3", 1000, host="evil.example")
    assert isinstance(denied, PolicyDeniedError)
    rows = _decisions(books)
    got = [
        (r.client, r.outcome, r.reason, r.rule, r.host, r.payee, r.amount, r.payment_id)
        for r in rows
    ]
    assert got == [
        ("alpha", "paid", "", "", "chat.example", PAY_TO, 4000, paid.payment_id),
        ("beta", "refused", "BUDGET_EXCEEDED", "daily", "img.example", PAY_TO, 9000, None),
        ("alpha", "refused", "POLICY_DENIED", "host_allowlist", "evil.example", PAY_TO, 1000, None),
    ]
    assert json.loads(rows[1].labels) == {"model": "m2"}
    assert "daily budget exceeded" in rows[1].message


def test_a_refusal_is_recorded_although_its_pay_transaction_rolled_back(books: Books) -> None:
    assert isinstance(books.pay("beta", "big", 9000), BudgetExceededError)
    assert _payments(books) == 0
    assert [r.outcome for r in _decisions(books)] == ["refused"]
    assert books.verify().ok


def test_a_request_that_failed_authentication_records_nothing(books: Books) -> None:
    admin.revoke_client(books.store, "alpha")
    assert isinstance(books.pay("alpha", "k1"), UnauthenticatedError)
    assert _decisions(books) == []


def test_a_replay_under_the_same_key_is_not_a_second_decision(books: Books) -> None:
    first = books.pay("alpha", "same")
    again = books.pay("alpha", "same")
    assert isinstance(again, PayReceipt) and again.reused
    assert isinstance(first, PayReceipt)
    assert [r.payment_id for r in _decisions(books)] == [first.payment_id]
