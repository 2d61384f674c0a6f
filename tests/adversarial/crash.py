"""The crash loop: SIGKILL the real daemon under concurrent Pay load, restart it, audit the ledger.

Written once for ``tests/adversarial/test_crash.py`` (CI size, both backends) and
``python -m tests.adversarial.stress`` (any size). One :func:`run_crash_loop`:

1. a data dir (``walletd init``, cheap KDF) and a ledger: SQLite in the data
   dir, or a PostgreSQL database (``--db-url``). Three clients, each with a
   tight ``total`` budget, and a tight global ``total``;
2. ``walletd serve``, then the caller processes (``crash_worker``: two threads
   per client paying fresh keys, retrying each key across kills until it is
   answered, and writing down every answer at once);
3. ``kills`` times: wait a seeded random 0.1-0.6 s after the daemon answered
   its first call, ``SIGKILL`` it (by its pid), then, while it is down,
   usually (not always: sometimes the daemon itself must recover a crashed
   SQLite WAL) read what each budget has spent, check it against the limit in
   force and grant a new allowance sized to run out around the next kill
   (so the daemon is mostly paying when killed, and rounds meet a budget's
   edge); restart it and announce it. Every fifth restart is a cold ``python
   -m walletd serve``; the others fork a fresh process from a parent that has
   only done the imports (``crash_zygote``), which then runs the ``walletd
   serve`` CLI from the top: that keeps 20 kills per backend within CI's time;
4. stop the callers (each finishes the key it holds), re-pay every accepted
   key (it must come back ``reused`` with the same header), stop the daemon
   (SIGTERM, exit 0);
5. check: every header a client received has its ledger row (same nonce,
   amount, key and header); every row reached a client; no budget was ever
   exceeded; SQLite ``PRAGMA integrity_check`` is ``ok`` (right after the last
   kill and at the end); the hash chains verify (``walletd audit verify``);
6. with a chain: a few authorizations are submitted on chain as a facilitator
   would (``transferWithAuthorization``), chain time moves past every
   ``validBefore`` + margin, and the reconciler runs until no row is open: the
   submitted ones are ``settled``, the others ``expired``.

:meth:`CrashResult.problems` lists every violated invariant (empty is a pass);
the figures go to :data:`tests.adversarial.figures.FIGURES`.
"""

from __future__ import annotations

import base64
import json
import os
import random
import secrets
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import text
from web3 import Web3

from tests.adversarial.crash_worker import URL, demand_for
from tests.adversarial.figures import FIGURES
from tests.plugins.adversarial import new_wallet_home
from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from walletd.client import WalletClient
from walletd.db import migrate, queries
from walletd.db.engine import make_engines, sqlite_url
from walletd.db.ledger import Store
from walletd.domain import lifecycle
from walletd.domain.networks import DEFAULT_ENABLED
from walletd.domain.payment import PaymentStatus
from walletd.service import admin
from walletd.service.reconcile import DEFAULT_MARGIN_S, Reconciler

ENV_SEED = "WALLETD_CRASH_SEED"
PRICE = 3_500
"""About the mean demand amount (crash_worker draws 1,000-5,999)."""
SETTLE_ON_CHAIN = 6
"""Authorizations submitted on chain before the reconciler runs (the rest expire)."""
TRANSFER_WITH_AUTH = (
    "transferWithAuthorization(address,address,uint256,uint256,uint256,bytes32,bytes)"
)


def seed_from_env() -> int:
    """``$WALLETD_CRASH_SEED``, else a fresh random seed (printed by the run)."""
    raw = os.environ.get(ENV_SEED, "")
    return int(raw) if raw else secrets.randbits(32)


@dataclass(frozen=True)
class CrashPlan:
    """The size and shape of one run."""

    kills: int = 20
    seed: int = 0
    clients: int = 3
    """Clients, each with its own token and budget."""
    processes: int = 2
    """Caller processes; the clients are spread over them."""
    threads: int = 2
    """Caller threads per client (each pays its own keys)."""
    window: tuple[float, float] = (0.1, 0.6)
    """Seconds after a daemon is serving (and has answered) before it is killed."""
    round_payments: int = 40
    """At most this many payments' worth of new allowance per round (all clients): it bounds
    the rows the replay and the reconciler go through afterwards."""
    refill_chance: float = 0.7
    """Rounds in which budgets are checked and refilled while the daemon is down."""
    settle_on_chain: int = SETTLE_ON_CHAIN
    cold_every: int = 5
    """Every n-th restart is a cold ``python -m walletd serve``; the others are forked by a
    :class:`Zygote` (a fresh process, imports done). 1 makes every restart cold."""


@dataclass
class CrashResult:
    """What one run saw; :meth:`problems` is empty when every invariant held."""

    backend: str
    seed: int
    kills: int = 0
    cold_restarts: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)
    """Final answer per key: ACCEPTED or the refusal (with its window)."""
    rows: int = 0
    lost_rows: int = 0
    """Headers a client received with no matching ledger row (must be 0)."""
    unreceived_rows: int = 0
    """Ledger rows no client ever got an answer for (must be 0: every key is retried)."""
    overspend: int = 0
    """Atomic units over a limit, summed over budgets (must be 0)."""
    budget_checks: int = 0
    replay_mismatches: int = 0
    """Accepted keys whose re-pay did not return the same header, reused (must be 0)."""
    retried: int = 0
    """Keys that needed at least one retry because the daemon was killed under them."""
    recovered: int = 0
    """Retried keys answered ``reused``: committed, answer lost in the kill, same header back."""
    rounds: int = 0
    """Daemons that answered (one per round between kills)."""
    budget_rounds: int = 0
    """Rounds in which a budget ran out (some key was refused BUDGET_EXCEEDED)."""
    integrity: list[str] = field(default_factory=list)
    """SQLite integrity_check results (each must be "ok")."""
    audit_ok: bool = True
    reconciled: Counter[str] = field(default_factory=Counter)
    """Final statuses after the reconciler (only settled and expired allowed)."""
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    phases: Counter[str] = field(default_factory=Counter)
    """Seconds spent per phase (where the run's time went)."""

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        t0 = time.monotonic()
        try:
            yield
        finally:
            self.phases[name] += time.monotonic() - t0  # type: ignore[assignment]  # seconds

    @property
    def accepted(self) -> int:
        return self.outcomes["ACCEPTED"]

    @property
    def budget_refusals(self) -> int:
        return sum(n for o, n in self.outcomes.items() if o.startswith("BUDGET_EXCEEDED"))

    def problems(self) -> list[str]:
        """Every invariant that did not hold, in words."""
        out = list(self.errors)
        if self.lost_rows:
            out.append(f"{self.lost_rows} received header(s) have no ledger row")
        if self.unreceived_rows:
            out.append(f"{self.unreceived_rows} ledger row(s) were never received by a client")
        if self.overspend:
            out.append(f"overspend of {self.overspend} atomic units")
        if self.replay_mismatches:
            out.append(f"{self.replay_mismatches} key(s) did not replay the same header")
        out += [f"integrity_check: {r}" for r in self.integrity if r != "ok"]
        if not self.audit_ok:
            out.append("the audit hash chains do not verify")
        still_open = {s: n for s, n in self.reconciled.items() if s in lifecycle.OPEN_STATUSES}
        if still_open:
            out.append(f"rows still open after reconciling: {still_open}")
        odd = set(self.reconciled) - {PaymentStatus.SETTLED, PaymentStatus.EXPIRED}
        if odd:
            out.append(f"unexpected final statuses: {sorted(odd)}")
        return out

    def summary(self) -> str:
        refused = {o: n for o, n in sorted(self.outcomes.items()) if o != "ACCEPTED"}
        return (
            f"crash[{self.backend}] seed={self.seed} kills={self.kills} "
            f"(cold restarts {self.cold_restarts}) "
            f"answers={sum(self.outcomes.values())} accepted={self.accepted} refused={refused} "
            f"rows={self.rows} retried={self.retried} recovered={self.recovered} "
            f"budget_hit_in={self.budget_rounds}/{self.rounds}_rounds "
            f"budget_checks={self.budget_checks} overspend={self.overspend} "
            f"lost_rows={self.lost_rows} unreceived={self.unreceived_rows} "
            f"integrity={self.integrity} audit_ok={self.audit_ok} "
            f"reconciled={dict(self.reconciled)} in {self.seconds:.1f} s "
            f"({', '.join(f'{k} {v:.1f}' for k, v in self.phases.most_common())})"
        )


# ---- the ledger, opened only while it is needed ------------------------------------


@contextmanager
def _store(url: str) -> Iterator[Store]:
    """A Store for a moment; disposed at once, so no harness connection outlives a check."""
    engines = make_engines(url)
    try:
        yield Store(engines)
    finally:
        engines.dispose()


def _rows(url: str) -> list[dict[str, Any]]:
    with _store(url) as store, store.engines.read.connect() as conn:
        found = conn.execute(
            text(
                "select p.id, c.name as client, p.idempotency_key as key, p.amount, p.nonce, "
                "p.header_value as header, p.status, p.payer from payments p "
                "join clients c on c.id = p.client_id"
            )
        )
        return [dict(r._mapping) for r in found]


def _spent(url: str) -> tuple[dict[str, int], int]:
    """Sum of every row per client name, and over all (nothing is released during the run)."""
    with _store(url) as store, store.engines.read.connect() as conn:
        per = conn.execute(
            text(
                "select c.name, coalesce(sum(p.amount), 0) from clients c "
                "left join payments p on p.client_id = c.id group by c.name"
            )
        )
        spent = {str(name): int(total) for name, total in per}
    return spent, sum(spent.values())


def _integrity(data_dir: Path) -> str:
    with sqlite3.connect(data_dir / "walletd.db") as db:
        return "; ".join(str(r[0]) for r in db.execute("PRAGMA integrity_check"))


# ---- the run ------------------------------------------------------------------------


class _Budgets:
    """The limits in force (they only grow), their check against the ledger, new allowances.

    An allowance is sized from the paying rate seen so far, so that it runs out
    shortly before the kill in about half the rounds: the daemon then spends most
    of a round signing and committing payments (where a kill matters most) and
    still meets a budget's edge. A round without a refill starts at the edge.
    """

    FIRST_RATE = 20.0
    """Answers per second assumed before the first round was measured."""

    def __init__(self, url: str, names: list[str], plan: CrashPlan, rng: random.Random) -> None:
        self.url, self.names, self.plan, self.rng = url, names, plan, rng
        self.limits: dict[str | None, int] = {}
        self.excess: dict[str | None, int] = {}
        self.checks = 0
        self.rate = self.FIRST_RATE

    @property
    def overspend(self) -> int:
        """The largest excess ever seen over each budget, summed (atomic units)."""
        return sum(self.excess.values())

    def measured(self, answers: int, seconds: float) -> None:
        """One round's answers (paid or refused: each is one write transaction) per second."""
        if answers > 0 and seconds > 0:
            self.rate = 0.5 * self.rate + 0.5 * answers / seconds

    def refill(self, ahead: float) -> None:
        """Check every budget, then grant allowances for about ``ahead`` seconds of paying."""
        spent, everyone = self._check()
        total = self.rate * ahead * self.rng.uniform(0.4, 1.6)  # payments, all clients
        total = min(total, self.plan.round_payments)
        share = total / len(self.names)
        with _store(self.url) as store:
            for name in self.names:
                allowance = max(1, round(share * self.rng.uniform(0.5, 1.5)))
                self._set(store, name, spent[name] + allowance * PRICE)
            allowance = max(1, round(total * self.rng.uniform(0.6, 1.2)))
            self._set(store, None, everyone + allowance * PRICE)

    def _set(self, store: Store, name: str | None, limit: int) -> None:
        admin.set_budget(store, name, admin.BudgetChange(total=limit))
        self.limits[name] = limit

    def check(self) -> None:
        self._check()

    def _check(self) -> tuple[dict[str, int], int]:
        spent, everyone = _spent(self.url)
        for name, limit in self.limits.items():
            used = everyone if name is None else spent[name]
            self.excess[name] = max(self.excess.get(name, 0), used - limit, 0)
        self.checks += 1
        return spent, everyone


class _Callers:
    """The crash_worker processes and their output files."""

    def __init__(self, root: Path, tokens: dict[str, Path], plan: CrashPlan) -> None:
        self.root = root
        self.gen_file = root / "gen"
        self.stop_file = root / "stop"
        self.outs = [root / f"out-{p}.jsonl" for p in range(plan.processes)]
        self.procs: list[subprocess.Popen[str]] = []
        names = list(tokens)
        for p, out in enumerate(self.outs):
            mine = [[n, str(tokens[n])] for n in names[p :: plan.processes]]
            spec = {
                "gen_file": str(self.gen_file), "stop_file": str(self.stop_file),
                "clients": mine, "out": str(out), "threads": plan.threads, "seed": plan.seed,
            }  # fmt: skip
            argv = [sys.executable, "-m", "tests.adversarial.crash_worker", json.dumps(spec)]
            self.procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))

    def announce(self, gen: int, socket: Path) -> None:
        tmp = self.gen_file.with_suffix(".tmp")
        tmp.write_text(f"{gen} {socket}\n")
        os.replace(tmp, self.gen_file)

    def answers(self) -> int:
        """Answers written so far (a cheap line count)."""
        total = 0
        for out in self.outs:
            try:
                with out.open("rb") as f:
                    total += sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(65536), b""))
            except FileNotFoundError:
                pass
        return total

    def wait_for_answers(self, more_than: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while self.answers() <= more_than and time.monotonic() < deadline:
            if any(p.poll() is not None for p in self.procs):
                return
            time.sleep(0.02)

    def finish(self, timeout: float = 180) -> list[str]:
        """Ask the callers to stop; wait; return their errors."""
        self.stop_file.touch()
        errors = []
        deadline = time.monotonic() + timeout
        for proc in self.procs:
            try:
                out, _ = proc.communicate(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                out, _ = proc.communicate()
                errors.append(f"caller pid {proc.pid} did not stop within {timeout:.0f} s")
            try:
                errors += json.loads(out.strip().splitlines()[-1])["errors"]
            except (IndexError, ValueError, KeyError):
                errors.append(f"caller pid {proc.pid} exited {proc.returncode} without a report")
        return errors

    def kill_all(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()

    def records(self) -> list[dict[str, Any]]:
        docs = []
        for out in self.outs:
            if out.exists():
                docs += [json.loads(line) for line in out.read_text().splitlines() if line]
        return docs


class Zygote:
    """``tests.adversarial.crash_zygote``: forks fresh ``walletd serve`` processes, imports done."""

    def __init__(self, home: WalletHome, extra: tuple[str, ...]) -> None:
        args = [
            "serve", "--data-dir", str(home.data_dir),
            "--passphrase-file", str(home.passphrase_file), *extra,
        ]  # fmt: skip
        argv = [
            sys.executable, "-m", "tests.adversarial.crash_zygote", json.dumps(args),
            str(home.root / "daemon.log"),
        ]  # fmt: skip
        self.proc = subprocess.Popen(
            argv, env=home.env, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )

    def ask(self, command: str) -> str:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        answer = self.proc.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise AssertionError(f"crash_zygote: {command!r} -> {answer!r}")
        return answer

    def close(self) -> None:
        if self.proc.stdin is not None:
            self.proc.stdin.close()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        if self.proc.stdout is not None:
            self.proc.stdout.close()


class _ForkedProc:
    """What :class:`Daemon` uses of ``Popen``, for a daemon forked by the zygote."""

    def __init__(self, zygote: Zygote) -> None:
        self._zygote = zygote
        self.pid = int(zygote.ask("fork"))
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is None:
            answer = self._zygote.ask(f"poll {self.pid}")
            self.returncode = None if answer == "running" else int(answer)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"walletd serve pid {self.pid}", timeout or 0)
            time.sleep(0.01)
        assert self.returncode is not None
        return self.returncode

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:  # not reaped yet, so the pid is still this daemon's
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class ForkedDaemon(Daemon):
    """A ``walletd serve`` forked by the :class:`Zygote` (a fresh process; see crash_zygote)."""

    def __init__(self, home: WalletHome, zygote: Zygote) -> None:
        self.home = home
        self.socket = home.socket
        self.log = (home.root / "daemon.log").open("ab")
        self.proc = _ForkedProc(zygote)  # type: ignore[assignment]
        self._wait_ready(timeout=60)


def _kill(daemon: Daemon) -> None:
    """SIGKILL exactly this daemon (by pid) and reap it."""
    daemon.proc.send_signal(signal.SIGKILL)
    daemon.proc.wait()
    daemon.log.close()


def _prepare(home: WalletHome, url: str, clients: int) -> dict[str, Path]:
    """Migrate (PostgreSQL; `walletd init` made the SQLite one), add the clients."""
    tokens: dict[str, Path] = {}
    engines = make_engines(url)
    try:
        migrate.upgrade(engines.write)
        store = Store(engines)
        for n in range(clients):
            name = f"crash{n}"
            tokens[name] = home.root / f"{name}.token"
            tokens[name].write_text(admin.add_client(store, name, frozenset({"pay"})) + "\n")
            tokens[name].chmod(0o600)
    finally:
        engines.dispose()
    return tokens


def run_crash_loop(
    plan: CrashPlan,
    *,
    db_url: str = "",
    chain: Chain | None = None,
    log: Callable[[str], None] = print,
) -> CrashResult:
    """One run (see the module docstring) in a fresh data dir; never raises on a broken invariant.

    ``db_url`` empty means SQLite in the data dir. Without ``chain`` the reconcile step is skipped.
    """
    backend = "postgres" if db_url else "sqlite"
    result = CrashResult(backend, plan.seed)
    log(f"crash loop [{backend}]: seed={plan.seed} ({ENV_SEED}={plan.seed} to repeat the schedule)")
    started = time.monotonic()
    rng = random.Random(plan.seed)
    records: list[dict[str, Any]] = []
    with new_wallet_home() as home:
        url = db_url or sqlite_url(home.data_dir)
        with result.phase("setup"):
            tokens = _prepare(home, url, plan.clients)
            delays = [rng.uniform(*plan.window) for _ in range(plan.kills)]
            budgets = _Budgets(url, list(tokens), plan, rng)
            budgets.refill(ahead=delays[0] if delays else plan.window[1])
        work = Path(tempfile.mkdtemp(prefix="wd-crash-", dir="/tmp"))
        run = _Loop(home, ("--db-url", db_url) if db_url else (), plan, result)
        try:
            with result.phase("setup"):
                run.start(_Callers(work, tokens, plan))
            run.kill_and_restart(rng, delays, budgets, check_integrity=not db_url)
            records = run.finish()
            if run.serving():
                with result.phase("replay"):
                    result.replay_mismatches = _replay(home.socket, tokens, records)
        finally:
            run.close()
            shutil.rmtree(work, ignore_errors=True)
        with result.phase("audit"):
            budgets.check()
            result.overspend, result.budget_checks = budgets.overspend, budgets.checks
            _audit_ledger(result, url, records)
            if not db_url:
                result.integrity.append(_integrity(home.data_dir))
        if chain is not None and not result.errors:
            with result.phase("reconcile"):
                _reconcile(result, url, chain, plan, rng)
    result.seconds = time.monotonic() - started
    _count(result, records)
    log(result.summary())
    return result


class _Loop:
    """The daemon and the callers, through the kills."""

    def __init__(
        self, home: WalletHome, extra: tuple[str, ...], plan: CrashPlan, result: CrashResult
    ) -> None:
        self.home, self.extra, self.plan, self.result = home, extra, plan, result
        self.daemon: Daemon | None = None
        self.zygote = Zygote(home, extra) if plan.cold_every != 1 else None
        self.callers: _Callers | None = None
        self.gen = 0
        self.announced_at = 0.0
        self.answered_at = 0

    def start(self, callers: _Callers) -> None:
        self.daemon = Daemon(self.home, *self.extra)
        self.callers = callers
        self._announce()
        callers.wait_for_answers(0, timeout=60)

    def serving(self) -> bool:
        return self.daemon is not None and self.daemon.proc.poll() is None

    def _announce(self) -> None:
        assert self.callers is not None
        self.gen += 1
        self.callers.announce(self.gen, self.home.socket)
        self.announced_at = time.monotonic()
        self.answered_at = self.callers.answers()

    def kill_and_restart(
        self, rng: random.Random, delays: list[float], budgets: _Budgets, *, check_integrity: bool
    ) -> None:
        """Kill after each of ``delays`` (seconds after load reached the daemon), restart."""
        result, plan, callers = self.result, self.plan, self.callers
        assert callers is not None
        for n, delay in enumerate(delays):
            with result.phase("under load"):
                time.sleep(delay)
            if not self.serving():
                assert self.daemon is not None
                result.errors.append(f"the daemon died by itself: {self.daemon.logs()[-2000:]}")
                return
            assert self.daemon is not None
            _kill(self.daemon)
            served = time.monotonic() - self.announced_at
            self.daemon = None
            result.kills += 1
            seen = callers.answers()
            budgets.measured(seen - self.answered_at, served)
            if rng.random() < plan.refill_chance:
                with result.phase("budget check"):
                    budgets.refill(ahead=delays[n + 1] if n + 1 < len(delays) else delay)
            if check_integrity and result.kills == plan.kills:
                result.integrity.append(_integrity(self.home.data_dir))  # the crashed file
            if not self._restart():
                return
            self._announce()
            with result.phase("until load"):
                callers.wait_for_answers(seen, timeout=30)  # load reaches the new daemon

    def _restart(self) -> bool:
        result = self.result
        cold = self.zygote is None or result.kills % self.plan.cold_every == 0
        try:
            with result.phase("restart cold" if cold else "restart forked"):
                if cold or self.zygote is None:
                    self.daemon = Daemon(self.home, *self.extra)
                    result.cold_restarts += 1
                else:
                    self.daemon = ForkedDaemon(self.home, self.zygote)
        except AssertionError as exc:  # it did not come back: that is the finding
            result.errors.append(f"restart {result.kills} failed: {str(exc)[-2000:]}")
            return False
        return True

    def finish(self) -> list[dict[str, Any]]:
        """Stop the callers (they finish their keys if a daemon serves); their answers."""
        assert self.callers is not None
        with self.result.phase("callers finish"):
            if self.serving():
                self.result.errors += self.callers.finish()
            else:  # nobody to answer them: their last keys stay unanswered
                self.callers.kill_all()
        return self.callers.records()

    def close(self) -> None:
        if self.callers is not None:
            self.callers.kill_all()
        if self.daemon is not None and self.daemon.stop() != 0:
            self.result.errors.append(f"walletd serve did not exit 0: {self.daemon.logs()[-2000:]}")
        if self.zygote is not None:
            self.zygote.close()


def _replay(socket: Path, tokens: dict[str, Path], records: list[dict[str, Any]]) -> int:
    """Re-pay every accepted key: it must return reused, with the same id and header."""
    mismatches = 0
    clients = {n: WalletClient(socket=socket, token_file=t, timeout=60) for n, t in tokens.items()}
    try:
        for r in records:
            if r["outcome"] != "ACCEPTED":
                continue
            demand = demand_for(r["amount"])
            again = clients[r["client"]].pay(r["key"], "POST", URL, payment_required=demand)
            if (again.reused, again.payment_id, again.header_value) != (True, r["id"], r["header"]):
                mismatches += 1
    finally:
        for c in clients.values():
            c.close()
    return mismatches


def _authorization(header: str) -> dict[str, Any]:
    doc = json.loads(base64.b64decode(header))
    auth: dict[str, Any] = doc["payload"]["authorization"]
    return {**auth, "signature": doc["payload"]["signature"]}


def _audit_ledger(result: CrashResult, url: str, records: list[dict[str, Any]]) -> None:
    """Received headers against ledger rows, both ways; the hash chains."""
    rows = _rows(url)
    result.rows = len(rows)
    by_nonce = {r["nonce"].lower(): r for r in rows}
    received: set[tuple[str, str]] = set()
    for r in records:
        outcome = r["outcome"]
        if outcome == "GAVE_UP" or outcome.startswith("ERROR:"):
            result.errors.append(f"{r['key']}: {outcome} {r.get('message', '')}")
        if outcome != "ACCEPTED":
            continue
        received.add((r["client"], r["key"]))
        auth = _authorization(r["header"])
        row = by_nonce.get(auth["nonce"].lower())
        if row is None or (row["amount"], row["key"], row["client"], row["header"]) != (
            int(auth["value"]), r["key"], r["client"], r["header"],
        ) or row["amount"] != r["amount"]:  # fmt: skip
            result.lost_rows += 1
    result.unreceived_rows = sum((r["client"], r["key"]) not in received for r in rows)
    with queries.read_only(url) as conn:
        result.audit_ok = queries.verify_chain(conn).ok


def _reconcile(
    result: CrashResult, url: str, chain: Chain, plan: CrashPlan, rng: random.Random
) -> None:
    """Settle a few authorizations on chain, let the rest expire, reconcile until none is open."""
    from walletd.chain.reader import Web3ChainReader

    rows = _rows(url)
    if not rows:
        return
    chosen = rng.sample(rows, min(plan.settle_on_chain, len(rows)))
    payer = rows[0]["payer"]
    chain.mint(payer, sum(r["amount"] for r in chosen))
    facilitator = chain.dev_account(1)
    submit = chain.usdc.get_function_by_signature(TRANSFER_WITH_AUTH)
    for row in chosen:
        a = _authorization(row["header"])
        fn = submit(
            Web3.to_checksum_address(a["from"]), Web3.to_checksum_address(a["to"]),
            int(a["value"]), int(a["validAfter"]), int(a["validBefore"]),
            bytes.fromhex(a["nonce"][2:]), bytes.fromhex(a["signature"][2:]),
        )  # fmt: skip
        receipt = chain.transact(facilitator, fn)
        if receipt["status"] != 1:
            result.errors.append(f"transferWithAuthorization of {row['id']} reverted")
    latest = max(_authorization(r["header"])["validBefore"] for r in rows)
    chain.increase_time(max(1, int(latest) + DEFAULT_MARGIN_S + 1 - chain.timestamp()))
    reader = Web3ChainReader.open(chain.rpc_url, DEFAULT_ENABLED)
    with _store(url) as store:
        reconciler = Reconciler(store, reader, DEFAULT_MARGIN_S)
        for _ in range(len(rows) // 100 + 10):
            if not reconciler.run_once().moved:
                break
    final = Counter(r["status"] for r in _rows(url))
    result.reconciled = final
    if final[PaymentStatus.SETTLED] != len(chosen):
        result.errors.append(
            f"{len(chosen)} authorizations were used on chain but {final['settled']} are settled"
        )


def _count(result: CrashResult, records: list[dict[str, Any]]) -> None:
    result.rounds = len({r["gen"] for r in records})
    result.budget_rounds = len(
        {r["gen"] for r in records if r["outcome"].startswith("BUDGET_EXCEEDED")}
    )
    for r in records:
        result.outcomes[r["outcome"]] += 1
        if r["retries"]:
            result.retried += 1
            result.recovered += bool(r.get("reused"))
        FIGURES.demand(f"crash/{result.backend}", _figure_outcome(r["outcome"]))
    survived = 0 if result.problems() else result.kills  # a kill counts once all checks held
    FIGURES.add(
        signed=result.rows, overspend=result.overspend, lost_rows=result.lost_rows,
        crashes=survived,
    )  # fmt: skip


def _figure_outcome(outcome: str) -> str:
    return (
        "UNEXPECTED:" + outcome if outcome == "GAVE_UP" or outcome.startswith("ERROR:") else outcome
    )
