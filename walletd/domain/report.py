"""Spend reports as values: what was spent, by whom, where, and how each payment ended.

Pure (no I/O, standard library only) so the thin client can decode a report
received over gRPC into the same types the CLI renders. Amounts are integers
of USDC atomic units; sums are exact.

Status buckets (``BUCKETS``):

* ``settled``: the chain shows the transfer;
* ``pending``: money may still move: ``signed``, ``settlement_pending`` and
  ``rejected`` (a rejected authorization can still settle until validBefore);
* ``expired`` and ``cancelled``: provably never moved (budget released);
* ``disputed``: a server claimed a settlement the chain does not show;
* ``refused``: Pay decisions that signed nothing (from the decision log), and
  payments held for approval that an approver denied.

A payment held for approval counts as ``pending`` (money may still move once
approved); one whose approval expired, as ``expired``. The ``approval``
dimension groups by the approval status (``none`` for payments that needed none),
``approver`` by who approved or denied (empty when nobody did).

Amounts are what each payment counts: for an ``upto`` payment, the amount
charged once it settled (the authorized maximum before). ``authorized`` sums
what was signed for (the maximum of an upto payment, the amount of any other),
so authorized against charged shows what usage-priced payments released.

The on-chain check splits payments (not refusals) in two: ``confirmed`` is a
``settled`` payment whose settling transaction the reconciler checked on chain
(``settled_tx`` known); everything else is ``unconfirmed``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta

from walletd.domain.payment import PaymentStatus as S
from walletd.errors import InvalidRequestError

DIMENSIONS: tuple[str, ...] = (
    "client", "payee", "host", "model", "day", "status", "approval", "approver",
)  # fmt: skip
"""What ``--group-by`` accepts; ``model`` is the payment's ``model`` label."""

HOUR = "hour"
"""An extra time dimension the HTML report uses for short spans (not a CLI choice)."""

SETTLED, PENDING, EXPIRED, DISPUTED, CANCELLED, REFUSED = (
    "settled",
    "pending",
    "expired",
    "disputed",
    "cancelled",
    "refused",
)
BUCKETS: tuple[str, ...] = (SETTLED, PENDING, EXPIRED, DISPUTED, CANCELLED, REFUSED)
PAYMENT_BUCKETS: tuple[str, ...] = BUCKETS[:-1]
CONFIRMED, UNCONFIRMED = "confirmed", "unconfirmed"

STATUS_BUCKET: Mapping[str, str] = {
    S.SIGNED: PENDING,
    S.SETTLEMENT_PENDING: PENDING,
    S.REJECTED: PENDING,
    S.SETTLED: SETTLED,
    S.EXPIRED: EXPIRED,
    S.DISPUTED: DISPUTED,
    S.CANCELLED: CANCELLED,
    S.AWAITING_APPROVAL: PENDING,
    S.APPROVED: PENDING,
    S.DENIED: REFUSED,
}
"""Ledger status -> report bucket."""

COMMITTED_BUCKETS: tuple[str, ...] = (SETTLED, PENDING, DISPUTED)
"""Buckets whose money is spent or may still be (what charts of spend show)."""

DAY_MS = 86_400_000
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class Tally:
    """A count and an amount in atomic units."""

    count: int = 0
    amount: int = 0

    def __add__(self, other: Tally) -> Tally:
        return Tally(self.count + other.count, self.amount + other.amount)


ZERO = Tally()


def _zero_buckets() -> dict[str, Tally]:
    return dict.fromkeys(BUCKETS, ZERO)


@dataclass(frozen=True)
class ReportRow:
    """One group: its key (one value per group-by dimension) and its tallies."""

    key: tuple[str, ...]
    statuses: Mapping[str, Tally] = field(default_factory=_zero_buckets)
    """Every bucket of ``BUCKETS``, zero when empty."""
    confirmed: Tally = ZERO
    unconfirmed: Tally = ZERO
    authorized: int = 0
    """What the group's payments signed for (upto: the maximum), in atomic units."""

    @property
    def payments(self) -> Tally:
        """Every signed payment of the group, whatever its status (refusals excluded)."""
        total = ZERO
        for bucket in PAYMENT_BUCKETS:
            total += self.statuses.get(bucket, ZERO)
        return total

    @property
    def committed(self) -> Tally:
        """Payments whose money moved or may still move (settled, pending, disputed)."""
        total = ZERO
        for bucket in COMMITTED_BUCKETS:
            total += self.statuses.get(bucket, ZERO)
        return total

    def tally(self, bucket: str) -> Tally:
        """One bucket, or the chain check (``confirmed``/``unconfirmed``)."""
        if bucket == CONFIRMED:
            return self.confirmed
        if bucket == UNCONFIRMED:
            return self.unconfirmed
        return self.statuses.get(bucket, ZERO)

    def merged(self, other: ReportRow, key: tuple[str, ...] | None = None) -> ReportRow:
        """The sum of two rows, under ``key`` (this row's key by default)."""
        statuses = {b: self.tally(b) + other.tally(b) for b in BUCKETS}
        return ReportRow(
            self.key if key is None else key,
            statuses,
            self.confirmed + other.confirmed,
            self.unconfirmed + other.unconfirmed,
            self.authorized + other.authorized,
        )


def total_of(rows: Iterable[ReportRow]) -> ReportRow:
    """The exact sum of ``rows``, with an empty key."""
    total = ReportRow(())
    for row in rows:
        total = total.merged(row, ())
    return total


@dataclass(frozen=True)
class RefusalCount:
    """How often one reason (and rule or window) refused, and the amounts asked for."""

    reason: str
    rule: str
    count: int
    amount: int


@dataclass(frozen=True)
class ReportQuery:
    """Which payments and decisions a report covers, and how it groups them."""

    since_ms: int | None = None
    """Inclusive lower bound on the time of the payment (or refusal), Unix ms."""
    until_ms: int | None = None
    """Exclusive upper bound, Unix ms."""
    client: str | None = None
    group_by: tuple[str, ...] = ()


@dataclass(frozen=True)
class SpendReport:
    """A report: its query, rows in key order, exact totals, and the refusal reasons."""

    query: ReportQuery
    generated_at_ms: int
    rows: tuple[ReportRow, ...]
    totals: ReportRow
    refusals: tuple[RefusalCount, ...] = ()


@dataclass(frozen=True)
class Overview:
    """What the HTML page shows beside the report's own rows (same period and client)."""

    series: tuple[ReportRow, ...]
    """Keyed (client, hour label ``YYYY-MM-DDTHH:00Z``), in key order."""
    payees: tuple[ReportRow, ...]
    """Keyed (payee,), largest committed amount first."""
    models: tuple[ReportRow, ...]
    """Keyed (model,), largest committed amount first."""


def by_committed(rows: Iterable[ReportRow]) -> tuple[ReportRow, ...]:
    """Rows by committed amount (then count, then key), largest first."""
    return tuple(sorted(rows, key=lambda r: (-r.committed.amount, -r.committed.count, r.key)))


def check_group_by(
    dimensions: Iterable[str], *, allowed: Iterable[str] = DIMENSIONS
) -> tuple[str, ...]:
    """The dimensions in the order given, without repeats.

    Raises:
        InvalidRequestError: an unknown dimension.
    """
    ok = tuple(allowed)
    out: list[str] = []
    for dim in dimensions:
        if dim not in ok:
            raise InvalidRequestError(
                f"cannot group by {dim!r}: choose from {', '.join(ok)}", {"group_by": dim}
            )
        if dim not in out:
            out.append(dim)
    return tuple(out)


_RELATIVE = re.compile(r"(?P<n>[0-9]{1,9})(?P<unit>[smhdw])")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_UNIT_MS = {"s": 1000, "m": 60_000, "h": HOUR_MS, "d": DAY_MS, "w": 7 * DAY_MS}


MAX_TIME_MS = (datetime(9999, 12, 31, tzinfo=UTC) - _EPOCH) // timedelta(milliseconds=1)
"""The latest time a report bound may name (the last day ISO dates can spell)."""


def parse_time(text: str, now_ms: int) -> int:
    """Unix ms from ``24h``/``7d``/``30m``/``2w`` (ago), an ISO date, or an ISO date-time.

    A date means its UTC midnight; a date-time without an offset is UTC. The
    time must lie between 1970-01-01 (the ledger's epoch) and 9999-12-31.

    Raises:
        InvalidRequestError: anything else, or a time outside that range.
    """
    value = text.strip()
    rel = _RELATIVE.fullmatch(value)
    if rel:
        found = now_ms - int(rel.group("n")) * _UNIT_MS[rel.group("unit")]
    else:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise InvalidRequestError(
                f"not a time: {text!r} (use e.g. 24h, 7d, 30m, 2026-11-01 or 2026-11-01T12:00)"
            ) from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        found = (moment - _EPOCH) // timedelta(milliseconds=1)
    if not 0 <= found <= MAX_TIME_MS:
        raise InvalidRequestError(
            f"time out of range: {text!r} is before 1970-01-01 or after 9999-12-31"
        )
    return found


def day_label(day_index: int) -> str:
    """The UTC date of a day number (days since 1970-01-01), as YYYY-MM-DD."""
    return (date(1970, 1, 1) + timedelta(days=day_index)).isoformat()


def hour_label(hour_index: int) -> str:
    """The UTC hour of an hour number (hours since the epoch), as YYYY-MM-DDTHH:00Z."""
    moment = datetime.fromtimestamp(hour_index * 3600, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:00Z")


def iso_ms(ms: int) -> str:
    """A Unix ms time as an ISO-8601 UTC string (seconds precision)."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
