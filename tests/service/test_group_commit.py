"""Group commit: concurrent Pays share transactions and stay exactly what they are alone."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.db.ledger import LedgerTx
from walletd.db.tables import WalletState
from walletd.domain.payment import PayCommand
from walletd.errors import BudgetExceededError, PolicyDeniedError, RefusedError, StorageError
from walletd.service import admin
from walletd.service.group import GroupCommit

URL = "http://127.0.0.1:9/v1/chat/completions"


def _race(ledger: Ledger, threads: int, calls: int) -> Counter[str]:
    """``threads`` threads x ``calls`` Pays at once through one service; outcome counts."""
    outcomes: Counter[str] = Counter()
    lock, start = threading.Lock(), threading.Barrier(threads)

    def caller(n: int) -> None:
        start.wait()
        for i in range(calls):
            try:
                ledger.service.pay(
                    ledger.caller, PayCommand(f"t{n}-{i}", "POST", URL, demand_header())
                )
                outcome = "paid"
            except RefusedError as exc:
                outcome = exc.reason
            with lock:
                outcomes[outcome] += 1

    workers = [threading.Thread(target=caller, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    return outcomes


def test_concurrent_pays_share_commits_and_keep_the_budget_exact(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(daily=3000 * 25))
    batches: list[int] = []
    real = GroupCommit._transaction

    def counted(self: GroupCommit, batch: list[Any]) -> None:
        batches.append(len(batch))
        real(self, batch)

    monkeypatch.setattr(GroupCommit, "_transaction", counted)
    outcomes = _race(ledger, threads=8, calls=6)
    assert outcomes == {"paid": 25, BudgetExceededError.reason: 23}
    assert ledger.signer.calls == 25  # refusals sign nothing
    assert sum(batches) == 48  # each Pay (and its refusal record) in one transaction
    state = {w.window: w for w in ledger.service.get_budget(ledger.caller).windows}
    assert (state["daily"].spent, state["daily"].remaining) == (3000 * 25, 0)
    with ledger.store.read() as tx:
        paid = Counter(d["outcome"] for d in _decisions(tx))
    assert paid == {"paid": 25, "refused": 23}  # every decision logged, in one chain


def _decisions(tx: LedgerTx) -> list[dict[str, Any]]:
    from sqlalchemy import text

    rows = tx._session.execute(text("SELECT outcome FROM decisions ORDER BY id")).mappings()
    return [dict(row) for row in rows]


def _one_batch(group: GroupCommit, bad: Callable[[LedgerTx], object]) -> dict[str, object]:
    """Run a blocker, then ``bad`` and a good job queued behind it: one batch of three.

    The good job adds 3 to the prune-horizon bucket and returns 7. Each job's
    result (or exception) is returned by name: first, bad, ok.
    """
    go = threading.Event()
    results: dict[str, object] = {}

    def blocker(tx: LedgerTx) -> str:
        go.wait(5)
        return "first"

    def good(tx: LedgerTx) -> int:
        tx.prune_spend_buckets(3)
        return 7

    def run(name: str, job: Callable[[LedgerTx], object]) -> None:
        try:
            results[name] = group.run(job)
        except Exception as exc:
            results[name] = exc

    first = threading.Thread(target=run, args=("first", blocker))
    first.start()
    while not group._queue:
        pass
    others = [threading.Thread(target=run, args=(n, j)) for n, j in (("bad", bad), ("ok", good))]
    for thread in others:
        thread.start()
    while len(group._queue) < 3:
        pass
    go.set()
    for thread in [first, *others]:
        thread.join()
    return results


def _horizon(ledger: Ledger) -> int:
    with ledger.store.write() as tx:
        return int(tx._raw("SELECT amount FROM spend_buckets WHERE span = -1").fetchone()[0])


def test_a_job_failing_after_its_writes_is_run_out_of_the_batch(ledger: Ledger) -> None:
    def spoiler(tx: LedgerTx) -> str:
        tx.prune_spend_buckets(1)  # a write
        raise RuntimeError("after writing")

    results = _one_batch(GroupCommit(ledger.store), spoiler)
    assert results["first"] == "first" and results["ok"] == 7
    assert isinstance(results["bad"], RuntimeError)
    assert _horizon(ledger) == 3  # the good job's write was committed, the spoiler's not


def test_a_storage_error_fails_every_job_of_its_batch_and_records_nothing(ledger: Ledger) -> None:
    group = GroupCommit(ledger.store)

    def broken(tx: LedgerTx) -> None:
        raise StorageError("the disk is gone")

    with pytest.raises(StorageError):
        group.run(broken)
    assert group.run(lambda tx: tx.lock_state().frozen) is False  # the next batch is fine


def _refused_after_orm_write(*, flush: bool) -> Callable[[LedgerTx], object]:
    """A job that changes the wallet row through the ORM, then refuses (a WalletdError)."""

    def job(tx: LedgerTx) -> None:
        state = tx._session.get(WalletState, 1)
        assert state is not None
        state.daily = 1  # an ORM write the hot-statement count never sees
        if flush:
            tx._session.flush()
        raise PolicyDeniedError("refused after an ORM write")

    return job


@pytest.mark.parametrize("flush", [True, False], ids=["flushed", "pending"])
def test_a_refusal_after_an_orm_write_rolls_its_writes_back(ledger: Ledger, flush: bool) -> None:
    results = _one_batch(GroupCommit(ledger.store), _refused_after_orm_write(flush=flush))
    assert results["first"] == "first" and results["ok"] == 7
    assert isinstance(results["bad"], PolicyDeniedError)
    assert _horizon(ledger) == 3  # the good job's write was kept, the refused job's not
    with ledger.store.read() as tx:
        assert tx._raw("SELECT daily FROM wallet_state WHERE id = 1").fetchone()[0] is None


def test_a_refusal_that_wrote_nothing_keeps_its_batch(ledger: Ledger) -> None:
    group = GroupCommit(ledger.store)
    runs: list[str] = []

    def refused(tx: LedgerTx) -> None:
        runs.append("refused")
        tx.lock_state()  # reads, and on PostgreSQL locks, but writes nothing
        raise PolicyDeniedError("a plain refusal")

    with pytest.raises(PolicyDeniedError):
        group.run(refused)
    assert runs == ["refused"]  # not spoiled: the batch was not run again
