"""Spending: the running totals in ``spend_buckets`` and the window sums read from them.

A payment is added to its scopes' totals (its client's and the global one) in
the transaction that records it and taken off when it is released, so a
budget window is read with a handful of index lookups whatever it holds
(``walletd.domain.buckets``). A scope whose totals outgrew BIGINT, or a window
reaching back past pruned buckets, is summed from the payment rows instead;
both give the same numbers.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError

from walletd.db import hot, tables
from walletd.db.transaction import Transaction
from walletd.domain import buckets
from walletd.domain.budget import SPAN_WINDOWS, window_starts
from walletd.errors import StorageError


class SpendingTx(Transaction):
    """The window sums a budget check reads, and the running totals behind them."""

    def spent(
        self, client_id: int | None, now_ms: int, windows: Collection[str] = SPAN_WINDOWS
    ) -> dict[str, int]:
        """What each summing window in ``windows`` counts, for one client or (None) for all."""
        wanted = [w for w in SPAN_WINDOWS if w in windows]
        if not wanted:
            return {}
        starts = window_starts(now_ms)
        scope = hot.GLOBAL_SCOPE if client_id is None else client_id
        per_client = client_id is not None
        sql = self._sql.window_sums(len(wanted), per_client)
        params = hot.window_params(scope, [starts[w] for w in wanted], per_client)
        try:
            row = self._raw(sql, params).fetchone()
        except StorageError as exc:
            # SQLite's SUM raises past int64: only the rows of a scope whose totals
            # outgrew BIGINT can get there, and that scope is summed from the rows.
            if "overflow" not in str(exc.__cause__):
                raise
            return {w: v for w, v in self._scan_spent(client_id, starts).items() if w in wanted}
        return self._window_totals(client_id, starts, wanted, row)

    def spent_pair(
        self, client_id: int, now_ms: int, windows: Collection[str], global_windows: Collection[str]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """``spent`` of one client and of everyone (``spent(None, ...)``) in one statement.

        A side with no window still has its lifetime total read (the statement's
        scalar for it), so the running totals of the new payment need no read.
        """
        wanted = [w for w in SPAN_WINDOWS if w in windows]
        wanted_global = [w for w in SPAN_WINDOWS if w in global_windows]
        if not wanted and not wanted_global:
            return self.spent(client_id, now_ms, windows), self.spent(None, now_ms, global_windows)
        starts = window_starts(now_ms)
        sql = self._sql.window_sums_pair(len(wanted), len(wanted_global))
        params = hot.window_params(client_id, [starts[w] for w in wanted], True)
        params += hot.window_params(hot.GLOBAL_SCOPE, [starts[w] for w in wanted_global], False)
        try:
            row = self._raw(sql, params).fetchone()
        except StorageError as exc:
            if "overflow" not in str(exc.__cause__):  # see ``spent``: each scope on its own
                raise
            return self.spent(client_id, now_ms, windows), self.spent(None, now_ms, global_windows)
        split = len(wanted) * (len(buckets.SPANS) + 2) + 2
        self._lifetimes = {client_id: row[split - 2] or 0, hot.GLOBAL_SCOPE: row[-2] or 0}
        return (
            self._window_totals(client_id, starts, wanted, row[:split]),
            self._window_totals(None, starts, wanted_global, row[split:]),
        )

    def _window_totals(
        self, client_id: int | None, starts: dict[str, int], wanted: list[str], row: Any
    ) -> dict[str, int]:
        """The windows' totals from a ``window_sums`` row, or from the rows when they must be."""
        if not wanted:
            return {}
        lifetime, horizon = row[-2], row[-1] or 0
        if lifetime == buckets.SATURATED or any(
            buckets.needs_rows(starts[w], horizon) for w in wanted
        ):
            return {w: v for w, v in self._scan_spent(client_id, starts).items() if w in wanted}
        width = len(buckets.SPANS) + 2
        return {
            w: sum(int(v) for v in row[i * width : (i + 1) * width]) for i, w in enumerate(wanted)
        }

    def _scan_spent(self, client_id: int | None, starts: dict[str, int]) -> dict[str, int]:
        """Every window summed from the payment rows (what the running totals must equal)."""
        pay = tables.Payment
        sums = [
            func.coalesce(func.sum(pay.amount).filter(pay.created_at_ms >= starts[w]), 0)
            for w in SPAN_WINDOWS
        ]
        query = select(*sums).where(pay.released_at_ms.is_(None))
        if client_id is not None:
            query = query.where(pay.client_id == client_id)
        try:
            row = self._session.execute(query).one()
        except OperationalError as exc:
            # SQLite's SUM over INTEGER raises on int64 overflow (PostgreSQL widens
            # to numeric). Sum exactly in Python instead: a window that large must
            # refuse with BUDGET_EXCEEDED, not stop the ledger with a storage error.
            if "overflow" not in str(exc.orig):
                raise
            return self._spent_exactly(client_id, starts)
        return {w: int(v) for w, v in zip(SPAN_WINDOWS, row, strict=True)}

    def _spent_exactly(self, client_id: int | None, starts: dict[str, int]) -> dict[str, int]:
        pay = tables.Payment
        query = select(pay.amount, pay.created_at_ms).where(pay.released_at_ms.is_(None))
        if client_id is not None:
            query = query.where(pay.client_id == client_id)
        totals = dict.fromkeys(SPAN_WINDOWS, 0)
        for amount, created in self._session.execute(query):
            for window in SPAN_WINDOWS:
                if created >= starts[window]:
                    totals[window] += amount
        return totals

    # --- the running totals ---------------------------------------------------------------

    def _count(self, client_id: int, amount: int, created_ms: int) -> None:
        """Add a new unreleased payment to its scopes' running totals."""
        sql = self._sql
        lifetimes = self._lifetimes_of(client_id)
        rows: list[int] = []
        for scope in (client_id, hot.GLOBAL_SCOPE):
            lifetime = lifetimes.get(scope, 0)
            if lifetime == buckets.SATURATED:
                continue
            if lifetime + amount > buckets.INT64_MAX:
                # Past BIGINT: this scope is summed from the rows from now on.
                saturate = (scope, buckets.LIFETIME, 0, buckets.SATURATED)
                self._write(sql.set_bucket, saturate)
                continue
            for span, start in buckets.bucket_keys(created_ms):
                rows += (scope, span, start, amount)
        if rows:
            self._write(sql.add_buckets(len(rows) // 4), rows)

    def _lifetimes_of(self, client_id: int) -> dict[int, int]:
        """The lifetime totals of a client's scope and the global one, before a bucket write.

        What ``spent_pair`` read for this client moments ago is still exact (only
        bucket writes change it, and each of them comes through here or prune),
        which saves a round trip per Pay on PostgreSQL; otherwise read them.
        """
        known, self._lifetimes = self._lifetimes, None
        if known is not None and client_id in known:
            return known
        found = self._raw(self._sql.lifetimes, (client_id, hot.GLOBAL_SCOPE)).fetchall()
        return dict(found)

    def _uncount(self, client_id: int, amount: int, created_ms: int) -> None:
        """Take a released payment out of its scopes' running totals."""
        sql = self._sql
        lifetimes = self._lifetimes_of(client_id)
        for scope in (client_id, hot.GLOBAL_SCOPE):
            if lifetimes.get(scope, 0) == buckets.SATURATED:
                continue
            for span, start in buckets.bucket_keys(created_ms):
                self._write(sql.sub_bucket, (amount, scope, span, start))

    def prune_spend_buckets(self, before_ms: int) -> None:
        """Delete second, minute and hour buckets starting before ``before_ms``.

        Only the hourly and daily windows read them, so nothing later than a
        day ago is needed; the horizon row makes a window that reaches past it
        (a clock set back by days) sum its rows instead.
        """
        self._lifetimes = None
        sql = self._sql
        horizon = self._raw(sql.horizon).fetchone()
        if horizon is not None and horizon[0] >= before_ms:
            return
        self._write(sql.prune, (before_ms,))
        self._write(sql.set_bucket, (hot.GLOBAL_SCOPE, hot.HORIZON_SPAN, 0, before_ms))
