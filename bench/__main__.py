"""`python -m bench [--smoke] [--pg URL]`: every figure of the benchmark, in one run.

Ratios are against the anchor measured in the same run on the same machine:
(b)/(a) and (c)/(a) compare Pay throughput with the reference client's in-process
header rate (and CPU per operation, which depends less on what else the machine
runs); the interleaved rounds also put the 16-caller Pay over the lean durable
Pay; (d) compares a paid chat's p50 through walletd (with and without pre-pay)
with the reference x402 client's, on loopback and over a 20 ms delay, and gives
the Pay and ReportOutcome RPC times. docs/benchmarks.md has the figures.
"""

from __future__ import annotations

import argparse
import os
import platform
from statistics import median

from bench import anchor, e2e, floors, inproc, pay_load, split
from bench.stats import HEADER, Result, row


def _ratio(result: Result, base: Result) -> str:
    cpu = result.cpu_per_op_us / base.cpu_per_op_us if base.cpu_seconds else 0.0
    return f"{result.per_second / base.per_second:.2f}x anchor throughput, {cpu:.2f}x its cpu/op"


def _pay_lines(base: Result, db_url: str, label: str, calls: int) -> list[str]:
    lines = [f"{label} ledger: {pay_load.durability(db_url)}"]
    with pay_load.daemon(db_url) as target:
        deployed = pay_load.deployed_nice()
        lines.append(
            f"  daemon at nice {target.nice} (deploy/walletd.service: Nice={deployed});"
            f" warmed by {calls} Pays before the lines"
        )
        pay_load.warm(target, calls)
        for callers in (1, 4, 16):
            result, _ = pay_load.load(target, callers, calls, f"{label} Pay, {callers} callers")
            extra = f"; p50 {result.p50 / base.p50:.2f}x anchor p50" if callers == 1 else ""
            lines.append(row(result, _ratio(result, base) + extra))
        local = inproc.run(target, 16, calls, label)
        lines.append(row(local, _ratio(local, base) + "; no gRPC: the same Pay work alone"))
        alone = inproc.run(target, 1, calls, label)
        lines.append(row(alone, _ratio(alone, base) + "; no gRPC, one at a time"))
        lines.append(f"  {label}: one caller's calls, the daemon's CPU from /proc")
        lines.extend(part.line() for part in split.run(target, calls))
    with pay_load.daemon(db_url, nice=0) as target:
        pay_load.warm(target, calls)
        result, _ = pay_load.load(target, 16, calls, f"{label} Pay, 16 callers, nice 0")
        lines.append(row(result, _ratio(result, base) + "; the daemon not favoured over callers"))
    budget, total, over = pay_load.overspend(db_url, 16, max(4, calls // 4))
    lines.append(f"  overspend check ({label}): budget {budget}, ledger {total}, overspend {over}")
    return lines


def _interleaved_lines(rounds: int, n_anchor: int, calls: int) -> list[str]:
    """The headline ratio, (b) at 16 callers over the anchor, measured in ``rounds`` pairs.

    This machine's speed drifts by 2x within an hour, so one anchor line and one
    Pay line minutes apart can disagree by that much. Here each Pay run follows
    its own anchor run seconds before; the median of the pairs' ratios is the
    figure least moved by the drift.
    """
    ratios: list[float] = []
    floor_ratios: list[float] = []
    lines = [
        f"interleaved: (b) SQLite Pay at 16 callers over the anchor and over the lean durable "
        f"Pay, {rounds} rounds"
    ]
    with pay_load.daemon() as target:
        pay_load.warm(target, calls)
        for i in range(rounds):
            base = anchor.run(n_anchor)
            lean = floors.grpc_alone(16, calls, "lean", nice=pay_load.deployed_nice())
            result, _ = pay_load.load(
                target, 16, calls, f"(b) SQLite Pay, 16 callers, round {i + 1}"
            )
            ratios.append(result.per_second / base.per_second)
            floor_ratios.append(result.per_second / lean.per_second)
            lines.append(
                row(
                    result,
                    f"{ratios[-1]:.2f}x its anchor ({base.per_second:.0f}/s), "
                    f"{floor_ratios[-1]:.2f}x its lean durable Pay ({lean.per_second:.0f}/s)",
                )
            )
    for what, values in (("anchor", ratios), ("lean durable Pay", floor_ratios)):
        spread = f"{min(values):.2f}-{max(values):.2f}x"
        lines.append(
            f"  over the {what}: median of the {rounds} ratios {median(values):.2f}x"
            f" (range {spread})"
        )
    return lines


def _floor_lines(base: Result, calls: int) -> list[str]:
    """What Pay cannot beat here, and what a lean Python Pay reaches (bench/floors.py)."""
    lines = ["floors: a do-nothing gRPC handler, a lean durable Pay behind it, and one fsync"]
    for callers, kind in ((1, "sync"), (16, "sync"), (16, "aio")):
        result = floors.grpc_alone(callers, calls, kind)
        extra = f"; p50 {result.p50 / base.p50:.2f}x anchor p50" if callers == 1 else ""
        lines.append(row(result, _ratio(result, base) + extra))
    lean = floors.grpc_alone(16, calls, "lean", nice=pay_load.deployed_nice())
    lines.append(row(lean, _ratio(lean, base) + "; what Python, this transport and fsync allow"))
    commit = floors.durable_commit(max(20, calls // 2))
    lines.append(row(commit, f"p50 {commit.p50 / base.p50:.2f}x anchor p50"))
    return lines


def main() -> None:
    """Run every part and print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it works")
    parser.add_argument("--pg", default=os.environ.get("WALLETD_TEST_PG_URL", ""),
                        help="PostgreSQL URL for (c); default $WALLETD_TEST_PG_URL")  # fmt: skip
    parser.add_argument("--pairs", type=int, default=None,
                        help="anchor + 16-caller Pay pairs for the interleaved ratio "
                             "(default 5; 1 with --smoke)")  # fmt: skip
    parser.add_argument("--chats", type=int, default=None,
                        help="requests per line of (d), the paid chat end to end "
                             "(default 60; 2 with --smoke)")  # fmt: skip
    parser.add_argument("--only-e2e", action="store_true",
                        help="run only (d), the paid chat end to end")  # fmt: skip
    args = parser.parse_args()
    n_anchor, calls, chats = (20, 3, 2) if args.smoke else (2000, 200, 60)
    chats = args.chats if args.chats is not None else chats
    pairs = args.pairs if args.pairs is not None else (1 if args.smoke else 5)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        f"; load average {_load()} at start"
    )
    if args.only_e2e:
        _e2e(chats)
        print(f"load average {_load()} at the end")
        return
    print(HEADER)
    base = anchor.run(n_anchor)
    print(row(base, "1.00x"))
    for line in _floor_lines(base, calls):
        print(line, flush=True)
    for line in _pay_lines(base, "", "(b) SQLite", calls):
        print(line, flush=True)
    for line in _interleaved_lines(pairs, max(20, n_anchor // 2), calls):
        print(line, flush=True)
    if args.pg:
        for line in _pay_lines(base, args.pg, "(c) PostgreSQL", calls):
            print(line, flush=True)
    else:
        print("(c) PostgreSQL: skipped (no --pg / WALLETD_TEST_PG_URL)")
    _e2e(chats)
    print(f"load average {_load()} at the end (other work on the machine skews every figure)")


def _e2e(chats: int) -> None:
    runs, daemon_cpu_us = e2e.run(chats)
    for line in e2e.lines(runs, daemon_cpu_us):
        print(line, flush=True)


def _load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


if __name__ == "__main__":
    main()
