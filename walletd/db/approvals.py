"""Approvals: payments held above a threshold, the decisions on them, and the thresholds.

A held payment is an ordinary ``payments`` row (so every budget window counts
it exactly, as a reservation) plus an ``approvals`` row. Every change to an
approval is a move of its payment (``SettlementTx.move``: compare-and-set on
the status, the release of the running totals, an event) whose event records
the whole approval, so the hash chain vouches for the decision. Thresholds
are set like budgets, each change an admin event.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import func, select, update

from walletd.db import tables
from walletd.db.settlement import SettlementTx
from walletd.domain import audit
from walletd.domain.approval import Approval, ApprovalStatus
from walletd.domain.payment import HELD_STATUSES, PaymentStatus
from walletd.errors import NotFoundError, StorageError

A, P, C = tables.Approval, tables.Payment, tables.Client


@dataclass(frozen=True)
class SignedHeld:
    """What signing a held payment writes onto its row."""

    nonce: str
    header_name: str
    header_value: str
    valid_after: int
    valid_before: int
    payer: str


def _view(row: Any) -> Approval:
    try:
        labels = json.loads(row.labels or "{}")
    except ValueError:
        labels = {}
    return Approval(
        approval_id=row.id,
        payment_id=row.payment_id,
        client=row.client,
        status=row.status,
        amount=int(row.amount),
        payee=row.payee,
        url=row.url,
        network=row.network,
        created_at_ms=int(row.created_at_ms),
        expires_at_ms=int(row.expires_at_ms),
        threshold=int(row.threshold),
        threshold_scope=row.threshold_scope,
        decided_at_ms=None if row.decided_at_ms is None else int(row.decided_at_ms),
        decided_by=row.decided_by,
        note=row.note,
        labels=labels,
    )


def _approvals() -> Any:
    return (
        select(
            A.id, A.payment_id, A.status, A.threshold, A.threshold_scope, A.created_at_ms,
            A.expires_at_ms, A.decided_at_ms, A.decided_by, A.note, C.name.label("client"),
            P.amount, P.payee, P.url, P.network, P.labels, P.status.label("payment_status"),
        )
        .select_from(A)
        .join(P, P.id == A.payment_id)
        .join(C, C.id == A.client_id)
    )  # fmt: skip


class ApprovalsTx(SettlementTx):
    """Held payments' approvals: added, read, decided, expired; and the thresholds."""

    def add_approval(self, approval: Approval, client_id: int) -> None:
        """Record the approval of a payment just held (``add_payment`` wrote its row and event)."""
        self._serialise()
        self._session.add(
            A(
                id=approval.approval_id,
                payment_id=approval.payment_id,
                client_id=client_id,
                status=approval.status,
                threshold=approval.threshold,
                threshold_scope=approval.threshold_scope,
                created_at_ms=approval.created_at_ms,
                expires_at_ms=approval.expires_at_ms,
                decided_at_ms=None,
                decided_by="",
                note="",
            )
        )
        self._session.flush()

    def approval(self, approval_id: str) -> tuple[Approval, str, int]:
        """One approval, its payment's status and its client's id; raises NotFoundError."""
        stmt = _approvals().add_columns(A.client_id).where(A.id == approval_id)
        row = self._session.execute(stmt).one_or_none()
        if row is None:
            raise NotFoundError(f"no approval {approval_id!r}", {"approval_id": approval_id})
        return _view(row), str(row.payment_status), int(row.client_id)

    def approval_of_payment(self, payment_id: str) -> Approval | None:
        """The approval of a payment, if it was ever held."""
        row = self._session.execute(_approvals().where(A.payment_id == payment_id)).one_or_none()
        return None if row is None else _view(row)

    def list_approvals(
        self, status: str | None, limit: int, client_id: int | None = None
    ) -> list[Approval]:
        """Approvals newest first, optionally in one status or of one client."""
        stmt = _approvals().order_by(A.created_at_ms.desc(), A.id).limit(limit)
        if status is not None:
            stmt = stmt.where(A.status == status)
        if client_id is not None:
            stmt = stmt.where(A.client_id == client_id)
        return [_view(row) for row in self._session.execute(stmt)]

    def due_approvals(self, now_ms: int, limit: int) -> list[tuple[Approval, str]]:
        """Held payments past their approval's expiry, with their payment status."""
        stmt = (
            _approvals()
            .where(A.expires_at_ms <= now_ms, P.status.in_(sorted(HELD_STATUSES)))
            .order_by(A.expires_at_ms, A.id)
            .limit(limit)
        )
        return [(_view(row), str(row.payment_status)) for row in self._session.execute(stmt)]

    def pending_count(self) -> int:
        """How many approvals wait for a decision."""
        stmt = select(func.count()).select_from(A).where(A.status == ApprovalStatus.PENDING)
        return int(self._session.execute(stmt).scalar_one())

    def decide_approval(
        self,
        approval: Approval,
        decided: Approval,
        payment_status: str,
        target: str,
        cause: str,
        at_ms: int,
    ) -> bool:
        """Move ``approval`` to ``decided`` and its payment to ``target``; False if it moved.

        A compare-and-set on both statuses, under the writer lock, so of two
        decisions racing (two approvers, an approver and the expiry sweep,
        several replicas) exactly one applies; its payment event records the
        whole decided approval.
        """
        self._serialise()
        result = self._session.execute(
            update(A)
            .where(A.id == approval.approval_id, A.status == approval.status)
            .values(
                status=decided.status,
                decided_at_ms=decided.decided_at_ms,
                decided_by=decided.decided_by,
                note=decided.note,
            )
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        moved = self.move(
            approval.payment_id, payment_status, target, at_ms, cause, decided.state()
        )
        if not moved:  # the approval row moved but its payment did not: never leave that half
            raise StorageError(f"payment {approval.payment_id} changed under its approval")
        return True

    def sign_held(
        self, payment_id: str, signed: SignedHeld, at_ms: int, data: Mapping[str, object]
    ) -> None:
        """Write the signature onto an approved held payment (``approved`` -> ``signed``).

        Raises:
            StorageError: the payment is no longer ``approved`` (nothing is recorded).
        """
        self._serialise()
        result = self._session.execute(
            update(P)
            .where(P.id == payment_id, P.status == PaymentStatus.APPROVED)
            .values(status=PaymentStatus.SIGNED, **signed.__dict__)
        )
        if getattr(result, "rowcount", 0) != 1:
            raise StorageError(f"payment {payment_id} is no longer approved; nothing signed")
        self.add_event(payment_id, at_ms, PaymentStatus.SIGNED, "pay", data)

    def set_approval_threshold(self, name: str | None, amount: int | None, at_ms: int) -> None:
        """Set a client's (or, with None, the global) approval threshold; an admin event."""
        self._serialise()
        self._state = None
        if name is None:
            self._session.execute(
                update(tables.WalletState)
                .where(tables.WalletState.id == 1)
                .values(approve_above=amount)
            )
        else:
            result = self._session.execute(
                update(C).where(C.name == name).values(approve_above=amount)
            )
            if getattr(result, "rowcount", 0) != 1:
                raise NotFoundError(f"no client named {name!r}")
        data = {"approve_above": amount}
        self._admin_event(audit.APPROVAL_THRESHOLD, name or "", data, at_ms)


def decided(approval: Approval, status: str, at_ms: int, by: str, note: str) -> Approval:
    """``approval`` as a decision leaves it."""
    return replace(approval, status=status, decided_at_ms=at_ms, decided_by=by, note=note)
