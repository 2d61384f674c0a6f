"""Where one caller's Pay and ReportOutcome spend the daemon's CPU.

One caller in this process makes sequential Pays (then reports each one's
outcome, sequentially) against a running daemon; the daemon's user and system
CPU and its threads' context switches are read from /proc before and after.
With Pay in-process at one thread (``bench/inproc.py``) beside it, this splits a
single caller's Pay into walletd's own work and what the transport, the
thread hand-offs and the per-call commit add; the Health RPC through the same
server (its interceptor, its threads, no ledger) is the transport's share. The
same calls after 30 ms of idle show what the hand-offs cost when the machine's
cores were idle: a paying client calls Pay that way.
"""

from __future__ import annotations

import os
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from bench.pay_load import URL, Target
from tests.plugins.daemon import demand_header

PAUSE_S = 0.03
"""The idle time before each call of the "after idle" line: about what a paid API takes to
answer, so it is how a paying client calls Pay (see the paid chat lines)."""


@dataclass(frozen=True)
class Split:
    """Per call: the daemon's user and system CPU (µs), context switches, the caller's CPU."""

    name: str
    user_us: float
    system_us: float
    switches: float
    caller_us: float
    p50_us: float

    def line(self) -> str:
        """One printed line."""
        total = self.user_us + self.system_us
        return (
            f"  {self.name:<36} p50 {self.p50_us:>6.0f} µs; daemon CPU {total:>5.0f} µs"
            f" (user {self.user_us:.0f}, system {self.system_us:.0f}),"
            f" {self.switches:.1f} context switches; caller CPU {self.caller_us:.0f} µs"
        )


def _cpu(pid: int) -> tuple[float, float]:
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    tick = os.sysconf("SC_CLK_TCK")
    return int(fields[11]) / tick, int(fields[12]) / tick


def _switches(pid: int) -> int:
    total = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{task}/status") as status:
                total += sum(int(line.split()[1]) for line in status if "ctxt_switches" in line)
        except OSError:  # a thread that ended meanwhile
            continue
    return total


def run(target: Target, calls: int) -> list[Split]:
    """Pay, then ReportOutcome, ``calls`` each, one at a time from this process."""
    from walletd.client import WalletClient

    header = demand_header()
    with WalletClient(
        socket=target.socket, token_file=Path(target.token_file), timeout=60
    ) as wallet:
        for _ in range(10):
            wallet.pay(uuid.uuid4().hex, "POST", URL, payment_required=header)
        receipts = []

        def pay() -> None:
            receipts.append(wallet.pay(uuid.uuid4().hex, "POST", URL, payment_required=header))

        def report() -> None:
            wallet.report_outcome(receipts[len(done)].payment_id, 200, "")
            done.append(1)

        done: list[int] = []
        return [
            _measure(target.pid, "Health (transport alone), 1 caller", wallet.health, calls),
            _measure(target.pid, "Pay, 1 caller", pay, calls),
            _measure(target.pid, "ReportOutcome, 1 caller", report, calls),
            _measure(target.pid, f"Health after {PAUSE_S * 1000:.0f} ms idle", wallet.health, calls,
                     PAUSE_S),
            _measure(target.pid, f"Pay after {PAUSE_S * 1000:.0f} ms idle, 1 caller", pay, calls,
                     PAUSE_S),
        ]  # fmt: skip


def _measure(pid: int, name: str, call: object, calls: int, pause: float = 0.0) -> Split:
    latencies = []
    (user, system), switches = _cpu(pid), _switches(pid)
    caller = time.process_time()
    for _ in range(calls):
        if pause:
            time.sleep(pause)
        t0 = time.perf_counter_ns()
        call()  # type: ignore[operator]
        latencies.append((time.perf_counter_ns() - t0) / 1000)
    caller = time.process_time() - caller
    (user2, system2), switches2 = _cpu(pid), _switches(pid)
    latencies.sort()
    return Split(
        name,
        (user2 - user) / calls * 1e6,
        (system2 - system) / calls * 1e6,
        (switches2 - switches) / calls,
        caller / calls * 1e6,
        latencies[len(latencies) // 2],
    )
