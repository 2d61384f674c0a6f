"""Value objects for a payment as it crosses layers: command in, receipt and view out.

Also the size limits of a Pay request's free-form fields (``check_pay_sizes``):
labels and the URL are stored on the ledger row and in the decision log, so a
request that exceeds them is refused before any transaction, and writes nothing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum

from walletd.domain.demand import MAX_DEMAND_BYTES
from walletd.errors import InvalidRequestError

MAX_URL_BYTES = 8 * 1024
"""Longest URL (UTF-8 bytes) a Pay may name; real request URLs are far shorter."""
MAX_LABELS = 32
"""Most labels one Pay may carry."""
MAX_LABEL_KEY_BYTES = 64
MAX_LABEL_VALUE_BYTES = 512
MAX_IDEMPOTENCY_KEY_BYTES = 200
MAX_METHOD_BYTES = 16

MAX_PAY_REQUEST_BYTES = (
    MAX_IDEMPOTENCY_KEY_BYTES
    + MAX_METHOD_BYTES
    + MAX_URL_BYTES
    + 2 * MAX_DEMAND_BYTES  # payment_required and body
    + MAX_LABELS * (MAX_LABEL_KEY_BYTES + MAX_LABEL_VALUE_BYTES)
    + 4 * 1024  # protobuf framing: a few bytes of tag and length per field and label entry
)
"""The encoded size of the largest valid PayRequest (the gRPC receive limit follows it)."""


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
    AWAITING_APPROVAL = "awaiting_approval"  # held above a threshold: reserved, nothing signed
    APPROVED = "approved"  # approved, not yet signed: the caller's retry signs it
    DENIED = "denied"  # an approver denied it: nothing signed, budget released


RELEASED_STATUSES = frozenset(
    {PaymentStatus.EXPIRED, PaymentStatus.CANCELLED, PaymentStatus.FAILED, PaymentStatus.DENIED}
)

HELD_STATUSES = frozenset({PaymentStatus.AWAITING_APPROVAL, PaymentStatus.APPROVED})
"""Statuses of a payment held for approval: counted in the budgets, nothing signed yet."""


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


def _size(text: str) -> int:
    return len(text.encode("utf-8", "surrogatepass"))


def check_pay_sizes(cmd: PayCommand) -> None:
    """Refuse a Pay whose URL, labels or unused body exceed the limits above.

    Pure and cheap; the service calls it before any transaction, so an oversized
    request leaves no ledger row and no decision-log entry.

    Raises:
        InvalidRequestError: naming the field and its limit.
    """
    if _size(cmd.url) > MAX_URL_BYTES:
        raise InvalidRequestError(
            f"url longer than {MAX_URL_BYTES} bytes", {"field": "url", "limit": str(MAX_URL_BYTES)}
        )
    if len(cmd.labels) > MAX_LABELS:
        raise InvalidRequestError(
            f"more than {MAX_LABELS} labels", {"field": "labels", "limit": str(MAX_LABELS)}
        )
    for key, value in cmd.labels.items():
        if _size(key) > MAX_LABEL_KEY_BYTES:
            raise InvalidRequestError(
                f"label key longer than {MAX_LABEL_KEY_BYTES} bytes",
                {"field": "labels.key", "limit": str(MAX_LABEL_KEY_BYTES)},
            )
        if _size(value) > MAX_LABEL_VALUE_BYTES:
            raise InvalidRequestError(
                f"label {key!r} value longer than {MAX_LABEL_VALUE_BYTES} bytes",
                {"field": "labels.value", "limit": str(MAX_LABEL_VALUE_BYTES)},
            )
    if cmd.payment_required and len(cmd.body) > MAX_DEMAND_BYTES:
        # Without a header the demand decoder refuses it (INVALID_DEMAND); with one
        # the body is not read at all, so it is a malformed request, not a demand.
        raise InvalidRequestError(
            f"body longer than {MAX_DEMAND_BYTES} bytes",
            {"field": "body", "limit": str(MAX_DEMAND_BYTES)},
        )
