"""The long fuzz campaign: the CI properties, for as long as you give them.

    .venv/bin/python -m tests.adversarial.campaign --minutes 10
    make fuzz MINUTES=10

Time is shared equally between the properties of ``tests/adversarial/properties.py``
(the same code pytest runs with the ``ci`` profile). Each property runs in
chunks of ``--chunk`` examples under the ``campaign`` hypothesis profile (a
fresh random seed per chunk, no example database) until its share is used up;
its harness (e.g. the SQLite ledger of the Pay property) lives for the whole
share, so state piles up the way it does in a long-running daemon.

Prints the inputs tried per property, the failures (must be 0; the falsifying
example is printed by hypothesis), and the demand figures by family and reason.
Exit status 1 if any property failed. ``--figures FILE`` merges the figures into
a JSON file for ``make stress``.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from pathlib import Path

from hypothesis import settings

from tests.adversarial.figures import FIGURES
from tests.adversarial.properties import BY_NAME, PROPERTIES, Property, run_property


def run_for(prop: Property, seconds: float, chunk: int) -> tuple[int, int]:
    """Run ``prop`` in chunks for about ``seconds``; return (inputs tried, failures)."""
    campaign = settings.get_profile("campaign")
    harness = prop.harness() if prop.harness is not None else None
    started = time.monotonic()
    deadline = started + seconds
    tried, size = 0, 20  # the first chunk measures the rate; the next ones fit the time left
    try:
        while time.monotonic() < deadline:
            try:
                tried += run_property(prop, settings(campaign, max_examples=size), harness)
            except Exception:
                FIGURES.failure(prop.name)
                print(f"FAILED {prop.name}:\n{traceback.format_exc()}", flush=True)
                return FIGURES.examples[prop.name], 1
            rate = tried / max(time.monotonic() - started, 1e-3)
            size = max(5, min(chunk, int(rate * (deadline - time.monotonic()))))
    finally:
        if harness is not None:
            harness.close()
    return FIGURES.examples[prop.name], 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.adversarial.campaign")
    parser.add_argument("--minutes", type=float, default=10.0, help="total time (default 10)")
    parser.add_argument("--chunk", type=int, default=500, help="examples per hypothesis run")
    parser.add_argument("--only", action="append", choices=sorted(BY_NAME), help="repeatable")
    parser.add_argument("--figures", type=Path, help="merge the figures into this JSON file")
    args = parser.parse_args(argv)
    chosen = [BY_NAME[n] for n in args.only] if args.only else list(PROPERTIES)
    share = args.minutes * 60 / len(chosen)
    print(f"fuzz campaign: {len(chosen)} properties, {share:.0f} s each", flush=True)
    started = time.monotonic()
    rows = []
    for prop in chosen:
        t0 = time.monotonic()
        tried, failed = run_for(prop, share, args.chunk)
        elapsed = time.monotonic() - t0
        rows.append((prop.name, tried, failed, elapsed))
        print(f"  {prop.name:<26} {tried:>9} inputs  {tried / elapsed:>8.0f}/s  "
              f"failures {failed}", flush=True)  # fmt: skip
    total, failures = sum(r[1] for r in rows), sum(r[2] for r in rows)
    print("\n| property | inputs | per second | failures |\n|---|---:|---:|---:|")
    for name, tried, failed, elapsed in rows:
        print(f"| {name} | {tried} | {tried / elapsed:.0f} | {failed} |")
    print(f"| **total** | **{total}** | | **{failures}** |")
    print(f"\n{FIGURES.render()}")
    print(f"\ncampaign: {total} inputs in {time.monotonic() - started:.0f} s, {failures} failures")
    if args.figures:
        FIGURES.save(args.figures)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
