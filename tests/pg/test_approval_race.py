"""Approvals on PostgreSQL with several replicas: one decision wins, one signature, exact budgets.

Each replica is a WalletService and an ApprovalDesk on its own engine (its own
connection pool), as separate walletd processes look to PostgreSQL; one
counting signer is shared, so every signature made anywhere is counted. The
last test runs two real `walletd serve` replicas and the real client.
"""

from __future__ import annotations

import time

import pytest

from tests.pg.conftest import PgWallet, in_threads
from tests.pg.test_replica_race import Replica, _admin
from tests.plugins.daemon import WalletHome, demand_header
from tests.service.conftest import CountingSigner
from walletd.client import WalletClient
from walletd.domain.approval import Approval
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
    for round_ in range(3):  # an approved hold stays reserved: 3 x 3000 fit the daily 10000
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


def test_retries_racing_the_approval_itself_still_get_one_signature(
    replicas: tuple[Replicas, list[Caller]],
) -> None:
    group, (alice, _) = replicas
    with pytest.raises(ApprovalRequiredError) as held:
        group.pay(0, _cmd("during"))
    before = group.signer.calls

    def work(i: int) -> object:
        if i == 0:  # the approver, a moment into the retries
            time.sleep(0.3)
            return group.desks[1].decide(alice, held.value.approval_id, True, "")
        seen: list[object] = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:  # retry until paid, as a waiting caller would
            try:
                seen.append(group.pay(i, _cmd("during")))
                break
            except ApprovalRequiredError as err:
                seen.append(err)
        return seen

    results = in_threads(9, work)
    receipts = [r for got in results[1:] for r in got if isinstance(r, PayReceipt)]  # type: ignore[attr-defined]
    assert len(receipts) == 8, results
    assert len({r.header_value for r in receipts}) == 1
    assert sum(not r.reused for r in receipts) == 1
    assert group.signer.calls == before + 1


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


@pytest.mark.slow
def test_real_replicas_one_decision_and_one_signature(wallet_home: WalletHome, pg_url: str) -> None:
    """Two `walletd serve` on one PostgreSQL: approvers race on both; retries hit both."""
    home = wallet_home
    _admin(home, pg_url, "db", "upgrade")
    tokens = {}
    for name, scopes in (("svc", "pay,read"), ("alice", "approve"), ("bob", "approve")):
        out = _admin(home, pg_url, "client", "add", name, "--scopes", scopes)
        tokens[name] = home.root / f"{name}.token"
        tokens[name].write_text(out.splitlines()[-1] + "\n")
        tokens[name].chmod(0o600)
    _admin(home, pg_url, "budget", "set", "svc", "--daily", "1", "--approve-above", "0.002")
    sockets = [home.root / f"a{i}.sock" for i in range(2)]
    replicas = [Replica(home, s, pg_url) for s in sockets]
    try:
        for r in replicas:
            r.ready()
        svc = [WalletClient(socket=s, token_file=tokens["svc"], timeout=30) for s in sockets]
        approvers = [
            WalletClient(socket=sockets[0], token_file=tokens["alice"], timeout=30),
            WalletClient(socket=sockets[1], token_file=tokens["bob"], timeout=30),
        ]
        demand = demand_header(str(HELD))
        with pytest.raises(ApprovalRequiredError) as held:
            svc[0].pay("real", "POST", URL, payment_required=demand)
        approval_id = held.value.approval_id

        def decide(i: int) -> Approval:  # alice approves on one replica, bob denies on the other
            return approvers[i].approve(approval_id) if i == 0 else approvers[i].deny(approval_id)

        def retry(i: int) -> PayReceipt:
            return svc[i % 2].pay("real", "POST", URL, payment_required=demand)

        outcomes = in_threads(2, decide)
        won = [o for o in outcomes if isinstance(o, Approval)]
        assert len(won) == 1 and sum(isinstance(o, ApprovalClosedError) for o in outcomes) == 1
        results = in_threads(8, retry)
        if won[0].status == "approved":
            paid = [r for r in results if isinstance(r, PayReceipt)]
            assert len(paid) == 8 and sum(not r.reused for r in paid) == 1
            assert len({r.header_value for r in paid}) == 1
        else:
            assert all(isinstance(r, ApprovalDeniedError) for r in results), results
        for c in [*svc, *approvers]:
            c.close()
    finally:
        codes = [r.stop() for r in replicas]
    assert codes == [0, 0], replicas[0].logs()
