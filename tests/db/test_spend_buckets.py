"""The ledger's running totals always equal a scan of the payment rows (both backends).

Random payments (several clients, times around the window edges, amounts up to
past BIGINT), releases and prunes go through the ledger's own write methods;
after each step every window of every scope, read from the running totals,
must equal the same window summed from the rows. At the end ``audit verify``'s
own recomputation of the totals (``walletd.domain.audit.BucketCheck``) must
find every kept bucket exact.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from walletd.db import migrate, queries as read_side
from walletd.db.engine import make_engines
from walletd.db.ledger import NewPayment, Store
from walletd.domain import buckets
from walletd.domain.budget import window_starts
from walletd.domain.money import MAX_AMOUNT
from walletd.domain.payment import PaymentStatus
from walletd.service import admin

DAY = buckets.DAY
NOW = 1_764_000_000_000  # late November 2025, in Unix ms
CLIENTS = ("a", "b", "c")
_ids = itertools.count()

amounts = st.one_of(
    st.integers(min_value=1, max_value=10_000),
    st.integers(min_value=1, max_value=10**15),
    st.integers(min_value=1, max_value=10_000),
    st.just(MAX_AMOUNT),  # two of these pass BIGINT: that scope falls back to the rows
)
EDGES = [-40 * DAY, -DAY, -3_600_000, -1_000, 0]
offsets = st.one_of(
    st.integers(min_value=-40 * DAY, max_value=DAY),
    st.tuples(st.sampled_from(EDGES), st.integers(min_value=-1_500, max_value=1_500)).map(sum),
)
"""Creation times relative to NOW: anywhere, or right at a window's or a bucket's edge."""
steps = st.lists(
    st.one_of(
        st.tuples(st.just("pay"), st.sampled_from(CLIENTS), offsets, amounts),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("prune"), st.integers(min_value=2 * DAY, max_value=30 * DAY)),
    ),
    min_size=1,
    max_size=25,
)
query_offsets = st.lists(st.integers(min_value=-2 * DAY, max_value=2 * DAY), min_size=1, max_size=4)


@pytest.fixture
def store(ledger_url: str) -> Iterator[Store]:
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    made = Store(engines)
    for name in CLIENTS:
        admin.add_client(made, name, frozenset({"pay"}))
    yield made
    engines.dispose()


def _payment(client_id: int, created: int, amount: int) -> NewPayment:
    n = next(_ids)
    return NewPayment(
        id=f"pay_{n:024x}", client_id=client_id, idempotency_key=f"k{n}", fingerprint="f" * 64,
        amount=amount, payee="0x" + "1" * 40, network="eip155:8453", asset="0x" + "2" * 40,
        payer="0x" + "3" * 40, method="POST", url="http://x/", host="x", nonce=f"0x{n:064x}",
        valid_after=0, valid_before=1, header_name="PAYMENT-SIGNATURE", header_value="h",
        labels={}, created_at_ms=created,
    )  # fmt: skip


def _check(store: Store, client_ids: list[int], at: list[int]) -> None:
    with store.read() as tx:
        for scope in [None, *client_ids]:
            for now in at:
                scanned = tx._scan_spent(scope, window_starts(now))
                assert tx.spent(scope, now) == scanned, (scope, now)
                assert tx.spent(scope, now, ("daily",)) == {"daily": scanned["daily"]}
                if scope is not None:  # one client's and everyone's, in one statement
                    pair = tx.spent_pair(scope, now, ("daily", "total"), ("hourly", "daily"))
                    assert pair == (tx.spent(scope, now, ("daily", "total")),
                                    tx.spent(None, now, ("hourly", "daily")))  # fmt: skip


@pytest.mark.slow
@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(steps=steps, queries=query_offsets)
def test_running_totals_equal_the_scan_after_every_step(store: Store, steps, queries) -> None:
    with store.engines.write.begin() as conn:  # each example starts from an empty ledger
        for table in ("decisions", "payment_events", "payments", "spend_buckets"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    with store.read() as tx:
        client_ids = [tx.client_by_name(name).id for name in CLIENTS]
    signed: list[str] = []
    for step in steps:
        with store.write() as tx:
            if step[0] == "pay":
                _, name, offset, amount = step
                new = _payment(client_ids[CLIENTS.index(name)], max(0, NOW + offset), amount)
                if amount % 2:  # as Pay does: the lifetimes read here are reused by add_payment
                    tx.spent_pair(new.client_id, NOW, ("total",), ("total",))
                tx.add_payment(new, PaymentStatus.SIGNED, "pay")
                signed.append(new.id)
            elif step[0] == "release" and signed:
                payment_id = signed.pop(step[1] % len(signed))
                assert tx.move(
                    payment_id, PaymentStatus.SIGNED, PaymentStatus.EXPIRED, NOW, "t", {}
                )
            elif step[0] == "prune":
                tx.prune_spend_buckets(NOW - step[1])
        at = [NOW + q for q in queries]
        if step[0] == "pay":  # put the rolling windows' first millisecond around this payment
            created = max(0, NOW + step[2])
            at += [created + span - 1 + j for span in (3_600_000, DAY) for j in (-1, 0, 1, 700)]
        _check(store, client_ids, at)
    url = store.engines.write.url.render_as_string(hide_password=False)
    with read_side.read_only(url) as conn:
        result = read_side.verify_chain(conn)
    assert result.ok, result.breaks


def test_lifetimes_read_by_spent_pair_still_saturate_a_scope_past_bigint(store: Store) -> None:
    with store.read() as tx:
        client_id = tx.client_by_name("a").id
    for n in range(3):  # the second MAX_AMOUNT passes BIGINT: the scope is summed from rows
        with store.write() as tx:
            tx.spent_pair(client_id, NOW, ("total",), ("total",))
            tx.add_payment(_payment(client_id, NOW + n, MAX_AMOUNT), PaymentStatus.SIGNED, "pay")
    _check(store, [client_id], [NOW + 10])
    with store.read() as tx:
        assert tx.spent(client_id, NOW + 10)["total"] == 3 * MAX_AMOUNT
