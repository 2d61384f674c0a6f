"""Outcome reports sent in the background: a paid request returns once its answer is read.

After a paid request, the client tells walletd what the server said
(ReportOutcome). The caller already holds its answer, so a report that only
records it (a success, or an error that is not a refusal of the payment) is
handed to a reporter and the request returns at once. The reporter sends the
reports one at a time, in the order they were handed over.

A report does not compete with the same payer's next Pay for the daemon's
write lock: the reporter holds it while a Pay of this payer is in flight, and
for up to ``QUIET_S`` after it was handed over unless a Pay has ended since.
So a program that makes paid requests back to back sends each report while it
waits on the paid API, not while it waits on walletd. Flushing or closing sends
at once.

A report that
fails because the daemon is unreachable or its ledger busy
(DaemonUnavailableError, StorageError) stays at the head of the queue and is
tried again with a growing delay, so none overtakes another. Any other error
drops that one report, with a warning.

Closing the payer (``close()``/``aclose()`` of the client or WalletdAuth)
waits up to ``FLUSH_TIMEOUT_S`` for the queue to empty. The blocking reporter
also flushes when the interpreter exits (for up to ``EXIT_FLUSH_S``). A report still queued when the
process (or, for asyncio, its event loop) ends is not lost money: the report
is a hint, and the daemon's reconciler settles every unreported payment from
the chain once its authorization expires (``walletd.service.reconcile``).

:class:`OutcomeReporter` is a thread for the blocking clients;
:class:`AsyncOutcomeReporter` a task in the running loop for the asyncio ones.
They share the queue and the retry rule (``_Queue``).
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import logging
import threading
import time
import weakref
from collections import deque
from collections.abc import Awaitable, Callable, Iterator
from typing import NamedTuple

from walletd.errors import DaemonUnavailableError, StorageError

log = logging.getLogger("walletd.client.outcomes")

FLUSH_TIMEOUT_S = 5.0
"""How long closing a payer waits for its queued reports."""
EXIT_FLUSH_S = 2.0
"""How long the interpreter's exit waits for a blocking reporter's queue."""
RETRY_FIRST_S = 0.05
RETRY_MAX_S = 5.0
IDLE_EXIT_S = 1.0
"""The blocking reporter's thread ends after this long with nothing to send (a new one
starts with the next report), so an unclosed payer is not kept alive by it."""
HOLD_POLL_S = 0.002
"""The asyncio reporter looks this often whether a held-back report may go."""
QUIET_S = 0.02
"""How long a report waits, after it was handed over, for the payer's next Pay to pass."""
MAX_QUEUED = 10_000
"""Reports kept at most; past it the oldest is dropped (the reconciler still settles it)."""


class Outcome(NamedTuple):
    """One ReportOutcome call's arguments."""

    payment_id: str
    http_status: int
    payment_response: str


def _transient(exc: Exception) -> bool:
    """A failure worth trying again: the daemon unreachable, or its ledger in trouble."""
    return isinstance(exc, DaemonUnavailableError | StorageError)


def _retry_delay(failures: int) -> float:
    return float(min(RETRY_MAX_S, RETRY_FIRST_S * 2 ** min(failures, 16)))


class _Queue:
    """The reports not yet delivered, oldest first; thread-safe."""

    def __init__(self) -> None:
        self.items: deque[Outcome] = deque()
        self.handed: deque[float] = deque()
        """When each item was handed over (monotonic), in the same order."""
        self.lock = threading.Condition()
        self.failures = 0
        self.sending = False
        """A report is being sent (it is still at the head of ``items``)."""
        self.paying = 0
        """Pays of this payer in flight."""
        self.pay_ended = 0.0
        """When the last Pay of this payer ended (monotonic)."""
        self.urgent = 0
        """Flushes waiting: send without holding back."""

    def put(self, outcome: Outcome) -> None:
        with self.lock:
            if len(self.items) >= MAX_QUEUED:
                dropped = self.items.popleft()
                self.handed.popleft()
                log.warning("too many unsent outcome reports; dropped %s", dropped.payment_id)
            self.items.append(outcome)
            self.handed.append(time.monotonic())
            self.lock.notify_all()

    def hold_s(self) -> float:
        """How long the head report should still be held back (0: send it now); locked."""
        if self.urgent or not self.items:
            return 0.0
        if self.paying:
            return QUIET_S  # until the Pay ends (which notifies)
        handed = self.handed[0]
        if self.pay_ended >= handed:
            return 0.0
        return max(0.0, handed + QUIET_S - time.monotonic())

    @contextlib.contextmanager
    def pay_in_flight(self) -> Iterator[None]:
        """Around one Pay of this payer: reports wait for it to end."""
        with self.lock:
            self.paying += 1
        try:
            yield
        finally:
            with self.lock:
                self.paying -= 1
                self.pay_ended = time.monotonic()
                self.lock.notify_all()

    @contextlib.contextmanager
    def flushing(self) -> Iterator[None]:
        """While a flush waits, reports are sent without being held back."""
        with self.lock:
            self.urgent += 1
            self.lock.notify_all()
        try:
            yield
        finally:
            with self.lock:
                self.urgent -= 1

    def head(self) -> Outcome | None:
        with self.lock:
            if not self.items:
                return None
            self.sending = True
            return self.items[0]

    def settle(self, outcome: Outcome, error: Exception | None) -> float:
        """Record one attempt at the head; the delay before the next attempt (0: go on)."""
        with self.lock:
            self.sending = False
            if error is not None and _transient(error):
                self.failures += 1
                self.lock.notify_all()
                return _retry_delay(self.failures - 1)
            if error is not None:
                log.warning("outcome report of %s dropped: %s", outcome.payment_id, error)
            if self.items and self.items[0] is outcome:
                self.items.popleft()
                self.handed.popleft()
            self.failures = 0
            self.lock.notify_all()
            return 0.0

    def drop_all(self) -> None:
        with self.lock:
            if self.items:
                log.warning(
                    "%d outcome report(s) not delivered (the reconciler settles the payments "
                    "from the chain)",
                    len(self.items),
                )
            self.items.clear()
            self.handed.clear()
            self.lock.notify_all()

    def __len__(self) -> int:
        with self.lock:
            return len(self.items)


class OutcomeReporter:
    """Delivers outcomes with ``deliver`` from a daemon thread (started on first use)."""

    def __init__(self, deliver: Callable[[str, int, str], object]) -> None:
        self._deliver = deliver
        self._queue = _Queue()
        self._thread: threading.Thread | None = None
        self._closed = False
        self._at_exit = False

    def submit(self, outcome: Outcome) -> None:
        """Queue one report; it is sent after every report queued before it."""
        self._queue.put(outcome)
        with self._queue.lock:
            if not self._at_exit:
                atexit.register(_flush_at_exit, weakref.ref(self))
                self._at_exit = True
            if self._thread is None or not self._thread.is_alive():
                self._closed = False
                self._thread = threading.Thread(
                    target=self._run, name="walletd-outcomes", daemon=True
                )
                self._thread.start()

    def pay_in_flight(self) -> contextlib.AbstractContextManager[None]:
        """Wrap each Pay of this payer in it: queued reports are held back meanwhile."""
        return self._queue.pay_in_flight()

    def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every queued report is delivered (or dropped); False on timeout."""
        deadline = time.monotonic() + timeout
        with self._queue.flushing(), self._queue.lock:
            while self._queue.items:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._queue.lock.wait(left)
        return True

    def close(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Flush (bounded by ``timeout``), then stop; what is left is dropped, with a warning."""
        self.flush(timeout)
        with self._queue.lock:
            self._closed = True
            self._queue.lock.notify_all()
        self._queue.drop_all()

    def _run(self) -> None:
        queue = self._queue
        while True:
            with queue.lock:
                if not queue.items and not self._closed:
                    queue.lock.wait(IDLE_EXIT_S)
                if not queue.items:
                    self._thread = None
                    return
                while not self._closed and (hold := queue.hold_s()) > 0:
                    queue.lock.wait(hold)
            outcome = queue.head()
            if outcome is None:
                continue
            error: Exception | None = None
            try:
                self._deliver(*outcome)
            except Exception as exc:  # judged by settle(): retried or dropped
                error = exc
            delay = queue.settle(outcome, error)
            until = time.monotonic() + delay
            with queue.lock:
                while not self._closed and (left := until - time.monotonic()) > 0:
                    queue.lock.wait(left)


def _locked(lock: threading.Condition, read: Callable[[], float]) -> float:
    with lock:
        return read()


def _flush_at_exit(ref: weakref.ref[OutcomeReporter]) -> None:
    reporter = ref()
    if reporter is not None and len(reporter._queue):
        reporter.close(EXIT_FLUSH_S)


class AsyncOutcomeReporter:
    """Delivers outcomes with the awaited ``deliver`` from a task of the running loop.

    The queue is not bound to a loop: a task drains it in the loop of the latest
    ``submit``, so reports left by a loop that ended are sent from the next one.
    """

    def __init__(self, deliver: Callable[[str, int, str], Awaitable[object]]) -> None:
        self._deliver = deliver
        self._queue = _Queue()
        self._task: asyncio.Task[None] | None = None

    def submit(self, outcome: Outcome) -> None:
        """Queue one report (no await: the request goes on at once)."""
        self._queue.put(outcome)
        self._ensure_task()

    def pay_in_flight(self) -> contextlib.AbstractContextManager[None]:
        """Wrap each Pay of this payer in it: queued reports are held back meanwhile."""
        return self._queue.pay_in_flight()

    def _ensure_task(self) -> None:
        loop = asyncio.get_running_loop()
        task = self._task
        if task is None or task.done() or task.get_loop() is not loop:
            self._task = loop.create_task(self._run())

    async def flush(self, timeout: float = FLUSH_TIMEOUT_S) -> bool:
        """Wait until every queued report is delivered (or dropped); False on timeout."""
        if not len(self._queue):
            return True
        self._ensure_task()
        deadline = time.monotonic() + timeout
        with self._queue.flushing():
            while len(self._queue):
                if time.monotonic() >= deadline:
                    return False
                await asyncio.sleep(0.002)
        return True

    async def aclose(self, timeout: float = FLUSH_TIMEOUT_S) -> None:
        """Flush (bounded by ``timeout``), then stop; what is left is dropped, with a warning."""
        await self.flush(timeout)
        task, self._task = self._task, None
        if task is not None and not task.done() and task.get_loop() is asyncio.get_running_loop():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._queue.drop_all()

    async def _run(self) -> None:
        queue = self._queue
        while True:
            while (hold := _locked(queue.lock, queue.hold_s)) > 0:
                await asyncio.sleep(min(hold, HOLD_POLL_S))
            outcome = queue.head()
            if outcome is None:
                return
            error: Exception | None = None
            try:
                await self._deliver(*outcome)
            except Exception as exc:  # judged by settle(): retried or dropped
                error = exc
            delay = queue.settle(outcome, error)
            if delay:
                await asyncio.sleep(delay)
