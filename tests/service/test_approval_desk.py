"""The approver's desk in-process: the payer's wait, the watch stream, retries of a held
key, and the daemon's expiry sweep, over a real ledger (SQLite and PostgreSQL)."""

from __future__ import annotations

import threading

import pytest

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.domain.approval import ApprovalStatus
from walletd.domain.payment import Caller, PayCommand
from walletd.errors import (
    ApprovalDeniedError,
    ApprovalRequiredError,
    IdempotencyConflictError,
    InvalidRequestError,
    NotFoundError,
)
from walletd.service import admin
from walletd.service.approvals import ApprovalBell, ApprovalDesk, SweepLoop

URL = "https://api.test/v1/chat/completions"


def _cmd(key: str, amount: int = 3000) -> PayCommand:
    return PayCommand(key, "POST", URL, demand_header(str(amount)))


@pytest.fixture
def approver(ledger: Ledger) -> Caller:
    token = admin.add_client(ledger.store, "alice", frozenset({"approve"}))
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(approve_above=0))
    return ledger.service.authenticate(token)


def _hold(ledger: Ledger, key: str) -> str:
    with pytest.raises(ApprovalRequiredError) as held:
        ledger.service.pay(ledger.caller, _cmd(key))
    return held.value.approval_id


def test_a_payer_waits_for_its_own_approval_and_sees_no_one_elses(
    ledger: Ledger, approver: Caller
) -> None:
    desk = ApprovalDesk(ledger.store, ApprovalBell())
    approval_id = _hold(ledger, "wait")
    assert desk.await_decision(ledger.caller, approval_id, 0).status == ApprovalStatus.PENDING
    with pytest.raises(NotFoundError):
        desk.await_decision(approver, approval_id, 0)
    timer = threading.Timer(0.2, desk.decide, (approver, approval_id, True, "ok"))
    timer.start()
    try:
        assert desk.await_decision(ledger.caller, approval_id, 30).status == "approved"
    finally:
        timer.join()
    assert not ledger.service.pay(ledger.caller, _cmd("wait")).reused


def test_the_watch_stream_names_each_pending_approval_then_its_decision(
    ledger: Ledger, approver: Caller
) -> None:
    desk = ApprovalDesk(ledger.store, ApprovalBell())
    first, second = _hold(ledger, "w1"), _hold(ledger, "w2")
    events = desk.watch(lambda: True)
    seen = [next(events) for _ in range(2)]
    assert [(kind, held.approval_id) for kind, held in seen] == [
        ("pending", first),
        ("pending", second),
    ]  # oldest first
    desk.decide(approver, second, False, "no")
    kind, decided = next(events)
    assert (kind, decided.approval_id, decided.status) == ("decided", second, "denied")


def test_retries_of_a_held_key_answer_what_the_approval_is(
    ledger: Ledger, approver: Caller
) -> None:
    desk = ApprovalDesk(ledger.store, ApprovalBell())
    approval_id = _hold(ledger, "held")
    with pytest.raises(ApprovalRequiredError) as again:
        ledger.service.pay(ledger.caller, _cmd("held"))
    assert again.value.approval_id == approval_id  # still pending: the same approval
    with pytest.raises(IdempotencyConflictError):
        ledger.service.pay(ledger.caller, _cmd("held", 4000))
    desk.decide(approver, approval_id, False, "too much")
    for _ in range(2):
        with pytest.raises(ApprovalDeniedError) as denied:
            ledger.service.pay(ledger.caller, _cmd("held"))
        assert denied.value.details["note"] == "too much"
    assert ledger.signer.calls == 0
    with pytest.raises(InvalidRequestError):
        desk.list("maybe", 10)


def test_the_sweep_loop_expires_what_is_due_until_it_is_stopped(
    ledger: Ledger, approver: Caller
) -> None:
    approval_id = _hold(ledger, "late")
    (held,) = ApprovalDesk(ledger.store, ApprovalBell()).list("pending", 10)
    bell = ApprovalBell()
    seen = bell.generation
    desk = ApprovalDesk(ledger.store, bell, lambda: held.expires_at_ms + 1)
    stop = threading.Event()
    loop = SweepLoop(desk, stop)
    loop.start()
    try:
        bell.wait(seen, 30)  # the sweep rings once it expired something
    finally:
        stop.set()
        loop.join(30)
    assert not loop.is_alive()
    (gone,) = desk.list("expired", 10)
    assert gone.approval_id == approval_id
    assert desk.pending_count() == 0
    assert ledger.service.get_budget(ledger.caller).windows[1].spent == 0
