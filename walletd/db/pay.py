"""Pay's own reads and writes: the idempotency lookup, the new payment row, payment lists.

Everything here that a Pay runs is a plain statement of ``walletd.db.hot``
(see ARCHITECTURE.md, "Pay, in order"): the client with its earlier payment
under the key (and whether any scoped limit could apply) in one SELECT, then
the row, its first event and its running totals, which ``LedgerTx.pipelined``
sends together on PostgreSQL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from sqlalchemy import select

from walletd.db import hot, tables
from walletd.db.limits import LimitsTx
from walletd.db.records import ClientRecord, NewPayment, StoredPayment
from walletd.db.spending import SpendingTx
from walletd.domain import audit
from walletd.domain.payment import PaymentView
from walletd.errors import NotFoundError


def _new_payment_facts(new: NewPayment, status: str, labels: str) -> dict[str, object]:
    """The row ``add_payment`` inserts, as ``audit.payment_digest`` reads it."""
    facts: dict[str, object] = {k: v for k, v in new.__dict__.items() if k != "labels"}
    facts.update(status=status, labels=labels, released_at_ms=None)
    facts.update(reported_tx=None, settled_tx=None)
    return facts


def _view(row: tables.Payment, client: str) -> PaymentView:
    return PaymentView(
        payment_id=row.id,
        client=client,
        status=row.status,
        amount=row.amount,
        payee=row.payee,
        network=row.network,
        url=row.url,
        created_at=row.created_at_ms // 1000,
        valid_before=row.valid_before,
        nonce=row.nonce,
        labels=json.loads(row.labels),
    )


class PayTx(SpendingTx, LimitsTx):
    """A payment's record: looked up by idempotency key, inserted with its event and totals."""

    def client_with_payment(
        self, client_id: int, idempotency_key: str
    ) -> tuple[ClientRecord, StoredPayment | None]:
        """The client, and its payment under this idempotency key if any, in one statement.

        The same statement says whether the client or every client has scoped
        limits; when neither has, ``limits_for`` answers without a read of its own.
        """
        found = self._raw(self._sql.client_with_payment, (idempotency_key, client_id)).fetchone()
        if found is None:
            raise NotFoundError(f"no client with id {client_id}")
        width = len(hot.CLIENT_COLUMNS)
        if not found[width]:
            self._limit_rows[client_id] = []
        payment = None if found[width + 1] is None else hot.stored_payment(found[width + 1 :])
        return hot.client_record(found[:width]), payment

    def owned_payment(self, client_id: int, payment_id: str) -> tuple[bool, StoredPayment | None]:
        """Whether the client is revoked, and its payment of this id if any, in one statement."""
        found = self._raw(self._sql.owned_payment, (payment_id, client_id)).fetchone()
        if found is None:
            raise NotFoundError(f"no client with id {client_id}")
        payment = None if found[1] is None else hot.stored_payment(found[1:])
        return found[0] is not None, payment

    def payment(self, payment_id: str) -> StoredPayment:
        """One payment by id; raises NotFoundError."""
        row = self._raw(self._sql.payment, (payment_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no payment {payment_id!r}")
        return hot.stored_payment(row)

    def add_payment(
        self,
        new: NewPayment,
        status: str,
        cause: str,
        data: Mapping[str, object] | None = None,
    ) -> None:
        """Record a payment (signed, or held), its first event, and its running totals."""
        self._serialise()
        labels = json.dumps(dict(new.labels))
        facts = _new_payment_facts(new, status, labels)
        self._write(self._sql.insert_payment, [facts[c] for c in hot.PAYMENT_INSERT_COLUMNS])
        snapshot = audit.payment_digest(facts)
        self._append_event(new.id, new.created_at_ms, status, cause, data or {}, snapshot)
        self._count(new.client_id, new.amount, new.created_at_ms)
        self._count_limits(new)

    def list_payments(self, client_id: int | None, limit: int) -> list[PaymentView]:
        """Payments newest first, for one client or all."""
        query = (
            select(tables.Payment, tables.Client.name)
            .join(tables.Client)
            .order_by(tables.Payment.created_at_ms.desc(), tables.Payment.id)
            .limit(limit)
        )
        if client_id is not None:
            query = query.where(tables.Payment.client_id == client_id)
        return [_view(row, name) for row, name in self._session.execute(query)]
