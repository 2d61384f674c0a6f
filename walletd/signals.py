"""How walletd's long-running processes learn that SIGTERM or SIGINT asked them to stop.

The handler only stores the signal number. Python runs a handler in the main
thread between two bytecodes of whatever that thread was doing, so a handler
that takes a lock can deadlock on one the interrupted code holds: calling
``threading.Event.set`` from a handler while the main thread is inside
``Event.wait`` on the same event is exactly that (the event's lock is not
reentrant), and a daemon caught in that window ignores every later SIGTERM.
"""

from __future__ import annotations

import signal
import time
from types import FrameType

POLL_S = 0.5
"""How often the waiting main thread looks at the flag.

The kernel may deliver the signal to any thread (gRPC's, the reconciler's);
Python then only flags it and runs the handler when the main thread next runs
bytecode, so the main thread never blocks in an untimed wait.
"""


class StopSignals:
    """SIGTERM and SIGINT, recorded by a handler that takes no lock."""

    def __init__(self) -> None:
        self.received: int | None = None
        """The number of the first stop signal, or None while none has come."""

    def install(self) -> StopSignals:
        """Take over SIGTERM and SIGINT; call from the main thread, before start-up work.

        A signal that comes during start-up is kept, and ``wait`` returns at once.
        """
        signal.signal(signal.SIGTERM, self._handle)
        signal.signal(signal.SIGINT, self._handle)
        return self

    def wait(self, poll_s: float = POLL_S) -> int:
        """Block until a stop signal has come; returns its number."""
        while self.received is None:
            time.sleep(poll_s)
        return self.received

    def _handle(self, signum: int, _frame: FrameType | None) -> None:
        if self.received is None:
            self.received = signum
