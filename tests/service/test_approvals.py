"""Approvals in-process over a real ledger (SQLite and PostgreSQL): the rules at their edges.

The daemon tests (tests/approvals) show the whole flow over gRPC; these pin
what is cheaper to show without one: the threshold's edge, the global
threshold, a freeze between approval and retry, the expiry of an approved
payment nobody collected, the Prometheus gauge, and the threshold's admin event.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace

import pytest

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.db import queries
from walletd.domain import approval as ap
from walletd.domain.payment import Caller, PayCommand, PaymentStatus
from walletd.errors import (
    ApprovalDeniedError,
    ApprovalRequiredError,
    FrozenError,
    InvalidRequestError,
    PolicyDeniedError,
)
from walletd.metrics import LedgerCollector
from walletd.service import admin
from walletd.service.approvals import ApprovalBell, ApprovalDesk, is_held
from walletd.service.direct import refuse_above_threshold

URL = "https://api.test/v1/chat/completions"


def _cmd(key: str, amount: int = 3000) -> PayCommand:
    return PayCommand(key, "POST", URL, demand_header(str(amount)))


@pytest.fixture
def approver(ledger: Ledger) -> Caller:
    token = admin.add_client(ledger.store, "alice", frozenset({"approve"}))
    return ledger.service.authenticate(token)


def _desk(ledger: Ledger, clock: Callable[[], int] | None = None) -> ApprovalDesk:
    if clock is None:
        return ApprovalDesk(ledger.store, ApprovalBell())
    return ApprovalDesk(ledger.store, ApprovalBell(), clock)


def test_threshold_is_strictly_above_and_the_clients_is_named_first() -> None:
    assert ap.threshold_hit(2000, 2000, None) is None
    assert ap.threshold_hit(2001, 2000, None) == ("client", 2000)
    assert ap.threshold_hit(2001, None, 2000) == ("global", 2000)
    assert ap.threshold_hit(5000, 4000, 1000) == ("client", 4000)
    assert ap.expiry_ms(1_000, 60, 900) == 61_000  # the demand's own timeout is shorter
    assert ap.expiry_ms(1_000, 3600, 900) == 901_000  # the daemon's cap is shorter
    with pytest.raises(InvalidRequestError):
        ap.check_note("x" * (ap.MAX_NOTE_CHARS + 1))
    with pytest.raises(InvalidRequestError):
        ap.check_note("two\nlines")


def test_a_payment_at_the_threshold_is_signed_and_one_above_the_global_is_held(
    ledger: Ledger,
) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=3000))
    assert ledger.service.pay(ledger.caller, _cmd("at", 3000)).header_value
    admin.set_budget(ledger.store, None, admin.BudgetChange(approve_above=2500))
    with pytest.raises(ApprovalRequiredError) as held:
        ledger.service.pay(ledger.caller, _cmd("above-global", 3000))
    assert held.value.details["threshold"] == "global"
    assert ledger.signer.calls == 1  # the held one signed nothing


def test_a_freeze_after_approval_refuses_the_retry_until_resumed(
    ledger: Ledger, approver: Caller
) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=0))
    with pytest.raises(ApprovalRequiredError) as held:
        ledger.service.pay(ledger.caller, _cmd("frozen"))
    _desk(ledger).decide(approver, held.value.approval_id, True, "")
    admin.set_frozen(ledger.store, True)
    with pytest.raises(FrozenError):
        ledger.service.pay(ledger.caller, _cmd("frozen"))
    assert ledger.signer.calls == 0
    admin.set_frozen(ledger.store, False)
    assert not ledger.service.pay(ledger.caller, _cmd("frozen")).reused
    assert ledger.signer.calls == 1


def test_an_approved_payment_nobody_collects_expires_and_is_released(
    ledger: Ledger, approver: Caller
) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=0))
    with pytest.raises(ApprovalRequiredError) as held:
        ledger.service.pay(ledger.caller, _cmd("uncollected"))
    _desk(ledger).decide(approver, held.value.approval_id, True, "go")
    later = _desk(ledger, clock=lambda: held.value.expires_at_ms + 1)
    assert later.sweep() == 1
    (gone,) = later.list("expired", 10)
    assert (gone.decided_by, gone.note) == ("alice", "go")  # the decision stays recorded
    assert ledger.service.get_budget(ledger.caller).windows[1].spent == 0
    with pytest.raises(ApprovalDeniedError):
        ledger.service.pay(ledger.caller, _cmd("uncollected"))
    assert ledger.signer.calls == 0


def test_the_gauge_counts_pending_approvals(ledger: Ledger, approver: Caller) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=0))

    def gauge() -> float:
        for family in LedgerCollector(ledger.store, None, ledger.signer.address).collect():
            if family.name == "walletd_approvals_pending":
                return float(family.samples[0].value)
        raise AssertionError("no walletd_approvals_pending gauge")

    assert gauge() == 0
    errors = []
    for key in ("g1", "g2"):
        with pytest.raises(ApprovalRequiredError) as held:
            ledger.service.pay(ledger.caller, _cmd(key))
        errors.append(held.value)
    assert gauge() == 2
    _desk(ledger).decide(approver, errors[0].approval_id, False, "")
    assert gauge() == 1


def test_the_threshold_is_an_admin_event_the_audit_replays(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=500))
    admin.set_budget(ledger.store, None, admin.BudgetChange(approve_above=700))
    assert admin.approval_threshold(ledger.store, "svc") == 500
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above_off=True))
    assert admin.approval_threshold(ledger.store, "svc") is None
    with ledger.store.connection() as conn:
        assert queries.verify_chain(conn).ok
    with pytest.raises(InvalidRequestError):
        admin.set_budget(
            ledger.store, "svc", admin.BudgetChange(approve_above=1, approve_above_off=True)
        )


def test_a_direct_transfer_above_the_threshold_is_refused(ledger: Ledger) -> None:
    with ledger.store.read() as tx:
        state = tx.wallet_state()
    refuse_above_threshold(3000, 3000, state)
    with pytest.raises(PolicyDeniedError) as refused:
        refuse_above_threshold(3001, 3000, state)
    assert refused.value.rule == "approve_above"
    refuse_above_threshold(3001, None, replace(state, approve_above=None))


def test_held_rows_are_told_from_signed_ones(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=0))
    with pytest.raises(ApprovalRequiredError) as held:
        ledger.service.pay(ledger.caller, _cmd("told"))
    with ledger.store.read() as tx:
        row = tx.payment(held.value.payment_id)
    assert row.status == PaymentStatus.AWAITING_APPROVAL and is_held(row)
    assert not is_held(replace(row, status=PaymentStatus.EXPIRED, header_value="x"))


def test_a_held_pay_is_counted_as_held_not_refused(ledger: Ledger) -> None:
    from walletd import metrics

    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=0))
    api, registry = metrics.instrument(ledger.service, ledger.store, None, ledger.signer.address)
    with pytest.raises(ApprovalRequiredError):
        api.pay(ledger.caller, _cmd("counted"))
    labels = {"client": "svc", "outcome": "held"}
    assert registry.get_sample_value("walletd_pay_requests_total", labels) == 1
    refused = {"client": "svc", "outcome": "refused"}
    assert registry.get_sample_value("walletd_pay_requests_total", refused) is None
