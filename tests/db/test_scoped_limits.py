"""Scoped limits' running totals always equal a plain count of the payments (both backends).

Random payments (clients, labels, hosts, payees, times around the windows' and
buckets' edges), releases, prunes and limits created part-way go through the
ledger's own write methods and ``admin.set_budget``; after each step every
window of every limit, as a Pay reads it (``LimitsTx.usage``), must equal the
same window counted from a model of the payments. At the end ``audit verify``
recomputes every bucket, the scoped ones included, and replays the limits.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from walletd.db import migrate, queries as read_side
from walletd.db.engine import make_engines
from walletd.db.ledger import NewPayment, Store
from walletd.domain import buckets
from walletd.domain.budget import window_starts
from walletd.domain.limits import Subject, rate_starts
from walletd.domain.payment import PaymentStatus
from walletd.service import admin

DAY = buckets.DAY
NOW = 1_764_000_000_000
CLIENTS = ("a", "b")
PAYEES = ("0x" + "1" * 40, "0x" + "4" * 40)
HOSTS = ("h1.example", "h2.example")
TOOLS = ("sum", "draw")
LIMITS: tuple[tuple[str | None, admin.BudgetChange], ...] = (
    ("a", admin.BudgetChange(selector="label:tool=sum", hourly=10**9, daily=10**9, total=10**9,
                             rates={"minute": 5, "hour": 50})),
    (None, admin.BudgetChange(selector="host=h1.example", daily=10**9, monthly=10**9,
                              rates={"day": 9})),
    ("b", admin.BudgetChange(selector=f"payee={PAYEES[1]}", hourly=10**9)),
    ("a", admin.BudgetChange(rates={"minute": 3, "day": 7})),
    (None, admin.BudgetChange(rates={"hour": 4})),
)  # fmt: skip
_ids = itertools.count()

offsets = st.one_of(
    st.integers(min_value=-3 * DAY, max_value=DAY),
    st.tuples(
        st.sampled_from([-DAY, -3_600_000, -60_000, -1_000, 0]),
        st.integers(min_value=-1_500, max_value=1_500),
    ).map(sum),
)
steps = st.lists(
    st.one_of(
        st.tuples(
            st.just("pay"),
            st.sampled_from(CLIENTS),
            offsets,
            st.integers(1, 10_000),
            st.sampled_from(PAYEES),
            st.sampled_from(HOSTS),
            st.sampled_from(TOOLS),
        ),
        st.tuples(st.just("release"), st.integers(min_value=0, max_value=50)),
        st.tuples(st.just("prune"), st.integers(min_value=2 * DAY, max_value=5 * DAY)),
        st.tuples(st.just("limit"), st.integers(min_value=0, max_value=len(LIMITS) - 1)),
    ),
    min_size=1,
    max_size=25,
)


@dataclass
class Paid:
    id: str
    subject: Subject
    amount: int
    created: int
    released: bool = False


@pytest.fixture
def store(ledger_url: str) -> Iterator[Store]:
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    made = Store(engines)
    for name in CLIENTS:
        admin.add_client(made, name, frozenset({"pay"}))
    yield made
    engines.dispose()


def _payment(client_id: int, created: int, amount: int, payee: str, host: str, tool: str):
    n = next(_ids)
    return NewPayment(
        id=f"pay_{n:024x}", client_id=client_id, idempotency_key=f"k{n}", fingerprint="f" * 64,
        amount=amount, payee=payee, network="eip155:8453", asset="0x" + "2" * 40,
        payer="0x" + "3" * 40, method="POST", url=f"http://{host}/", host=host,
        nonce=f"0x{n:064x}", valid_after=0, valid_before=1, header_name="PAYMENT-SIGNATURE",
        header_value="h", labels={"tool": tool}, created_at_ms=created,
    )  # fmt: skip


def _check(store: Store, client_ids: list[int], paid: list[Paid], at: list[int]) -> None:
    with store.read() as tx:
        limits = {lim.id: lim for c in client_ids for lim in tx.limits_for(c)}
        for now in at:
            starts, rates = window_starts(now), rate_starts(now)
            for usage in tx.usage(list(limits.values()), now):
                lim = usage.limit
                mine = [p for p in paid if lim.applies(p.subject)]
                for window in lim.budget.summed_windows():
                    want = sum(
                        p.amount for p in mine if not p.released and p.created >= starts[window]
                    )
                    assert usage.spent[window] == want, (lim, window, now)
                for window in lim.rate_windows():
                    want = sum(1 for p in mine if p.created >= rates[window])
                    assert usage.counts[window] == want, (lim, window, now)


@pytest.mark.slow
@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(initial=st.sets(st.integers(min_value=0, max_value=len(LIMITS) - 1)), steps=steps)
def test_limit_totals_equal_the_payments_after_every_step(store: Store, initial, steps) -> None:
    with store.engines.write.begin() as conn:  # each example starts from an empty ledger
        for table in ("decisions", "payment_events", "payments", "spend_buckets"):
            conn.exec_driver_sql(f"DELETE FROM {table}")
    for owner, change in LIMITS:  # remove what an earlier example set (an admin event each)
        admin.set_budget(store, owner, admin.BudgetChange(selector=change.selector, clear=True))
    for index in sorted(initial):
        admin.set_budget(store, *LIMITS[index])
    with store.read() as tx:
        client_ids = [tx.client_by_name(name).id for name in CLIENTS]
    paid: list[Paid] = []
    for step in steps:
        at = [NOW]
        if step[0] == "limit":
            owner, change = LIMITS[step[1]]
            admin.set_budget(store, owner, change)
        with store.write() as tx:
            if step[0] == "pay":
                _, name, offset, amount, payee, host, tool = step
                client_id = client_ids[CLIENTS.index(name)]
                new = _payment(client_id, max(0, NOW + offset), amount, payee, host, tool)
                subject = Subject(client_id, new.labels, host, payee)
                if amount % 2:  # as Pay does: read the usage first (its lifetimes are reused)
                    tx.limit_usage(subject, NOW)
                tx.add_payment(new, PaymentStatus.SIGNED, "pay")
                paid.append(Paid(new.id, subject, amount, new.created_at_ms))
                at += [new.created_at_ms + span - 1 + j
                       for span in (60_000, 3_600_000, DAY) for j in (-1, 0, 1, 700)]  # fmt: skip
            elif step[0] == "release":
                open_ = [p for p in paid if not p.released]
                if open_:
                    chosen = open_[step[1] % len(open_)]
                    assert tx.move(
                        chosen.id, PaymentStatus.SIGNED, PaymentStatus.EXPIRED, NOW, "t", {}
                    )
                    chosen.released = True
            elif step[0] == "prune":
                tx.prune_spend_buckets(NOW - step[1])
        _check(store, client_ids, paid, at)
    url = store.engines.write.url.render_as_string(hide_password=False)
    with read_side.read_only(url) as conn:
        result = read_side.verify_chain(conn)
    assert result.ok, result.breaks


def test_a_new_limit_counts_what_was_already_spent(store: Store) -> None:
    with store.read() as tx:
        client_id = tx.client_by_name("a").id
    with store.write() as tx:
        for tool in ("sum", "sum", "draw"):
            tx.add_payment(
                _payment(client_id, NOW - 5_000, 1_000, PAYEES[0], HOSTS[0], tool),
                PaymentStatus.SIGNED, "pay",
            )  # fmt: skip
    admin.set_budget(store, "a", admin.BudgetChange(selector="label:tool=sum", daily=2_500,
                                                   rates={"minute": 2}))  # fmt: skip
    with store.read() as tx:
        (usage,) = tx.limit_usage(Subject(client_id, {"tool": "sum"}, HOSTS[0], PAYEES[0]), NOW)
    assert usage.spent == {"daily": 2_000}
    assert usage.counts == {"minute": 2}
