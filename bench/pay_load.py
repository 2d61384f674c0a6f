"""(b)/(c) walletd Pay over its Unix socket, from callers in separate processes.

A real `walletd serve` runs on a temporary data dir (SQLite in WAL mode with
``synchronous=FULL``: every Pay is fsynced before its reply), or on the
PostgreSQL URL given. Each caller process opens its own WalletClient, warms up,
waits at a barrier, then makes sequential Pay calls with fresh idempotency keys.
"""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path

from bench.callers import Part, fan_out
from bench.stats import Result
from tests.plugins.daemon import demand_header
from walletd.domain.money import format_usd

PRICE = 3000
URL = "http://127.0.0.1:9/v1/chat/completions"
UNIT = Path(__file__).resolve().parent.parent / "deploy" / "walletd.service"


def deployed_nice() -> int:
    """The niceness deploy/walletd.service gives the daemon (its ``Nice=``), else 0."""
    for line in UNIT.read_text().splitlines():
        if line.startswith("Nice="):
            return int(line.partition("=")[2])
    return 0


@dataclass(frozen=True)
class Target:
    """A running daemon and a client token for it."""

    socket: str
    token_file: str
    data_dir: Path
    db_url: str
    client: str
    pid: int = 0
    """The daemon's process id (its CPU is part of each figure)."""
    nice: int = 0
    """The niceness the daemon actually runs at (lowering it needs root or CAP_SYS_NICE)."""


def _cli(env: dict[str, str], *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "walletd", *args], env=env, capture_output=True,
                         text=True, check=True)  # fmt: skip
    return out.stdout


@contextmanager
def daemon(
    db_url: str = "", *, total_budget: str = "1000000", nice: int | None = None
) -> Iterator[Target]:
    """Init a data dir, add a client with a budget, serve; stop on exit.

    The daemon runs at ``nice`` (default: as deployed, ``deployed_nice()``) when
    this process may set it; ``Target.nice`` says what it got.
    """
    nice = deployed_nice() if nice is None else nice
    root = Path(tempfile.mkdtemp(prefix="wd-bench-", dir="/tmp"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    data, passfile = root / "data", root / "pass"
    passfile.write_text("bench passphrase\n")
    ledger = ["--db-url", db_url] if db_url else []
    _cli(env, "init", "--data-dir", str(data), "--passphrase-file", str(passfile),
         "--kdf-log-n", "10", *ledger)  # fmt: skip
    client = f"bench-{root.name[-8:]}"  # a shared PostgreSQL ledger outlives one daemon
    token = _cli(env, "client", "add", client, "--data-dir", str(data), *ledger).split()[-1]
    (root / "token").write_text(token)
    _cli(env, "budget", "set", client, "--total", total_budget, "--data-dir", str(data), *ledger)
    renice = ["nice", "-n", str(nice)] if nice else []  # refused: it runs at 0 (and says so)
    proc = subprocess.Popen(
        [*renice, sys.executable, "-m", "walletd", "serve", "--data-dir", str(data),
         "--passphrase-file", str(passfile), *ledger],
        env=env, stdout=subprocess.DEVNULL, stderr=(root / "log").open("wb"),
    )  # fmt: skip
    target = Target(str(data / "walletd.sock"), str(root / "token"), data, db_url, client, proc.pid)
    try:
        _wait(target)
        target = replace(target, nice=os.getpriority(os.PRIO_PROCESS, proc.pid))
        yield target
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


def _wait(target: Target) -> None:
    from walletd.client import DaemonUnavailableError, WalletClient

    for _ in range(600):
        if Path(target.socket).exists():
            try:
                with WalletClient(socket=target.socket, token="probe", timeout=2) as probe:
                    if probe.health():
                        return
            except DaemonUnavailableError:  # the socket file is there, not yet listening
                pass
        time.sleep(0.05)
    raise RuntimeError("walletd did not start")


def _calls(target: Target, index: int, calls: int, barrier: object) -> Part:
    from walletd.client import BudgetExceededError, WalletClient

    header = demand_header()
    latencies: list[float] = []
    refused = 0
    with WalletClient(
        socket=target.socket, token_file=Path(target.token_file), timeout=60
    ) as wallet:
        for _ in range(5):  # warm up the channel
            wallet.get_budget()
        barrier.wait()  # type: ignore[attr-defined]
        cpu = time.process_time()
        start = time.perf_counter()
        for i in range(calls):
            t0 = time.perf_counter_ns()
            try:
                wallet.pay(f"c{index}-{i}-{os.getpid()}", "POST", URL, payment_required=header)
            except BudgetExceededError:
                refused += 1
            latencies.append((time.perf_counter_ns() - t0) / 1000)
        end = time.perf_counter()
        cpu = time.process_time() - cpu
    return start, end, latencies, cpu, refused


def warm(target: Target, pays: int) -> None:
    """``pays`` sequential Pays on ``target`` that no line counts.

    A daemon in service has a warm ledger (its WAL file grown to its working
    size, its pages cached); a fresh one would charge its first line for that.
    """
    load(target, 1, pays, "warm-up")


def load(target: Target, callers: int, calls: int, name: str) -> tuple[Result, int]:
    """``callers`` processes x ``calls`` sequential Pays; returns the result and refusals."""
    return fan_out(_calls, lambda i: (target, i, calls), callers, target.pid, name)


TOTAL_SQL = (
    "select coalesce(sum(p.amount), 0) from payments p join clients c on c.id = p.client_id "
    "where c.name = :client"
)


def ledger_total(target: Target) -> int:
    """What the ledger holds for this run's client (a PostgreSQL ledger is shared)."""
    if not target.db_url:
        with sqlite3.connect(target.data_dir / "walletd.db") as db:
            row = db.execute(TOTAL_SQL, {"client": target.client}).fetchone()
            return int(row[0])
    from sqlalchemy import create_engine, text

    engine = create_engine(target.db_url)
    with engine.connect() as conn:
        total = int(conn.execute(text(TOTAL_SQL), {"client": target.client}).scalar_one())
    engine.dispose()
    return total


def durability(db_url: str) -> str:
    """How durable a commit is on this ledger, as the server reports it."""
    if not db_url:
        return "SQLite WAL, synchronous=FULL: every commit is fsynced before Pay answers"
    from sqlalchemy import create_engine, text

    engine = create_engine(db_url)
    with engine.connect() as conn:
        fsync, sync = (conn.execute(text(f"SHOW {name}")).scalar_one()
                       for name in ("fsync", "synchronous_commit"))  # fmt: skip
    engine.dispose()
    durable = fsync == "on" and sync != "off"
    verdict = "durable" if durable else "NOT durable: a throwaway test server"
    return f"PostgreSQL fsync={fsync}, synchronous_commit={sync} ({verdict})"


def overspend(db_url: str, callers: int, calls: int) -> tuple[int, int, int]:
    """Race past a small budget; returns (budget, ledger total, overspend in atomic units)."""
    budget = PRICE * (callers * calls // 2)
    with daemon(db_url, total_budget=format_usd(budget)) as target:
        load(target, callers, calls, "overspend")
        total = ledger_total(target)
    return budget, total, max(0, total - budget)
