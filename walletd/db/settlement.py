"""Settlement: following each payment after Pay, to settled or released.

The reconciler, a client's report and a cancel move payments through the
lifecycle (``walletd.domain.lifecycle``) with a compare-and-set on the status;
each move writes its event, and a move to a releasing status takes the amount
off the running totals in the same transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping

from sqlalchemy import func, select

from walletd.db import tables
from walletd.db.limits import EDGE_COLUMNS, LimitsTx
from walletd.db.records import TrackedPayment
from walletd.db.spending import SpendingTx
from walletd.domain import lifecycle
from walletd.domain.payment import PaymentStatus
from walletd.errors import NotFoundError


def _tracked(row: tables.Payment) -> TrackedPayment:
    return TrackedPayment(
        id=row.id,
        client_id=row.client_id,
        status=row.status,
        amount=row.amount,
        payee=row.payee,
        payer=row.payer,
        network=row.network,
        nonce=row.nonce,
        valid_after=row.valid_after,
        valid_before=row.valid_before,
        created_at_ms=row.created_at_ms,
        reported_tx=row.reported_tx,
        settled_tx=row.settled_tx,
        released=row.released_at_ms is not None,
        kind=row.kind,
        authorized=row.authorized,
        asset=row.asset,
    )


class SettlementTx(SpendingTx, LimitsTx):
    """Payments as the reconciler sees them, and the moves between their statuses."""

    def tracked_payment(self, payment_id: str) -> TrackedPayment:
        """One payment with its settlement facts; raises NotFoundError."""
        row = self._session.get(tables.Payment, payment_id)
        if row is None:
            raise NotFoundError(f"no payment {payment_id!r}")
        return _tracked(row)

    def open_payments(
        self, statuses: Collection[str], limit: int, network: str | None = None
    ) -> list[TrackedPayment]:
        """Payments in ``statuses`` (on ``network``, when given), oldest validBefore first.

        The oldest are due first. A reconciler asks for its own network's only, so
        payments on a network it cannot see never fill its batch.
        """
        query = select(tables.Payment).where(tables.Payment.status.in_(list(statuses)))
        if network is not None:
            query = query.where(tables.Payment.network == network)
        query = query.order_by(tables.Payment.valid_before, tables.Payment.id).limit(limit)
        return [_tracked(row) for row in self._session.execute(query).scalars()]

    def open_elsewhere(self, statuses: Collection[str], network: str) -> dict[str, int]:
        """How many payments in ``statuses`` each network other than ``network`` holds."""
        pay = tables.Payment
        query = (
            select(pay.network, func.count())
            .where(pay.status.in_(list(statuses)), pay.network != network)
            .group_by(pay.network)
        )
        return {str(net): int(count) for net, count in self._session.execute(query)}

    def record_reported_tx(self, payment_id: str, tx_hash: str) -> None:
        """Remember the transaction a server claimed; the first claim is kept.

        The caller records an event in the same transaction (which snapshots it).
        """
        self._serialise()
        self._write(self._sql.report_tx, (tx_hash, payment_id))
        self._forget_payment(payment_id)

    def move(
        self,
        payment_id: str,
        current: str,
        target: str,
        at_ms: int,
        cause: str,
        data: Mapping[str, object],
        *,
        settled_tx: str | None = None,
        charged: int | None = None,
    ) -> bool:
        """Move a payment from ``current`` to ``target`` with its event; False if it moved already.

        A compare-and-set on the status, so the daemon's reconciler and a CLI
        ``reconcile`` running at once can never both apply a transition. The
        lifecycle table is enforced here so no caller can skip it, and the
        budget is released exactly when the target status releases it.
        ``charged`` (an upto payment settling, at most its amount) becomes the
        amount, and the rest of the reservation is released in the same move.

        Raises:
            lifecycle.TransitionError: the table forbids the move.
        """
        lifecycle.require_move(current, target)
        self._serialise()
        values: dict[str, object] = {"status": target}
        if lifecycle.releases(target):
            values["released_at_ms"] = at_ms
        if settled_tx is not None:
            values["settled_tx"] = settled_tx
        before = None
        if charged is not None:
            pay = tables.Payment
            before = tuple(
                self._session.execute(
                    select(*(pay.__table__.c[c] for c in EDGE_COLUMNS)).where(pay.id == payment_id)
                ).one()
            )
            if not 0 <= charged <= before[1]:
                raise ValueError(f"charged {charged} is outside 0..{before[1]}")
            values["amount"] = charged
        if self._orm is not None:  # a row the session changed is changed before this one
            self._orm.flush()
        sql = self._sql.move(tuple(values))
        moved = self._write(sql, (*values.values(), payment_id, current)).rowcount == 1
        self._forget_payment(payment_id)
        if not moved:
            return False
        if before is not None and charged is not None and charged < before[1]:
            # upto: what was reserved above the charge comes back, in every total it is in
            unused = (before[0], before[1] - charged, *before[2:])
            self._uncount(unused[0], unused[1], unused[6])
            self._uncount_limits(unused)
        if lifecycle.releases(target):
            pay = tables.Payment
            row = self._session.execute(
                select(*(pay.__table__.c[c] for c in EDGE_COLUMNS)).where(pay.id == payment_id)
            ).one()
            self._uncount(row.client_id, row.amount, row.created_at_ms)
            self._uncount_limits(row)
        self.add_event(payment_id, at_ms, target, cause, data)
        return True

    def _forget_payment(self, payment_id: str) -> None:
        """A payment row changed by plain SQL is re-read by the session, not taken from memory."""
        if self._orm is None:
            return
        held = self._orm.identity_map.get(self._orm.identity_key(tables.Payment, payment_id))
        if held is not None:
            self._orm.expire(held)

    def outstanding(self, payer: str | None = None) -> tuple[int, int]:
        """Count and sum of payments counted as spent but not settled (may still move money).

        ``payer`` restricts it to one key's authorizations: after a rotation only
        the new key's promises draw on the new key's balance. A Pay with a known
        balance runs it, so it is a plain statement (``walletd.db.hot``).
        """
        settled = PaymentStatus.SETTLED
        if payer is None:
            row = self._raw(self._sql.outstanding, (settled,)).fetchone()
        else:
            row = self._raw(self._sql.outstanding_of, (settled, payer)).fetchone()
        return int(row[0]), int(row[1])

    def outstanding_by_key(self, payer: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """``outstanding(payer)``, and the same for every other (retired) key, in one query."""
        pay = tables.Payment
        mine, others = pay.payer == payer, pay.payer != payer
        query = select(
            func.count().filter(mine), func.coalesce(func.sum(pay.amount).filter(mine), 0),
            func.count().filter(others), func.coalesce(func.sum(pay.amount).filter(others), 0),
        ).where(pay.released_at_ms.is_(None), pay.status != PaymentStatus.SETTLED)  # fmt: skip
        row = self._session.execute(query).one()
        return (int(row[0]), int(row[1])), (int(row[2]), int(row[3]))
