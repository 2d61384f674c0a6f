"""The one place walletd reads the time, so tests can move it."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Unix epoch milliseconds, UTC."""
    return time.time_ns() // 1_000_000
