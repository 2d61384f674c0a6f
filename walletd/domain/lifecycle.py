"""Which status a payment may move to, and which moves give its budget back.

A signed EIP-3009 authorization is money that is gone until proven otherwise,
so the table is deliberately one-way: nothing ever returns to ``signed``, and
only the statuses that the chain proves final *and* unspent (``expired``,
``cancelled``, and ``failed`` for a direct transfer that reverted or whose
account nonce another transaction took) release the budget. ``failed`` is also
reachable from ``settlement_pending``/``rejected``, because a client's report
about a direct transfer does not change what the chain says of it. ``disputed``
(a server claimed a settlement the chain does not show) and ``settled`` stay
counted as spent for ever.

A payment held for approval (``walletd.domain.approval``) starts at
``awaiting_approval``, with nothing signed: it becomes ``approved`` then
``signed`` (the first and only signature), or ``denied`` / ``expired``, which
release its reservation. The reconciler never follows held payments: there is
nothing on chain to follow.
"""

from __future__ import annotations

from walletd.domain.payment import HELD_STATUSES, RELEASED_STATUSES, PaymentStatus

S = PaymentStatus

TRANSITIONS: dict[str, frozenset[str]] = {
    S.SIGNED: frozenset(
        {S.SETTLED, S.SETTLEMENT_PENDING, S.REJECTED, S.EXPIRED, S.DISPUTED, S.CANCELLED, S.FAILED}
    ),
    S.SETTLEMENT_PENDING: frozenset({S.SETTLED, S.DISPUTED, S.EXPIRED, S.FAILED}),
    S.REJECTED: frozenset({S.SETTLED, S.EXPIRED, S.CANCELLED, S.DISPUTED, S.FAILED}),
    S.SETTLED: frozenset(),
    S.EXPIRED: frozenset(),
    S.CANCELLED: frozenset(),
    S.DISPUTED: frozenset(),
    S.FAILED: frozenset(),
    S.AWAITING_APPROVAL: frozenset({S.APPROVED, S.DENIED, S.EXPIRED}),
    S.APPROVED: frozenset({S.SIGNED, S.EXPIRED}),
    S.DENIED: frozenset(),
}
"""status -> the statuses it may move to; final statuses map to nothing."""

OPEN_STATUSES: frozenset[str] = frozenset(
    status for status, targets in TRANSITIONS.items() if targets and status not in HELD_STATUSES
)
"""Statuses the reconciler still has to follow to an end on chain (held ones are not on it)."""

CANCELLABLE_STATUSES: frozenset[str] = frozenset({S.REJECTED, S.SIGNED})
"""Statuses `payment cancel` accepts (``signed`` only after a grace, see the service).

``settlement_pending`` is excluded: the server said it broadcast the transfer,
so racing it with a cancel would only make the outcome harder to read.
"""


class TransitionError(ValueError):
    """A move the table forbids: a bug or a race, never something to paper over."""


def may_move(current: str, target: str) -> bool:
    """Whether ``current`` may become ``target``."""
    return target in TRANSITIONS.get(current, frozenset())


def require_move(current: str, target: str) -> None:
    """Raise TransitionError unless the table allows ``current`` -> ``target``."""
    if not may_move(current, target):
        raise TransitionError(f"payment cannot move from {current!r} to {target!r}")


def releases(target: str) -> bool:
    """Whether reaching ``target`` gives the payment's budget back."""
    return target in RELEASED_STATUSES


def past_expiry(chain_time: int, valid_before: int, margin_s: int) -> bool:
    """Whether the chain's clock is past ``valid_before`` by at least the margin.

    The contract compares ``block.timestamp < validBefore``; the margin covers a
    transaction already in a block being built when we read the state.
    """
    return chain_time >= valid_before + margin_s
