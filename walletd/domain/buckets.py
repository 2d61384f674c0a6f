"""Running spend totals: which buckets a payment adds to, and which a window sums.

A budget window counts the unreleased payments created at or after its start
(``walletd.domain.budget.window_starts``). Summing the payment rows costs time
in proportion to the window, and the lifetime window grows for ever, so the
ledger also keeps running totals, per scope (one client, or every client
together): the unreleased amount per second, per minute, per hour, per UTC day
and for ever (the lifetime bucket). They change in the same transaction as the
payment row (``+amount``) and its release (``-amount``), so they are exactly
the sums of the rows.

A window starting at ``s`` (``s > 0``) is then, exactly::

    rows created in    [s,             ceil(s, 1 s))     at most a second of rows
    second buckets in  [ceil(s, 1 s),  ceil(s, 1 min))   at most 59 rows
    minute buckets in  [ceil(s, 1 min), ceil(s, 1 h))    at most 59 rows
    hour buckets in    [ceil(s, 1 h),  ceil(s, 1 day))   at most 23 rows
    day buckets from   ceil(s, 1 day) on                 (a month: at most 31)

Each span divides the next, so every range is a union of whole buckets of its
span and together they tile ``[s, ∞)``: nothing is counted twice or missed,
whatever the amounts, times and releases. A window with ``s <= 0`` (the total)
is the lifetime bucket, because payments are created at Unix epoch
milliseconds, never before 0. The property test in
tests/domain/test_buckets.py checks this against a plain sum, and
tests/db/test_spend_buckets.py checks the ledger's totals against a scan.
"""

from __future__ import annotations

from dataclasses import dataclass

SECOND, MINUTE, HOUR, DAY = 1_000, 60_000, 3_600_000, 86_400_000
SPANS: tuple[int, ...] = (SECOND, MINUTE, HOUR, DAY)
"""The bucket spans in milliseconds, each dividing the next."""

LIFETIME = 0
"""The span value of the lifetime bucket (its start is 0)."""

FINE_SPANS: tuple[int, ...] = (SECOND, MINUTE, HOUR)
"""Spans only the rolling windows (hourly, daily) read; old ones may be pruned."""

INT64_MAX = 2**63 - 1
"""The largest running total a BIGINT holds; a scope that would pass it is saturated."""

SATURATED = -1
"""A lifetime bucket holding this has given up on running totals: its scope is summed from rows."""

NO_END = INT64_MAX
"""The exclusive end of the last range (no payment is created this late)."""


def floor_to(value: int, span: int) -> int:
    """The start of the ``span`` bucket holding ``value``."""
    return value - value % span


def ceil_to(value: int, span: int) -> int:
    """The smallest multiple of ``span`` at or after ``value``."""
    return -(-value // span) * span


def bucket_keys(created_ms: int) -> tuple[tuple[int, int], ...]:
    """The (span, start) of every bucket a payment created at ``created_ms`` counts in."""
    return (*((span, floor_to(created_ms, span)) for span in SPANS), (LIFETIME, 0))


@dataclass(frozen=True)
class WindowPlan:
    """How to sum one window exactly: a slice of rows plus whole buckets.

    ``edge`` is the half-open range of ``created_at_ms`` read from the payment
    rows; ``ranges`` has one (span, first start, end) per span in ``SPANS``
    order, then the lifetime bucket's, each half-open over bucket starts (an
    empty range has first == end).
    """

    edge: tuple[int, int]
    ranges: tuple[tuple[int, int, int], ...]


def plan(start_ms: int) -> WindowPlan:
    """The exact decomposition of the window counting payments created at or after ``start_ms``."""
    if start_ms <= 0:
        empty = tuple((span, 0, 0) for span in SPANS)
        return WindowPlan((0, 0), (*empty, (LIFETIME, 0, 1)))
    bounds = [start_ms, *(ceil_to(start_ms, span) for span in SPANS), NO_END]
    ranges = tuple((span, bounds[i + 1], bounds[i + 2]) for i, span in enumerate(SPANS))
    return WindowPlan((bounds[0], bounds[1]), (*ranges, (LIFETIME, 0, 0)))


def needs_rows(start_ms: int, horizon_ms: int) -> bool:
    """Whether the window starting at ``start_ms`` may read pruned buckets (sum its rows instead).

    Buckets of ``FINE_SPANS`` that start before ``horizon_ms`` may have been
    deleted. A window reads fine buckets starting in
    ``[ceil(start, 1 s), ceil(start, 1 day))``: none when it starts on a UTC
    day (a calendar month), which reads day buckets only, never pruned.
    """
    if start_ms <= 0:
        return False
    first = ceil_to(start_ms, SECOND)
    return first < ceil_to(start_ms, DAY) and first < horizon_ms
