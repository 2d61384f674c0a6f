"""Value objects for a payment as it crosses layers: command in, receipt and view out."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum


class PaymentStatus(StrEnum):
    """Where a signed payment is in its life; only RELEASED_STATUSES give budget back."""

    SIGNED = "signed"  # header handed to the client; money may move until valid_before
    SETTLED = "settled"  # confirmed on chain
    SETTLEMENT_PENDING = "settlement_pending"  # server broadcast it, receipt not yet seen
    REJECTED = "rejected"  # server refused it; it may still settle until valid_before
    EXPIRED = "expired"  # valid_before passed and the nonce is unused: budget released
    DISPUTED = "disputed"  # server claimed a settlement the chain does not show
    CANCELLED = "cancelled"  # cancelAuthorization mined: budget released
    FAILED = "failed"  # direct transfer the chain proves cannot move money: budget released


RELEASED_STATUSES = frozenset(
    {PaymentStatus.EXPIRED, PaymentStatus.CANCELLED, PaymentStatus.FAILED}
)


@dataclass(frozen=True)
class Caller:
    """An authenticated client of the daemon."""

    client_id: int
    name: str
    scopes: frozenset[str]


@dataclass(frozen=True)
class PayCommand:
    """One Pay call: the 402 material exactly as the client received it."""

    idempotency_key: str
    method: str
    url: str
    payment_required: str = ""
    """x402 v2 PAYMENT-REQUIRED header value (base64), or empty."""
    body: bytes = b""
    """x402 v1 JSON body, or empty."""
    labels: Mapping[str, str] = field(default_factory=dict)
    answer_by: float | None = None
    """``time.monotonic()`` at which the caller stops waiting (its RPC deadline), or None.

    Only a direct transfer's receipt wait looks at it: the daemon answers with
    the transaction hash before then rather than finish a reply nobody reads.
    """


@dataclass(frozen=True)
class PayReceipt:
    """What Pay returns: the header to send and the facts of the payment."""

    payment_id: str
    header_name: str
    header_value: str
    amount: int
    payee: str
    network: str
    valid_before: int
    reused: bool


@dataclass(frozen=True)
class PaymentView:
    """A ledger row as a caller may see it (never key material)."""

    payment_id: str
    client: str
    status: str
    amount: int
    payee: str
    network: str
    url: str
    created_at: int
    valid_before: int
    nonce: str
    labels: Mapping[str, str]
