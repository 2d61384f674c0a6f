"""The hash-chained tables: payment events, decisions, key events and admin events.

Their encoding and hashes are ``walletd.domain.audit``'s.

Appending reads the chain's tail and writes the next link, which is only
correct while no other writer appends in between, so every append first
takes the writer lock (``Transaction._serialise``). A tail is read once per
transaction and then kept as rows are appended: under the lock nobody else
moves it. Rows get explicit ids (tail + 1), so id order is chain order, and a
writer that read a stale tail collides on the id instead of forking the chain.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping

from sqlalchemy import select

from walletd.db import hot, tables
from walletd.db.records import KeyEventRecord, NewDecision, PaymentEventRecord
from walletd.db.transaction import Transaction
from walletd.domain import audit
from walletd.errors import StorageError


class ChainsTx(Transaction):
    """Appends to the chains (and reads them back): the audit trail of every change."""

    def _tail(self, table: str) -> tuple[int, str]:
        """The id and hash of a chain's newest row (0 and GENESIS when it is empty)."""
        tail = self._tails.get(table)
        if tail is None:
            last = self._raw(self._sql.tail(table)).fetchone()
            tail = (0, audit.GENESIS) if last is None else (int(last[0]), str(last[1]))
        return tail

    # --- payment events -------------------------------------------------------------------

    def add_event(
        self, payment_id: str, at_ms: int, status: str, cause: str, data: Mapping[str, object]
    ) -> None:
        """Append one transition of a payment, chained to the event before it.

        Call it after every change to the payment row in the same transaction:
        the event records the row as it is now (see ``walletd.domain.audit``).

        Raises:
            StorageError: no such payment (nothing is recorded).
        """
        self._serialise()
        if self._orm is not None:  # what the session still holds is in the row it reads
            self._orm.flush()
        row = self._raw(self._sql.payment_row, (payment_id,)).fetchone()
        if row is None:
            raise StorageError(f"ledger constraint violated: no payment {payment_id!r}")
        snapshot = audit.payment_digest(dict(zip(hot.PAYMENT_COLUMNS, row, strict=True)))
        self._append_event(payment_id, at_ms, status, cause, data, snapshot)

    def _append_event(
        self,
        payment_id: str,
        at_ms: int,
        status: str,
        cause: str,
        data: Mapping[str, object],
        payment_hash: str,
    ) -> None:
        last_id, prev = self._tail(audit.EVENTS)
        doc: dict[str, object] = {
            "id": last_id + 1,
            "payment_id": payment_id,
            "at_ms": at_ms,
            "status": status,
            "cause": cause,
            "data": json.dumps(data, sort_keys=True),
            "payment_hash": payment_hash,
            "prev_hash": prev,
        }
        doc["hash"] = audit.event_hash(doc)
        self._write(self._sql.insert_event, [doc[c] for c in hot.EVENT_COLUMNS])
        self._tails[audit.EVENTS] = (last_id + 1, str(doc["hash"]))

    def events(self, payment_id: str) -> list[PaymentEventRecord]:
        """A payment's history, oldest first."""
        query = (
            select(tables.PaymentEvent)
            .where(tables.PaymentEvent.payment_id == payment_id)
            .order_by(tables.PaymentEvent.id)
        )
        return [
            PaymentEventRecord(e.at_ms, e.status, e.cause, json.loads(e.data))
            for e in self._session.execute(query).scalars()
        ]

    # --- decisions ------------------------------------------------------------------------

    def add_decision(self, new: NewDecision) -> None:
        """Append one Pay decision to the decision log, chained to the one before it."""
        self._serialise()
        last_id, prev = self._tail(audit.DECISIONS)
        doc: dict[str, object] = {k: v for k, v in new.__dict__.items() if k != "labels"}
        doc.update(id=last_id + 1, labels=json.dumps(dict(new.labels)), prev_hash=prev)
        doc["hash"] = audit.decision_hash(doc)
        self._write(self._sql.insert_decision, [doc[c] for c in hot.DECISION_COLUMNS])
        self._tails[audit.DECISIONS] = (last_id + 1, str(doc["hash"]))

    # --- key events -----------------------------------------------------------------------

    def add_key_event(
        self,
        at_ms: int,
        operation: str,
        addresses: tuple[str, str],
        data: Mapping[str, object],
    ) -> None:
        """Append a key operation (old and new address; never a secret) to its chain."""
        self._serialise()
        last_id, prev = self._tail(audit.KEY_EVENTS)
        old_address, new_address = addresses
        doc: dict[str, object] = {
            "id": last_id + 1,
            "at_ms": at_ms,
            "operation": operation,
            "old_address": old_address,
            "new_address": new_address,
            "data": json.dumps(data, sort_keys=True),
            "prev_hash": prev,
        }
        doc["hash"] = audit.key_event_hash(doc)
        self._session.add(tables.KeyEvent(**doc))
        self._tails[audit.KEY_EVENTS] = (last_id + 1, str(doc["hash"]))

    # --- admin events ---------------------------------------------------------------------

    def _admin_event(
        self, operation: str, client: str, data: Mapping[str, object], at_ms: int | None
    ) -> None:
        """Append one admin event (the state a change left) to its chain, in this transaction."""
        self._serialise()
        last_id, prev = self._tail(audit.ADMIN_EVENTS)
        doc: dict[str, object] = {
            "id": last_id + 1,
            "at_ms": time.time_ns() // 1_000_000 if at_ms is None else at_ms,
            "operation": operation,
            "client": client,
            "data": json.dumps(data, sort_keys=True),
            "prev_hash": prev,
        }
        doc["hash"] = audit.admin_event_hash(doc)
        self._session.add(tables.AdminEvent(**doc))
        self._session.flush()
        self._tails[audit.ADMIN_EVENTS] = (last_id + 1, str(doc["hash"]))

    def key_events(self) -> list[KeyEventRecord]:
        """Every key operation, oldest first."""
        rows = self._session.execute(select(tables.KeyEvent).order_by(tables.KeyEvent.id))
        return [
            KeyEventRecord(
                e.id, e.at_ms, e.operation, e.old_address, e.new_address, json.loads(e.data)
            )
            for e in rows.scalars()
        ]

    def current_key(self) -> str | None:
        """The address the newest key event left in use, or None when none was recorded."""
        return self._session.execute(
            select(tables.KeyEvent.new_address).order_by(tables.KeyEvent.id.desc()).limit(1)
        ).scalar_one_or_none()
