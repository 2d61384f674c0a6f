"""Group commit: Pays that arrive together share one write transaction and one durable commit.

A durable commit (an fsync on SQLite with ``synchronous=FULL``, a WAL flush on
PostgreSQL) costs far more than the work of one Pay. So instead of one
transaction per Pay, callers queue their job and the first in the queue (the
leader) runs every job queued at that moment, in order, inside one write
transaction (``Store.write()``: SQLite ``BEGIN IMMEDIATE``, PostgreSQL's
wallet_state row lock, so other daemons on the same ledger still queue
behind it), commits once, and only then hands each caller its result. The
next caller in the queue leads the next batch. No thread of its own: with
one caller the leader is that caller and a batch holds one job, so Pay is
then exactly what it was.

What each job sees is what it would see alone, run in that order: its own
reads come after the writes of the jobs before it in the same transaction.
Nothing a job returns leaves the daemon before the commit; if the commit
fails, every job of the batch gets the StorageError and nothing was recorded
(signatures made in a rolled-back batch were never handed out).

A job's WalletdError is its own outcome (a refusal) if the job wrote
nothing, by any path (hot statements, SQLAlchemy statements, ORM changes not
yet flushed: ``LedgerTx.writes``): the batch goes on. A job that fails after writing, or with any
other exception (a bug, a driver error), spoils the transaction, so the
batch is rolled back and run again without it; it gets its exception. A
StorageError fails the whole batch: the ledger itself is in trouble.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from itertools import islice
from typing import Generic, TypeVar

from walletd.db.ledger import LedgerTx, Store
from walletd.errors import StorageError, WalletdError

T = TypeVar("T")

MAX_BATCH = 64
"""Jobs per transaction at most, so one batch never holds the writer lock for long."""


class _Job(Generic[T]):
    __slots__ = ("done", "error", "fn", "result", "wake")

    def __init__(self, fn: Callable[[LedgerTx], T]) -> None:
        self.fn = fn
        self.wake = threading.Event()
        """Set when the job is finished, or when it is first in the queue and must lead."""
        self.done = False
        self.result: T | None = None
        self.error: BaseException | None = None

    def outcome(self) -> T:
        if self.error is not None:
            raise self.error
        return self.result  # type: ignore[return-value]


class _Spoiled(Exception):
    """A job failed after writing: the batch must be rolled back and run without it."""

    def __init__(self, job: _Job[object], error: BaseException) -> None:
        super().__init__(str(error))
        self.job = job
        self.error = error


class GroupCommit:
    """Runs write jobs in shared transactions, one commit per batch (see the module docstring)."""

    def __init__(self, store: Store, max_batch: int = MAX_BATCH) -> None:
        self._store = store
        self._max = max_batch
        self._lock = threading.Lock()
        self._queue: deque[_Job[object]] = deque()

    def run(self, fn: Callable[[LedgerTx], T]) -> T:
        """Run ``fn`` in a write transaction; return (or raise) its outcome once committed."""
        job: _Job[T] = _Job(fn)
        with self._lock:
            self._queue.append(job)  # type: ignore[arg-type]
            lead = len(self._queue) == 1
        if not lead:
            job.wake.wait()
            if job.done:
                return job.outcome()
        self._lead()
        return job.outcome()

    def _lead(self) -> None:
        """Run the batch at the head of the queue, then wake its jobs and the next leader."""
        with self._lock:
            batch = list(islice(self._queue, self._max))
        try:
            self._run(batch)
        finally:
            with self._lock:
                for job in batch:
                    self._queue.popleft()
                    job.done = True
                following = self._queue[0] if self._queue else None
            for job in batch:
                job.wake.set()
            if following is not None:
                following.wake.set()

    def _run(self, batch: list[_Job[object]]) -> None:
        pending = batch
        while pending:
            try:
                self._transaction(pending)
                return
            except _Spoiled as spoiled:
                spoiled.job.error = spoiled.error
                pending = [job for job in pending if job is not spoiled.job]
            except StorageError as exc:
                for job in pending:
                    job.error = exc
                return
            except BaseException as exc:  # a failed commit, or anything unforeseen
                for job in pending:
                    job.error = exc
                raise

    def _transaction(self, batch: list[_Job[object]]) -> None:
        for job in batch:
            job.result, job.error = None, None
        with self._store.write() as tx:
            for job in batch:
                before = tx.writes
                try:
                    job.result = job.fn(tx)
                except StorageError:
                    raise
                except WalletdError as exc:
                    if tx.writes != before:
                        raise _Spoiled(job, exc) from exc
                    job.error = exc
                except Exception as exc:  # a bug, or a driver error: the transaction is suspect
                    raise _Spoiled(job, exc) from exc
