"""The benchmark command works (tiny sizes); its figures are never asserted."""

from __future__ import annotations

import subprocess
import sys

import pytest


@pytest.mark.slow
def test_benchmark_smoke_run_prints_every_part() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "bench", "--smoke"], capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    parts = ("(a) anchor", "gRPC sync alone, 16 callers", "gRPC aio alone", "lean durable Pay, 16 callers",
             "durable SQLite commit",
             "(b) SQLite Pay, 16 callers", "(b) SQLite Pay in-process", "overspend 0",
             "over the lean durable Pay: median of the 1 ratios", "ReportOutcome, 1 caller", "ms idle, 1 caller", "reference x402 client", "walletd AsyncClusterClient, pre-pay",
             "20 ms each way", "ratio to reference p50")  # fmt: skip
    for part in parts:
        assert part in proc.stdout
