"""Latency summaries shared by the benchmark parts."""

from __future__ import annotations

import os
import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One benchmark line: throughput and latency percentiles."""

    name: str
    ops: int
    seconds: float
    latencies_us: list[float]
    cpu_seconds: float = 0.0
    """CPU (user + system) of every process taking part, over the measured run."""

    @property
    def cpu_per_op_us(self) -> float:
        """CPU µs per operation, all processes together."""
        return self.cpu_seconds / self.ops * 1e6 if self.ops else 0.0

    @property
    def per_second(self) -> float:
        """Operations per second over the run's span."""
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        """The latency (µs) at quantile ``q`` (0..1), nearest rank."""
        ordered = sorted(self.latencies_us)
        if not ordered:
            return 0.0
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        """Median latency, µs."""
        return statistics.median(self.latencies_us) if self.latencies_us else 0.0

    @property
    def p99(self) -> float:
        """99th-percentile latency, µs."""
        return self.percentile(0.99)


def row(result: Result, ratio: str = "") -> str:
    """One aligned table row."""
    cpu = f"{result.cpu_per_op_us:>9.0f}" if result.cpu_seconds else f"{'-':>9}"
    return (
        f"{result.name:<44} {result.per_second:>9.0f}/s {result.p50:>9.0f} {result.p99:>9.0f}"
        f" {cpu}  {ratio}"
    )


HEADER = f"{'benchmark':<44} {'throughput':>11} {'p50 µs':>9} {'p99 µs':>9} {'cpu µs/op':>9}  ratio"


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) a process has used so far, from /proc (Linux)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
