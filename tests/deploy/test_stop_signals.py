"""walletd.signals: SIGTERM and SIGINT stop a waiting process, however they arrive."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator

import pytest

from walletd.signals import StopSignals


@pytest.fixture
def stop_signals() -> Iterator[StopSignals]:
    """Installed StopSignals; the test process's own handlers come back afterwards."""
    if threading.current_thread() is not threading.main_thread():
        pytest.skip("signal handlers can only be installed from the main thread")
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        yield StopSignals().install()
    finally:
        for signum, handler in before.items():
            signal.signal(signum, handler)


def _send_later(signum: int, times: int = 1, after_s: float = 0.1) -> threading.Thread:
    def send() -> None:
        time.sleep(after_s)
        for _ in range(times):
            os.kill(os.getpid(), signum)

    sender = threading.Thread(target=send, daemon=True)
    sender.start()
    return sender


def test_sigterm_ends_the_wait_and_names_the_signal(stop_signals: StopSignals) -> None:
    sender = _send_later(signal.SIGTERM)
    assert stop_signals.wait(poll_s=0.05) == signal.SIGTERM
    sender.join()


def test_a_signal_before_the_wait_is_kept(stop_signals: StopSignals) -> None:
    os.kill(os.getpid(), signal.SIGINT)
    started = time.monotonic()
    assert stop_signals.wait(poll_s=5) == signal.SIGINT
    assert time.monotonic() - started < 1


def test_a_burst_of_signals_still_stops_the_waiter_and_the_first_one_counts(
    stop_signals: StopSignals,
) -> None:
    """A lock taken in the handler would deadlock when a signal lands while the waiter holds it."""
    sender = _send_later(signal.SIGINT, times=1)
    burst = _send_later(signal.SIGTERM, times=500, after_s=0.3)
    assert stop_signals.wait(poll_s=0.001) == signal.SIGINT
    sender.join()
    burst.join()
    assert stop_signals.received == signal.SIGINT
