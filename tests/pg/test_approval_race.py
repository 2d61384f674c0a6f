"""Approvals on PostgreSQL with several replicas: one decision wins, one signature, exact budgets.

Each replica is a WalletService and an ApprovalDesk on its own engine (its own
connection pool), as separate walletd processes look to PostgreSQL; one
counting signer is shared, so every signature made anywhere is counted.
"""

from __future__ import annotations

import pytest

from tests.pg.conftest import PgWallet, in_threads
from tests.plugins.daemon import demand_header
from tests.service.conftest import CountingSigner
from walletd.domain.payment import Caller, PayCommand, PayReceipt
from walletd.domain.policy import Limits
from walletd.errors import (
    ApprovalClosedError,
    ApprovalDeniedError,
    ApprovalRequiredError,
    BudgetExceededError,
)
from walletd.service import admin
from walletd.service.approvals import ApprovalBell, ApprovalDesk
from walletd.service.wallet import WalletService

pytestmark = [pytest.mark.postgres]

URL = "https://api.test/v1/chat/completions"
REPLICAS = 3
HELD, SMALL = 3000, 1000
"""Above the 2000 threshold (held), and under it (signed at once)."""


def _cmd(key: str, amount: int = HELD) -> PayCommand:
    return PayCommand(key, "POST", URL, demand_header(str(amount)))


class Replicas:
    def __init__(self, wallet: PgWallet) -> None:
        self.signer = CountingSigner()
        self.services: list[tuple[WalletService, Caller]] = []
        self.desks: list[ApprovalDesk] = []
        for _ in range(REPLICAS):
            store, bell = wallet.store(), ApprovalBell()
            service = WalletService(store, self.signer, Limits(), bell=bell)
            self.services.append((service, service.authenticate(wallet.token)))
            self.desks.append(ApprovalDesk(store, bell))

    def pay(self, i: int, cmd: PayCommand) -> PayReceipt:
        service, caller = self.services[i % REPLICAS]
        return service.pay(caller, cmd)


@pytest.fixture
def replicas(pg_wallet: PgWallet) -> tuple[Replicas, list[Caller]]:
    store = pg_wallet.store()
    change = admin.BudgetChange(daily=10_000, approve_above=2000)
    admin.set_budget(store, "svc", change)
    approvers = []
    for name in ("alice", "bob"):
        token = admin.add_client(store, name, frozenset({"approve"}))
        service = WalletService(store, CountingSigner(), Limits())
        approvers.append(service.authenticate(token))
    return Replicas(pg_wallet), approvers


def test_two_approvers_on_two_replicas_exactly_one_decision_wins(
    replicas: tuple[Replicas, list[Caller]],
) -> None:
    group, (alice, bob) = replicas
    for round_ in range(4):
        with pytest.raises(ApprovalRequiredError) as held:
            group.pay(0, _cmd(f"race-{round_}"))
        approval_id = held.value.approval_id

        def decide(i: int, approval_id: str = approval_id) -> object:
            who, approve = (alice, True) if i == 0 else (bob, False)
            return group.desks[1 + i].decide(who, approval_id, approve, f"by {who.name}")

        outcomes = in_threads(2, decide)
        closed = [o for o in outcomes if isinstance(o, ApprovalClosedError)]
        won = [o for o in outcomes if not isinstance(o, Exception)]
        assert (len(won), len(closed)) == (1, 1), outcomes
        (final,) = group.desks[0].list(None, 1)
        assert final.approval_id == approval_id
        assert final.status == won[0].status  # type: ignore[attr-defined]
        group.desks[0].list("pending", 10)  # the watchers' query still answers


def test_concurrent_retries_on_every_replica_get_one_signature(
    replicas: tuple[Replicas, list[Caller]],
) -> None:
    group, (alice, _) = replicas
    with pytest.raises(ApprovalRequiredError) as held:
        group.pay(0, _cmd("retry"))
    group.desks[2].decide(alice, held.value.approval_id, True, "")
    before = group.signer.calls
    receipts = in_threads(12, lambda i: group.pay(i, _cmd("retry")))
    paid = [r for r in receipts if isinstance(r, PayReceipt)]
    assert len(paid) == len(receipts), receipts
    assert len({r.header_value for r in paid}) == 1
    assert sum(not r.reused for r in paid) == 1
    assert group.signer.calls == before + 1  # exactly one authorization, ever


def test_a_pending_approval_is_reserved_exactly_under_concurrent_pays(
    replicas: tuple[Replicas, list[Caller]],
) -> None:
    group, (_, bob) = replicas
    with pytest.raises(ApprovalRequiredError) as held:
        group.pay(0, _cmd("reserve"))  # 3000 of the 10000 a day held

    def small(i: int) -> object:
        return group.pay(i, _cmd(f"small-{i}", SMALL))

    first = in_threads(12, small)
    assert sum(isinstance(r, PayReceipt) for r in first) == 7  # 10000 - 3000, never more
    assert all(isinstance(r, PayReceipt | BudgetExceededError) for r in first), first
    group.desks[1].decide(bob, held.value.approval_id, False, "no")
    with pytest.raises(ApprovalDeniedError):
        group.pay(2, _cmd("reserve"))
    second = in_threads(6, lambda i: group.pay(i, _cmd(f"after-{i}", SMALL)))
    assert sum(isinstance(r, PayReceipt) for r in second) == 3  # the reservation came back
