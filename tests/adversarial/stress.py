"""``make stress``: docs/reliability.md's figures from one command, on throwaway infrastructure.

    .venv/bin/python -m tests.adversarial.stress                      # the defaults below
    make stress DEMANDS=100000 CRASHES=20 MINUTES=10
    .venv/bin/python -m tests.adversarial.stress --smoke              # seconds; CI runs this

Five phases, each optional:

1. **demands** (``--demands N``, ``--minutes M``, ``--jobs J``): the fuzz properties
   that make 402 demands (``tests/adversarial/properties.py``: valid demands,
   mutated ones, policy tricks, replays under a used key, and raw parser input)
   through the real decoder and the real Pay service on a SQLite ledger, in J
   processes, until N demands were tried or M minutes passed;
2. **hostile** (``--no-hostile`` skips it): the hostile-server table against a
   real daemon (``pytest tests/adversarial/test_hostile_demands.py``, its figures merged);
3. **crashes** (``--crashes K``, ``--backends sqlite,postgres``): the crash loop of
   ``tests/adversarial/crash.py``, K kills -9 on each backend. PostgreSQL is the
   server in ``--pg-url`` / ``$WALLETD_TEST_PG_URL``, else a throwaway cluster
   from ``scripts/pg`` (stopped at the end);
4. **faults** (``--faults all|none|NAME,...``): ``tests/adversarial/faults.py``'s
   scenarios through its ``run_faults``;
5. **stalls** (``--stalls N``, ``--stall-seconds S``; 0 skips): N stalled HTTP/2
   connections held against a daemon of its own for S seconds, with oversized
   Pays sent alongside, while a real client keeps paying (``tests/adversarial/stalls.py``).

anvil with TestUSDC is started for phases 3 and 4 and stopped at the end; each
crash run and the fault phase run inside an ``evm_snapshot``, reverted after.

Prints one report: demands tried by family with accepted and refused by reason,
then overspend (atomic units), ledger rows lost, crashes survived and faults
survived, and the stall figures. Exit status 1 if overspend or lost rows are not
0, a property failed, a crash run broke an invariant, a fault was not survived,
a real client's Pay failed under the stalls, an oversized request was accepted
or wrote a row, or a phase failed.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import secrets
import shlex
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from datetime import UTC, datetime
from itertools import cycle
from pathlib import Path
from typing import Any

from hypothesis import settings

from tests.adversarial.crash import CrashPlan, CrashResult, run_crash_loop
from tests.adversarial.figures import ENV_FILE, FIGURES, Figures, load
from tests.adversarial.properties import BY_NAME, run_property

REPO = Path(__file__).resolve().parents[2]
ROTATION = (
    "pay_never_signs_invalid", "parser_mutations", "pay_never_signs_invalid", "parser_json",
    "pay_never_signs_invalid", "parser_text", "parser_bytes",
)  # fmt: skip
"""The demand-making properties, in the order chunks cycle through them (Pay gets half)."""
SMOKE = [
    "--demands", "200", "--minutes", "1", "--jobs", "1", "--crashes", "1", "--cold-every", "1",
    "--backends", "sqlite", "--no-hostile", "--faults", "none", "--stalls", "100",
    "--stall-seconds", "4",
]  # fmt: skip
"""``--smoke``: every phase but the slow ones, tiny (flags given after ``--smoke`` win)."""


# ---- 1. demands ------------------------------------------------------------------------


PROGRESS_S = 60.0
"""How often each demand process prints how far it got."""


def demand_job(job: int, target: int, seconds: float, chunk: int) -> dict[str, Any]:
    """One process's share: cycle the demand properties until ``target`` demands or time."""
    FIGURES.reset()
    campaign = settings.get_profile("campaign")
    harnesses: dict[str, Any] = {}
    started = time.monotonic()
    deadline, report = started + seconds, started + PROGRESS_S
    try:
        for name in cycle(ROTATION):
            tried = sum(FIGURES.tried.values())
            left = target - tried
            if left <= 0 or time.monotonic() >= deadline:
                break
            if time.monotonic() >= report:
                rate = tried / (time.monotonic() - started)
                print(f"  [demands] process {job}: {tried}/{target} ({rate:.0f}/s)", flush=True)
                report += PROGRESS_S
            prop = BY_NAME[name]
            if name not in harnesses and prop.harness is not None:
                harnesses[name] = prop.harness()
            try:
                run_property(prop, settings(campaign, max_examples=min(chunk, left)),
                             harnesses.get(name))  # fmt: skip
            except Exception:
                FIGURES.failure(name)
                print(f"FAILED {name}:\n{traceback.format_exc()}", flush=True)
    finally:
        for harness in harnesses.values():
            harness.close()
    return FIGURES.to_json()


def run_demands(total: int, minutes: float, jobs: int, chunk: int) -> Figures:
    """Phase 1 in ``jobs`` processes; their figures, merged."""
    share = [total // jobs + (1 if j < total % jobs else 0) for j in range(jobs)]
    merged = Figures()
    if jobs == 1:  # in this process: demand_job uses (and resets) the global FIGURES
        saved = FIGURES.to_json()
        merged.merge(Figures.from_json(demand_job(0, share[0], minutes * 60, chunk)))
        FIGURES.reset()
        FIGURES.merge(Figures.from_json(saved))
        return merged
    with multiprocessing.get_context("spawn").Pool(jobs) as pool:
        docs = pool.starmap(demand_job, [(j, n, minutes * 60, chunk) for j, n in enumerate(share)])
    for doc in docs:
        merged.merge(Figures.from_json(doc))
    return merged


# ---- 2. hostile table --------------------------------------------------------------------


def run_hostile() -> tuple[Figures, str]:
    """The hostile-server table through pytest; its figures and a one-line result."""
    with tempfile.TemporaryDirectory(prefix="wd-stress-") as tmp:
        target = Path(tmp) / "figures.json"
        env = {**os.environ, ENV_FILE: str(target)}
        argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
                "tests/adversarial/test_hostile_demands.py"]  # fmt: skip
        proc = subprocess.run(argv, cwd=REPO, env=env, capture_output=True, text=True, check=False)
        figures = load(target) if target.exists() else Figures()
    last = (proc.stdout.strip().splitlines() or ["(no output)"])[-1]
    if proc.returncode != 0:
        figures.failure("hostile_table")
        print(proc.stdout[-5000:], proc.stderr[-2000:], sep="\n")
    return figures, last


# ---- infrastructure ----------------------------------------------------------------------


@contextmanager
def own_anvil() -> Iterator[Any]:
    """anvil with TestUSDC at Base's address, as the test Chain helper (stopped afterwards)."""
    from tests.plugins.chain import Chain
    from walletd.devnet import chain as devchain

    with devchain.Anvil() as node:
        w3 = devchain.connect(node.rpc_url)
        yield Chain(w3=w3, usdc=devchain.install_usdc(w3), rpc_url=node.rpc_url)


@contextmanager
def rolled_back(chain: Any) -> Iterator[None]:
    """Revert the chain afterwards, and put its clock back on the wall clock (as the tests do)."""
    snap = chain.snapshot()
    try:
        yield
    finally:
        chain.revert(snap)
        latest = chain.timestamp()
        chain.w3.provider.make_request("evm_setTime", [max(int(time.time()), latest)])


@contextmanager
def postgres_server(url: str) -> Iterator[str]:
    """``url``, or a throwaway cluster from scripts/pg (stopped afterwards)."""
    if url:
        yield url
        return
    out = subprocess.run([str(REPO / "scripts/pg"), "start"], capture_output=True, text=True,
                         check=False)  # fmt: skip
    if out.returncode != 0:
        raise RuntimeError(f"scripts/pg start failed:\n{out.stderr[-3000:]}")
    env = dict(line.split("=", 1) for line in out.stdout.split() if "=" in line)
    try:
        yield env["WALLETD_TEST_PG_URL"]
    finally:
        subprocess.run([str(REPO / "scripts/pg"), "stop", env["WALLETD_TEST_PG_DIR"]],
                       capture_output=True, check=False)  # fmt: skip


@contextmanager
def new_database(server_url: str) -> Iterator[str]:
    """A fresh database on the server, dropped afterwards."""
    import psycopg

    from tests.plugins.pg import libpq_url, with_database

    name = f"wd_stress_{secrets.token_hex(4)}"
    with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(server_url, name)
    finally:
        with psycopg.connect(libpq_url(server_url), autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


# ---- the report ------------------------------------------------------------------------


def crash_table(results: Sequence[CrashResult]) -> str:
    head = (
        "| backend | kills -9 | cold restarts | answers | accepted | refused (budget) | "
        "rounds a budget ran out | retried across a kill | answer lost, same header on retry | "
        "rows | overspend | rows lost | rows never received | integrity_check | audit chains | "
        "reconciled | seconds |\n|---|" + "---:|" * 16
    )
    lines = [head]
    for r in results:
        lines.append(
            f"| {r.backend} | {r.kills} | {r.cold_restarts} | {sum(r.outcomes.values())} | "
            f"{r.accepted} | {r.budget_refusals} | {r.budget_rounds}/{r.rounds} | "
            f"{r.retried} | {r.recovered} | {r.rows} | "
            f"{r.overspend} | {r.lost_rows} | {r.unreceived_rows} | "
            f"{', '.join(r.integrity) or 'n/a'} | {'ok' if r.audit_ok else 'BROKEN'} | "
            f"{' '.join(f'{k} {v}' for k, v in sorted(r.reconciled.items()))} | "
            f"{r.seconds:.0f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.adversarial.stress")
    parser.add_argument("--demands", type=int, default=100_000, help="phase 1 target")
    parser.add_argument("--minutes", type=float, default=10.0, help="phase 1 time cap")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="phase 1 processes")
    parser.add_argument("--chunk", type=int, default=500, help="examples per hypothesis run")
    parser.add_argument("--no-hostile", dest="hostile", action="store_false")
    parser.add_argument("--crashes", type=int, default=20, help="kills per backend (0 skips)")
    parser.add_argument("--backends", default="sqlite,postgres")
    parser.add_argument("--pg-url", default=os.environ.get("WALLETD_TEST_PG_URL", ""))
    parser.add_argument("--cold-every", type=int, default=5,
                        help="every n-th restart is a cold `python -m walletd serve`")  # fmt: skip
    parser.add_argument("--faults", default="all", help="all, none, or NAME,NAME")
    parser.add_argument("--seed", type=int, default=None, help="crash-loop seed")
    parser.add_argument("--stalls", type=int, default=1200, help="stalled connections (0 skips)")
    parser.add_argument("--stall-seconds", type=float, default=60.0, help="how long to hold them")
    parser.add_argument("--stall-nofile", type=int, default=0,
                        help="the stalled daemon's open-file limit (0: inherited)")  # fmt: skip
    parser.add_argument("--figures", type=Path, help="also merge the figures into this JSON file")
    parser.add_argument("--smoke", action="store_true", help="a tiny run: " + " ".join(SMOKE))
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(SMOKE + raw if "--smoke" in raw else raw)
    seed = args.seed if args.seed is not None else secrets.randbits(32)
    backends = [b for b in args.backends.split(",") if b]
    if set(backends) - {"sqlite", "postgres"}:
        parser.error(f"--backends takes sqlite and/or postgres, not {args.backends!r}")
    started = time.monotonic()
    print(
        f"walletd stress  {datetime.now(UTC):%Y-%m-%d %H:%M} UTC  {platform.node()}  "
        f"{os.cpu_count()} cores  Python {platform.python_version()}  seed {seed}\n"
        f"command: python -m tests.adversarial.stress {shlex.join(raw)}",
        flush=True,
    )
    FIGURES.reset()
    problems: list[str] = []

    if args.demands > 0:
        t0 = time.monotonic()
        FIGURES.merge(run_demands(args.demands, args.minutes, max(1, args.jobs), args.chunk))
        tried = sum(FIGURES.tried.values())
        print(f"\n[demands] {tried} tried in {time.monotonic() - t0:.0f} s "
              f"({args.jobs} processes)", flush=True)  # fmt: skip
    if args.hostile:
        t0 = time.monotonic()
        figures, line = run_hostile()
        FIGURES.merge(figures)
        print(f"[hostile] {line} ({time.monotonic() - t0:.0f} s)", flush=True)
    stall_lines = ""
    if args.stalls > 0:
        from tests.adversarial.stalls import run_against_own_daemon

        print(f"[stalls] {args.stalls} connections, {args.stall_seconds:g} s", flush=True)
        nofile = args.stall_nofile or None
        stall_figures = run_against_own_daemon(args.stalls, args.stall_seconds, nofile=nofile)
        stall_lines = stall_figures.render()
        problems += [f"stalls: {p}" for p in stall_figures.problems()]
    crash_results: list[CrashResult] = []
    fault_lines = ""
    fault_count = (0, 0)
    with ExitStack() as stack:
        want_faults = args.faults != "none"
        chain = stack.enter_context(own_anvil()) if args.crashes or want_faults else None
        for n, backend in enumerate(backends if args.crashes > 0 else []):
            plan = CrashPlan(kills=args.crashes, seed=seed + n, cold_every=args.cold_every)
            with ExitStack() as run:
                db_url = ""
                if backend == "postgres":
                    try:
                        server = stack.enter_context(postgres_server(args.pg_url))
                    except RuntimeError as exc:  # no server and none can be started here
                        problems.append(f"crash[postgres]: not run: {exc}")
                        continue
                    db_url = run.enter_context(new_database(server))
                run.enter_context(rolled_back(chain))
                print(f"[crashes] {backend}: {args.crashes} kills", flush=True)
                result = run_crash_loop(plan, db_url=db_url, chain=chain,
                                        log=lambda s: print("  " + s, flush=True))  # fmt: skip
            crash_results.append(result)
            problems += [f"crash[{backend}]: {p}" for p in result.problems()]
        if want_faults:
            fault_lines, fault_count, fault_problems = _faults(args.faults, chain)
            problems += fault_problems

    print("\n" + "=" * 100)
    print(FIGURES.render())
    if crash_results:
        print("\ncrash runs:\n" + crash_table(crash_results))
    if fault_lines:
        print("\nfaults:\n" + fault_lines)
    if stall_lines:
        print("\nstalls:\n" + stall_lines)
    survived, total_faults = fault_count
    problems += [f"property {p} failed" for p in FIGURES.failures]
    print(
        f"\ndemands tried: {sum(FIGURES.tried.values())}  accepted: {FIGURES.accepted}  "
        f"refused: {sum(FIGURES.refused_by_reason().values())}\n"
        f"overspend (atomic units): {FIGURES.overspend}\n"
        f"ledger rows lost: {FIGURES.lost_rows}\n"
        f"crashes survived: {FIGURES.crashes} "
        f"({', '.join(f'{r.backend} {r.kills}' for r in crash_results) or 'none run'})\n"
        f"faults survived: {survived}/{total_faults}\n"
        f"time: {time.monotonic() - started:.0f} s"
    )
    if FIGURES.overspend or FIGURES.lost_rows:
        problems.append("overspend or lost rows")
    if args.figures:
        FIGURES.save(args.figures)
    print("\nverdict: " + ("PASS" if not problems else "FAIL\n  " + "\n  ".join(problems)))
    return 1 if problems else 0


def _faults(which: str, chain: Any) -> tuple[str, tuple[int, int], list[str]]:
    """Phase 4 through tests/adversarial/faults.py's ``run_faults``."""
    try:
        from tests.adversarial import faults
    except ImportError as exc:
        return f"  (tests/adversarial/faults.py unavailable: {exc})", (0, 0), ["no faults module"]
    only = [] if which == "all" else which.split(",")
    print(f"[faults] {', '.join(only) or 'all'}", flush=True)
    with rolled_back(chain):
        outcomes = faults.run_faults(faults.ChainHandle(chain.w3, chain.rpc_url), only=only)
    problems = [f"fault {o.name}: {o.detail}" for o in outcomes if not o.survived]
    return faults.render(outcomes), (sum(o.survived for o in outcomes), len(outcomes)), problems


if __name__ == "__main__":
    sys.exit(main())
