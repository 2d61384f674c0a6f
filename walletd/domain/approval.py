"""Human approval above a threshold: who needs it, until when, and what each decision records.

A Pay whose amount is above the client's ``approve_above`` threshold (or the
global one), and that passes every rule and budget, is *held*: its payment row
is written with status ``awaiting_approval`` and counts in every budget window
exactly like a signed one (the reservation), but nothing is signed. An
approver decides it; the caller's retry under the same idempotency key then
gets the signature (approved) or ``ApprovalDeniedError`` (denied, expired).
A denial or an expiry releases the reservation.

An approval expires at ``held + min(the demand's maxTimeoutSeconds, the
daemon's approval max wait)``: the demand's own timeout is how long the payee
gives the payment to complete, so a later signature answers a stale demand;
the max wait bounds how long a request nobody looks at may hold budget.
Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from walletd.domain.money import format_usd
from walletd.errors import (
    ApprovalClosedError,
    ApprovalDeniedError,
    ApprovalRequiredError,
    InvalidRequestError,
)

DEFAULT_MAX_WAIT_SECONDS = 900
"""How long an approval may wait at most (``[approvals] max_wait_seconds``)."""

MAX_NOTE_CHARS = 500
"""The longest note an approver may attach."""

CLIENT, GLOBAL = "client", "global"
"""Which threshold held a payment: the client's own, or the wallet-wide one."""


class ApprovalStatus(StrEnum):
    """Where an approval is; only ``pending`` may still be decided."""

    PENDING = "pending"  # held, waiting for an approver
    APPROVED = "approved"  # approved; the caller's retry signs (or it expires uncollected)
    DENIED = "denied"  # denied: nothing signed, reservation released
    EXPIRED = "expired"  # nobody decided (or collected) in time: reservation released


NONE = "none"
"""The ``approval`` report dimension of a payment that needed no approval."""

APPROVAL_VALUES: tuple[str, ...] = (NONE, *(s.value for s in ApprovalStatus))
"""Every value of the ``approval`` report dimension."""


def threshold_hit(
    amount: int, client_threshold: int | None, global_threshold: int | None
) -> tuple[str, int] | None:
    """Which threshold ``amount`` is above, as (scope, threshold); None when it needs no approval.

    Strictly above: a payment of exactly the threshold passes. The client's
    own threshold is named first when both are exceeded.
    """
    for scope, threshold in ((CLIENT, client_threshold), (GLOBAL, global_threshold)):
        if threshold is not None and amount > threshold:
            return scope, threshold
    return None


def expiry_ms(held_ms: int, demand_timeout_s: int, max_wait_s: int) -> int:
    """When an approval held at ``held_ms`` expires (see the module docstring)."""
    return held_ms + 1000 * max(1, min(demand_timeout_s, max_wait_s))


def check_note(note: str) -> str:
    """The note as stored; too long or with control characters is refused.

    Raises:
        InvalidRequestError: naming the limit.
    """
    if len(note) > MAX_NOTE_CHARS:
        raise InvalidRequestError(
            f"note longer than {MAX_NOTE_CHARS} characters", {"field": "note"}
        )
    if any(ord(c) < 32 and c not in "\t" for c in note):
        raise InvalidRequestError("note must be one line of text", {"field": "note"})
    return note


@dataclass(frozen=True)
class Approval:
    """One approval as approvers and reports see it (amounts in atomic units, times in ms)."""

    approval_id: str
    payment_id: str
    client: str
    status: str
    amount: int
    payee: str
    url: str
    network: str
    created_at_ms: int
    expires_at_ms: int
    threshold: int
    threshold_scope: str
    decided_at_ms: int | None = None
    decided_by: str = ""
    note: str = ""
    labels: Mapping[str, str] = field(default_factory=dict)

    def state(self) -> dict[str, Any]:
        """What a payment event records of it: the whole approval (hash-chained with it)."""
        return {
            "approval_id": self.approval_id,
            "approval_status": self.status,
            "threshold": self.threshold,
            "threshold_scope": self.threshold_scope,
            "expires_at_ms": self.expires_at_ms,
            "decided_at_ms": self.decided_at_ms,
            "decided_by": self.decided_by,
            "note": self.note,
        }


@dataclass(frozen=True)
class ApprovalEvent:
    """What an approver's watch sees: an approval now ``pending``, or just ``decided``.

    "decided" covers approved, denied and expired (``approval.status`` says which).
    """

    kind: str
    approval: Approval


STATE_FIELDS: tuple[str, ...] = (
    "status",
    "threshold",
    "threshold_scope",
    "expires_at_ms",
    "decided_at_ms",
    "decided_by",
    "note",
)
"""The ``approvals`` columns an approval event vouches for (``Approval.state`` names them)."""


def event_state(row: Mapping[str, Any]) -> dict[str, Any]:
    """An ``approvals`` row as ``Approval.state`` records it, to compare with its newest event."""
    doc = {("approval_status" if k == "status" else k): row[k] for k in STATE_FIELDS}
    doc["approval_id"] = row["id"]
    return doc


def required_error(approval: Approval) -> ApprovalRequiredError:
    """What Pay answers while the payment is held (the MCP face shows the message as is)."""
    usd = format_usd(approval.amount)
    return ApprovalRequiredError(
        f"awaiting approval {approval.approval_id}: {usd} USD to {approval.payee} for "
        f"{approval.url:.200} is above the {approval.threshold_scope} approval threshold "
        f"{format_usd(approval.threshold)} USD; approve with `walletd approve "
        f"{approval.approval_id}` (retry under the same idempotency key afterwards)",
        {
            "approval_id": approval.approval_id,
            "payment_id": approval.payment_id,
            "amount": str(approval.amount),
            "amount_usd": usd,
            "payee": approval.payee,
            "url": approval.url[:2048],
            "expires_at_ms": str(approval.expires_at_ms),
            "threshold": approval.threshold_scope,
        },
    )


def denied_error(approval: Approval) -> ApprovalDeniedError:
    """What Pay answers for a denied or expired approval: nothing was signed."""
    if approval.status == ApprovalStatus.DENIED:
        why = f"denied by {approval.decided_by}" + (f": {approval.note}" if approval.note else "")
    else:
        why = "expired before it was approved and collected"
    return ApprovalDeniedError(
        f"payment {approval.payment_id} was not signed: approval {approval.approval_id} {why}",
        {
            "approval_id": approval.approval_id,
            "payment_id": approval.payment_id,
            "status": approval.status,
            "decided_by": approval.decided_by,
            "note": approval.note,
        },
    )


def closed_error(approval: Approval) -> ApprovalClosedError:
    """An approve or deny of an approval that is no longer pending."""
    return ApprovalClosedError(
        f"approval {approval.approval_id} is already {approval.status}; nothing changed",
        {"approval_id": approval.approval_id, "status": approval.status},
    )
