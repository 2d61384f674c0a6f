"""Latency summaries shared by the benchmark parts."""

from __future__ import annotations

import statistics
from dataclasses import dataclass


@dataclass(frozen=True)
class Result:
    """One benchmark line: throughput and latency percentiles."""

    name: str
    ops: int
    seconds: float
    latencies_us: list[float]

    @property
    def per_second(self) -> float:
        return self.ops / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        ordered = sorted(self.latencies_us)
        if not ordered:
            return 0.0
        index = min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))
        return ordered[index]

    @property
    def p50(self) -> float:
        return statistics.median(self.latencies_us) if self.latencies_us else 0.0

    @property
    def p99(self) -> float:
        return self.percentile(0.99)


def row(result: Result, ratio: str = "") -> str:
    """One aligned table row."""
    return (
        f"{result.name:<44} {result.per_second:>9.0f}/s {result.p50:>9.0f} {result.p99:>9.0f}"
        f"  {ratio}"
    )


HEADER = f"{'benchmark':<44} {'throughput':>11} {'p50 µs':>9} {'p99 µs':>9}  ratio"
