"""Running-total buckets sum a window exactly as a plain sum over the rows does."""

from __future__ import annotations

from collections import Counter

from hypothesis import given, settings, strategies as st

from walletd.domain import buckets
from walletd.domain.budget import SPAN_WINDOWS, window_starts

DAY = buckets.DAY
times = st.integers(min_value=0, max_value=400 * DAY)
"""Payments are created at epoch milliseconds (never before 0)."""
rows = st.lists(st.tuples(times, st.integers(min_value=1, max_value=10**15)), max_size=60)


def _buckets(payments: list[tuple[int, int]]) -> Counter[tuple[int, int]]:
    totals: Counter[tuple[int, int]] = Counter()
    for created, amount in payments:
        for key in buckets.bucket_keys(created):
            totals[key] += amount
    return totals


def _window(payments: list[tuple[int, int]], start: int) -> int:
    """What the bucket plan reads: the edge rows plus whole buckets."""
    plan = buckets.plan(start)
    totals = _buckets(payments)
    lo, hi = plan.edge
    edge = sum(amount for created, amount in payments if lo <= created < hi)
    whole = sum(
        total
        for (span, first), total in totals.items()
        for s, begin, end in plan.ranges
        if s == span and begin <= first < end
    )
    return edge + whole


@settings(max_examples=400)
@given(rows, st.integers(min_value=-2 * DAY, max_value=401 * DAY))
def test_a_window_from_buckets_equals_the_plain_sum(payments, start) -> None:
    expected = sum(amount for created, amount in payments if created >= start)
    assert _window(payments, start) == expected


@settings(max_examples=200)
@given(rows, times)
def test_every_budget_window_equals_the_plain_sum(payments, now) -> None:
    # Payments cluster around now, where the rolling windows have their edges.
    near = [(max(0, now - created % (2 * DAY)), amount) for created, amount in payments]
    for window, start in window_starts(now).items():
        assert window in SPAN_WINDOWS
        expected = sum(amount for created, amount in near if created >= start)
        assert _window(near, start) == expected, window


@given(st.integers(min_value=1, max_value=10**15))
def test_the_plan_tiles_from_the_start_on_without_overlap(start) -> None:
    plan = buckets.plan(start)
    lo, hi = plan.edge
    assert lo == start and hi - lo < buckets.SECOND
    edge_end = hi
    for span, first, end in plan.ranges[:-1]:
        assert first == edge_end and first % span == 0 and first <= end
        assert end == buckets.NO_END or end % span == 0
        edge_end = end
    assert edge_end == buckets.NO_END
    assert plan.ranges[-1] == (buckets.LIFETIME, 0, 0)  # the lifetime bucket is not read


def test_a_window_from_zero_or_before_is_the_lifetime_bucket() -> None:
    for start in (0, -1, -5 * DAY):
        plan = buckets.plan(start)
        assert plan.edge[0] == plan.edge[1]
        assert plan.ranges[-1] == (buckets.LIFETIME, 0, 1)
        assert all(first == end for _, first, end in plan.ranges[:-1])


def test_pruned_buckets_make_a_window_read_rows() -> None:
    start = 10 * DAY + 5 * buckets.HOUR + 1  # a rolling window: it reads fine buckets
    assert not buckets.needs_rows(start, 0)
    assert buckets.needs_rows(start, start + buckets.SECOND)
    assert not buckets.needs_rows(start, start - 1)
    assert not buckets.needs_rows(0, 10 * DAY)  # the lifetime bucket is never pruned


def test_a_window_from_a_utc_midnight_never_reads_rows() -> None:
    """A calendar month reads day buckets only, which are never pruned, however old."""
    assert not buckets.needs_rows(10 * DAY, 10 * DAY + 1)
    assert not buckets.needs_rows(10 * DAY, 400 * DAY)


@given(times, times)
def test_rows_are_needed_exactly_when_a_fine_bucket_read_may_be_pruned(
    start: int, horizon: int
) -> None:
    plan = buckets.plan(start)
    reads_pruned = any(
        first < end and first < horizon
        for span, first, end in plan.ranges
        if span in buckets.FINE_SPANS
    )
    assert buckets.needs_rows(start, horizon) == reads_pruned
