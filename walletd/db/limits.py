"""Scoped limits: their rows, their running totals, and what their windows count now.

A scoped limit (``walletd.domain.limits``) keeps running totals in
``spend_buckets`` like a client does, under two scopes of its own: amounts
(``-2 * id``, unreleased payments, taken off at release) and signatures
(``-2 * id - 1``, never taken off). A window is read as the client windows
are (``walletd.domain.buckets.plan``): whole buckets in one statement for
every limit and window a Pay needs, plus the sub-second edge, read here as
the payment rows of that slice (at most a second of them) and matched to
each selector in Python, because a label lives in the row's JSON. A limit
whose lifetime total saturated, or a window reaching past pruned buckets,
is summed from the rows instead: both give the same numbers.

A new limit's totals are filled from the payments it selects in the
transaction that creates it, so it counts what was already spent; a removed
limit's totals are deleted with it.
"""

# ruff: noqa: S608  (SQL text from constants only; values are always parameters)

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from functools import cache
from typing import Any

from sqlalchemy import delete, insert, select, update

from walletd.db import hot, tables
from walletd.db.chains import ChainsTx
from walletd.db.records import NewPayment
from walletd.domain import audit, buckets
from walletd.domain.budget import window_starts
from walletd.domain.limits import (
    ALL,
    GLOBAL_OWNER,
    LIMIT_FIELDS,
    LimitUsage,
    ScopedLimit,
    Subject,
    limit_from_values,
    parse_selector,
    rate_starts,
)

_T = tables.ScopedLimit.__table__
LIMIT_COLUMNS: tuple[str, ...] = tuple(
    str(_T.c[name].name) for name in ("id", "owner", "selector", *LIMIT_FIELDS)
)
"""What a scoped-limit read returns (``limit_row`` decodes it)."""

EDGE_COLUMNS: tuple[str, ...] = tuple(
    str(tables.Payment.__table__.c[name].name)
    for name in (
        "client_id",
        "amount",
        "released_at_ms",
        "labels",
        "host",
        "payee",
        "created_at_ms",
    )
)
"""What the rows a selector is matched against are read with."""

_BUCKET_SUM = (
    "(SELECT COALESCE(SUM(amount), 0) FROM spend_buckets "
    "WHERE scope = ? AND span = ? AND start_ms >= ? AND start_ms < ?)"
)
_LIFETIME = (
    "(SELECT amount FROM spend_buckets "
    f"WHERE scope = ? AND span = {buckets.LIFETIME} AND start_ms = 0)"
)
_HORIZON = (
    "(SELECT amount FROM spend_buckets "
    f"WHERE scope = {hot.GLOBAL_SCOPE} AND span = {hot.HORIZON_SPAN} AND start_ms = 0)"
)
_SPAN_PARTS = len(buckets.SPANS) + 1
"""Bucket sums per window: one per span, and the lifetime bucket."""


def limit_row(row: Sequence[Any]) -> ScopedLimit:
    """The ScopedLimit of a ``LIMIT_COLUMNS`` row."""
    selector = parse_selector(row[2]) if row[2] else ALL
    return limit_from_values(
        int(row[0]), int(row[1]), selector, dict(zip(LIMIT_FIELDS, row[3:], strict=True))
    )


def subject_of(row: Sequence[Any]) -> Subject:
    """The selector's view of an ``EDGE_COLUMNS`` row."""
    return Subject(int(row[0]), json.loads(row[3] or "{}"), str(row[4]), str(row[5]))


@cache
def _statements(placeholder: str) -> dict[str, str]:
    def sql(text: str) -> str:
        return text if placeholder == "?" else text.replace("?", placeholder)

    cols = ", ".join(LIMIT_COLUMNS)
    edge = ", ".join(EDGE_COLUMNS)
    return {
        "limits_for": sql(f"SELECT {cols} FROM scoped_limits WHERE owner IN (?, ?) ORDER BY id"),
        "limits_of": sql(f"SELECT {cols} FROM scoped_limits WHERE owner = ? ORDER BY selector"),
        "rows": sql(f"SELECT {edge} FROM payments WHERE created_at_ms >= ?"),
        "client_rows": sql(
            f"SELECT {edge} FROM payments WHERE created_at_ms >= ? AND client_id = ?"
        ),
        "edge": sql(f"SELECT {edge} FROM payments WHERE "),
        "lifetimes": sql(
            "SELECT scope, amount FROM spend_buckets "
            f"WHERE span = {buckets.LIFETIME} AND start_ms = 0 AND scope IN "
        ),
        "sub": sql(
            "UPDATE spend_buckets SET amount = amount - ? "
            "WHERE scope = ? AND span = ? AND start_ms = ?"
        ),
        "set": sql(
            "INSERT INTO spend_buckets (scope, span, start_ms, amount) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope, span, start_ms) DO UPDATE SET amount = excluded.amount"
        ),
    }


def _in(placeholder: str, count: int) -> str:
    return "(" + ", ".join([placeholder] * count) + ")"


class LimitsTx(ChainsTx):
    """Scoped limits: read for a Pay, counted with its payment, changed by the operator."""

    @property
    def _lsql(self) -> dict[str, str]:
        return _statements(self._sql.placeholder)

    # --- reading ------------------------------------------------------------------------

    def limits_for(self, client_id: int) -> list[ScopedLimit]:
        """The limits of a client and the global ones (read once per transaction)."""
        found = self._limit_rows.get(client_id)
        if found is None:
            rows = self._raw(self._lsql["limits_for"], (client_id, GLOBAL_OWNER)).fetchall()
            found = self._limit_rows[client_id] = [limit_row(r) for r in rows]
        return found

    def limits_of(self, owner: int) -> list[ScopedLimit]:
        """The limits one owner (a client's id, or 0) set, by selector."""
        return [limit_row(r) for r in self._raw(self._lsql["limits_of"], (owner,)).fetchall()]

    def limit_usage(self, subject: Subject, now_ms: int) -> list[LimitUsage]:
        """Every limit that applies to a payment with these facts, with what it counts now."""
        applying = [lim for lim in self.limits_for(subject.client_id) if lim.applies(subject)]
        return self.usage(applying, now_ms)

    def usage(self, limits: list[ScopedLimit], now_ms: int) -> list[LimitUsage]:
        """What each window of ``limits`` counts at ``now_ms`` (one statement for the buckets)."""
        self._limit_lifetimes = None
        if not limits:
            return []
        starts, rates = window_starts(now_ms), rate_starts(now_ms)
        pairs: list[tuple[ScopedLimit, bool, str, int, int]] = []
        """(limit, amounts?, window, scope, start) per window read."""
        for lim in limits:
            for w in lim.budget.summed_windows():
                pairs.append((lim, True, w, lim.amount_scope, starts[w]))
            for w in lim.rate_windows():
                pairs.append((lim, False, w, lim.count_scope, rates[w]))
        if not pairs:
            return [LimitUsage(lim, {}, {}) for lim in limits]
        scopes = sorted({p[3] for p in pairs})
        params: list[int] = []
        for *_, scope, start in pairs:
            for span, first, end in buckets.plan(start).ranges:
                params += (scope, span, first, end)
        params += scopes
        parts = [_BUCKET_SUM] * (_SPAN_PARTS * len(pairs)) + [_LIFETIME] * len(scopes)
        sql = self._sql.sql(f"SELECT {', '.join(parts)}, {_HORIZON}")
        row = self._raw(sql, params).fetchone()
        lifetimes = dict(zip(scopes, row[-1 - len(scopes) : -1], strict=True))
        self._limit_lifetimes = {s: int(v or 0) for s, v in lifetimes.items()}
        horizon = int(row[-1] or 0)
        edges = self._edge_rows(limits, [buckets.plan(p[4]).edge for p in pairs])
        spent: dict[int, dict[str, int]] = defaultdict(dict)
        counts: dict[int, dict[str, int]] = defaultdict(dict)
        for i, (lim, amounts, window, scope, start) in enumerate(pairs):
            if lifetimes[scope] == buckets.SATURATED or buckets.needs_rows(start, horizon):
                value = self._scan_window(lim, amounts, start)
            else:
                value = sum(int(v) for v in row[i * _SPAN_PARTS : (i + 1) * _SPAN_PARTS])
                first, end = buckets.plan(start).edge
                value += _tally(lim, amounts, (r for r in edges if first <= r[6] < end))
            (spent if amounts else counts)[lim.id][window] = value
        return [LimitUsage(lim, spent[lim.id], counts[lim.id]) for lim in limits]

    def _edge_rows(
        self, limits: list[ScopedLimit], edges: list[tuple[int, int]]
    ) -> list[Sequence[Any]]:
        """The payment rows of every non-empty edge (of the owners' payments)."""
        ranges = sorted({e for e in edges if e[0] < e[1]})
        if not ranges:
            return []
        owners = {lim.owner for lim in limits}
        per_client = GLOBAL_OWNER not in owners and len(owners) == 1
        where = " OR ".join(["(created_at_ms >= ? AND created_at_ms < ?)"] * len(ranges))
        params: list[int] = [v for r in ranges for v in r]
        if per_client:
            where = f"client_id = ? AND ({where})"
            params.insert(0, owners.pop())
        return list(self._raw(self._sql.sql(self._lsql["edge"] + where), params).fetchall())

    def _rows_from(self, owner: int, start: int) -> list[Sequence[Any]]:
        if owner == GLOBAL_OWNER:
            return list(self._raw(self._lsql["rows"], (start,)).fetchall())
        return list(self._raw(self._lsql["client_rows"], (start, owner)).fetchall())

    def _scan_window(self, lim: ScopedLimit, amounts: bool, start: int) -> int:
        """One window summed from the payment rows (what the running totals must equal)."""
        return _tally(lim, amounts, self._rows_from(lim.owner, max(start, 0)))

    # --- the running totals ---------------------------------------------------------------

    def _count_limits(self, new: NewPayment) -> None:
        """Add a new payment to the totals of every limit it counts against."""
        subject = Subject(new.client_id, new.labels, new.host, new.payee)
        applying = [lim for lim in self.limits_for(new.client_id) if lim.applies(subject)]
        if not applying:
            return
        lifetimes = self._known_lifetimes([lim.amount_scope for lim in applying])
        rows: list[int] = []
        keys = buckets.bucket_keys(new.created_at_ms)
        for lim in applying:
            lifetime = lifetimes.get(lim.amount_scope, 0)
            if lifetime == buckets.SATURATED:
                pass
            elif lifetime + new.amount > buckets.INT64_MAX:
                saturate = (lim.amount_scope, buckets.LIFETIME, 0, buckets.SATURATED)
                self._write(self._lsql["set"], saturate)
            else:
                for span, start in keys:
                    rows += (lim.amount_scope, span, start, new.amount)
            for span, start in keys:
                rows += (lim.count_scope, span, start, 1)
        self._write(self._sql.add_buckets(len(rows) // 4), rows)

    def _known_lifetimes(self, scopes: list[int]) -> dict[int, int]:
        """Lifetime totals of these scopes: as ``usage`` just read them, else read now."""
        known, self._limit_lifetimes = self._limit_lifetimes, None
        if known is not None and all(s in known for s in scopes):
            return known
        sql = self._lsql["lifetimes"] + _in(self._sql.placeholder, len(scopes))
        return {int(s): int(a) for s, a in self._raw(sql, scopes).fetchall()}

    def _uncount_limits(self, row: Sequence[Any]) -> None:
        """Take a released payment (an ``EDGE_COLUMNS`` row) off its limits' amount totals."""
        subject = subject_of(row)
        applying = [lim for lim in self.limits_for(subject.client_id) if lim.applies(subject)]
        if not applying:
            return
        lifetimes = self._known_lifetimes([lim.amount_scope for lim in applying])
        for lim in applying:
            if lifetimes.get(lim.amount_scope, 0) == buckets.SATURATED:
                continue
            for span, start in buckets.bucket_keys(int(row[6])):
                self._write(self._lsql["sub"], (int(row[1]), lim.amount_scope, span, start))

    # --- the operator's changes ------------------------------------------------------------

    def set_limit(
        self,
        owner: int,
        owner_name: str,
        selector: str,
        values: Mapping[str, int | None],
        at_ms: int | None = None,
    ) -> ScopedLimit | None:
        """Replace one limit's values (all None: remove it), recorded as an admin event.

        A new limit's running totals are filled from the payments it selects;
        a removed one's are deleted.
        """
        self._serialise()
        self._limit_rows.clear()
        T = tables.ScopedLimit
        found = self._session.execute(
            select(T.id).where(T.owner == owner, T.selector == selector)
        ).scalar_one_or_none()
        fields = {name: values.get(name) for name in LIMIT_FIELDS}
        result: ScopedLimit | None = None
        if all(v is None for v in fields.values()):
            if found is not None:
                self._session.execute(delete(T).where(T.id == found))
                self._drop_totals(found)
        elif found is not None:
            self._session.execute(update(T).where(T.id == found).values(**fields))
            result = limit_row((found, owner, selector, *fields.values()))
        else:
            made = T(owner=owner, selector=selector, **fields)
            self._session.add(made)
            self._session.flush()
            result = limit_row((made.id, owner, selector, *fields.values()))
            self._drop_totals(result.id)
            self._fill_totals(result)
        self._admin_event(audit.LIMIT_SET, owner_name, {"selector": selector, **fields}, at_ms)
        return result

    def _drop_totals(self, ident: int) -> None:
        B = tables.SpendBucket
        self._session.execute(delete(B).where(B.scope.in_((-2 * ident, -2 * ident - 1))))

    def _fill_totals(self, lim: ScopedLimit) -> None:
        """The running totals of a new limit, from every payment it selects."""
        totals: dict[tuple[int, int, int], int] = defaultdict(int)
        for row in self._rows_from(lim.owner, 0):
            if not lim.applies(subject_of(row)):
                continue
            for span, start in buckets.bucket_keys(int(row[6])):
                totals[(lim.count_scope, span, start)] += 1
                if row[2] is None:
                    totals[(lim.amount_scope, span, start)] += int(row[1])
        lifetime = (lim.amount_scope, buckets.LIFETIME, 0)
        if totals.get(lifetime, 0) > buckets.INT64_MAX:
            totals = {k: v for k, v in totals.items() if k[0] != lim.amount_scope}
            totals[lifetime] = buckets.SATURATED
        rows = [
            {"scope": s, "span": p, "start_ms": t, "amount": a} for (s, p, t), a in totals.items()
        ]
        if rows:
            self._session.execute(insert(tables.SpendBucket), rows)


def _tally(lim: ScopedLimit, amounts: bool, rows: Iterable[Sequence[Any]]) -> int:
    """The amount (unreleased) or the count of the rows ``lim`` selects."""
    total = 0
    for row in rows:
        if not lim.applies(subject_of(row)):
            continue
        if not amounts:
            total += 1
        elif row[2] is None:
            total += int(row[1])
    return total
