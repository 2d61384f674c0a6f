"""`python -m bench [--smoke] [--pg URL]`: every figure of the benchmark, in one run.

Ratios are against the anchor measured in the same run on the same machine:
(b)/(a) and (c)/(a) compare Pay throughput with the reference client's in-process
header rate; (d) compares a paid request's p50 with an unpaid one's.
"""

from __future__ import annotations

import argparse
import os
import platform

from bench import anchor, e2e, pay_load
from bench.stats import HEADER, Result, row


def _ratio(result: Result, base: Result) -> str:
    return f"{result.per_second / base.per_second:.2f}x anchor throughput"


def _pay_lines(base: Result, db_url: str, label: str, calls: int) -> list[str]:
    lines = []
    with pay_load.daemon(db_url) as target:
        for callers in (1, 4, 16):
            result, _ = pay_load.load(target, callers, calls, f"{label} Pay, {callers} callers")
            extra = f"; p50 {result.p50 / base.p50:.2f}x anchor per-header" if callers == 1 else ""
            lines.append(row(result, _ratio(result, base) + extra))
    budget, total, over = pay_load.overspend(db_url, 16, max(4, calls // 4))
    lines.append(f"  overspend check ({label}): budget {budget}, ledger {total}, overspend {over}")
    return lines


def main() -> None:
    """Run every part and print one table."""
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--smoke", action="store_true", help="tiny sizes: checks it works")
    parser.add_argument("--pg", default=os.environ.get("WALLETD_TEST_PG_URL", ""),
                        help="PostgreSQL URL for (c); default $WALLETD_TEST_PG_URL")  # fmt: skip
    args = parser.parse_args()
    n_anchor, calls, chats = (20, 3, 2) if args.smoke else (2000, 200, 50)
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
    )
    print("ledger durability: SQLite WAL, synchronous=FULL (fsync per commit)")
    print(HEADER)
    base = anchor.run(n_anchor)
    print(row(base, "1.00x"))
    for line in _pay_lines(base, "", "(b) SQLite", calls):
        print(line, flush=True)
    if args.pg:
        for line in _pay_lines(base, args.pg, "(c) PostgreSQL", calls):
            print(line, flush=True)
    else:
        print("(c) PostgreSQL: skipped (no --pg / WALLETD_TEST_PG_URL)")
    unpaid, paid, prepaid = e2e.run(chats)
    print(row(unpaid, "1.00x"))
    print(row(paid, f"{paid.p50 / unpaid.p50:.2f}x unpaid p50"))
    print(row(prepaid, f"{prepaid.p50 / unpaid.p50:.2f}x unpaid p50"))


if __name__ == "__main__":
    main()
