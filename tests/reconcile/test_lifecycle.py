"""The transition table and the settlement check, without a chain."""

from __future__ import annotations

import pytest

from walletd.db.ledger import TrackedPayment
from walletd.domain import lifecycle
from walletd.domain.networks import BASE
from walletd.domain.payment import PaymentStatus as S
from walletd.service.ports import AuthorizationEvent, ChainReceipt, TokenTransfer
from walletd.service.reconcile import settlement_problems

WALLET = "0x1111111111111111111111111111111111111111"
PAY_TO = "0x2222222222222222222222222222222222222222"
NONCE = "0x" + "07" * 32


def test_only_expired_cancelled_failed_and_denied_release_budget() -> None:
    released = {s for s in S if lifecycle.releases(s)}
    assert released == {S.EXPIRED, S.CANCELLED, S.FAILED, S.DENIED}


def test_final_statuses_stay_and_only_an_approved_hold_becomes_signed() -> None:
    for final in (S.SETTLED, S.DISPUTED, S.EXPIRED, S.CANCELLED, S.FAILED, S.DENIED):
        assert not any(lifecycle.may_move(final, s) for s in S)
    assert {s for s in S if lifecycle.may_move(s, S.SIGNED)} == {S.APPROVED}


def test_held_payments_are_never_followed_on_chain() -> None:
    assert {s for s in S if lifecycle.may_move(S.AWAITING_APPROVAL, s)} == {
        S.APPROVED, S.DENIED, S.EXPIRED,
    }  # fmt: skip
    assert {s for s in S if lifecycle.may_move(S.APPROVED, s)} == {S.SIGNED, S.EXPIRED}
    assert not lifecycle.OPEN_STATUSES & {S.AWAITING_APPROVAL, S.APPROVED}


@pytest.mark.parametrize(
    ("current", "allowed"),
    [
        (S.SIGNED, {S.SETTLED, S.SETTLEMENT_PENDING, S.REJECTED, S.EXPIRED, S.DISPUTED,
                    S.CANCELLED, S.FAILED}),
        (S.SETTLEMENT_PENDING, {S.SETTLED, S.DISPUTED, S.EXPIRED, S.FAILED}),
        (S.REJECTED, {S.SETTLED, S.EXPIRED, S.CANCELLED, S.DISPUTED, S.FAILED}),
    ],
)  # fmt: skip
def test_open_statuses_move_only_where_the_table_says(current: S, allowed: set[S]) -> None:
    assert {s for s in S if lifecycle.may_move(current, s)} == allowed
    for s in set(S) - allowed:
        with pytest.raises(lifecycle.TransitionError):
            lifecycle.require_move(current, s)


def test_expiry_needs_the_margin_past_valid_before() -> None:
    assert not lifecycle.past_expiry(1_029, 1_000, 30)
    assert lifecycle.past_expiry(1_030, 1_000, 30)


def _row(amount: int = 3000) -> TrackedPayment:
    return TrackedPayment("pay_x", 1, S.SETTLEMENT_PENDING, amount, PAY_TO, WALLET, BASE.caip2,
                          NONCE, 0, 10, 0, "0x" + "00" * 32, None, False)  # fmt: skip


def _receipt(*, status: int = 1, token: str = BASE.usdc, value: int = 3000,
             to: str = PAY_TO, nonce: str = NONCE) -> ChainReceipt:  # fmt: skip
    return ChainReceipt(
        "0x" + "00" * 32, status, 1,
        (TokenTransfer(token, WALLET, to, value),),
        (AuthorizationEvent(token, WALLET, nonce),), (),
    )  # fmt: skip


def test_a_matching_receipt_confirms() -> None:
    assert settlement_problems(_receipt(), _row(), BASE.usdc) == []


@pytest.mark.parametrize(
    "receipt",
    [
        _receipt(status=0),
        _receipt(value=2999),
        _receipt(value=3001),
        _receipt(to=WALLET),
        _receipt(nonce="0x" + "08" * 32),
        _receipt(token="0x3333333333333333333333333333333333333333"),
    ],
    ids=["reverted", "less", "more", "other-payee", "other-nonce", "look-alike-token"],
)
def test_anything_else_is_a_problem(receipt: ChainReceipt) -> None:
    assert settlement_problems(receipt, _row(), BASE.usdc)
