"""Three `walletd serve` replicas on one PostgreSQL: budgets and idempotency keys hold exactly.

The replicas share the data dir's key and the database, each on its own socket.
Sixteen callers (4 processes x 4 threads, the threads spread over the
replicas) pay for two clients. Each client's own cap (20 payments) is below the
global budget (32) but the two together exceed it, so the binding limit is a sum
over both clients and all replicas: whatever the interleaving, the accepted
total is exactly the global budget (if it stopped short, both clients would
have hit their caps, 40 > 32). Every thread starts by paying the same two keys
per client, so the same key reaches all replicas at once; a client's first
payments are those keys, and the other client alone cannot exhaust the global
budget, so they are always accepted.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.plugins.daemon import Daemon, WalletHome

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PRICE = 3000
BUDGET = 32 * PRICE
"""The global total: exactly 32 payments fit, across both clients."""
CLIENT_CAPS = {"racer-a": 20 * PRICE, "racer-b": 20 * PRICE}
REPLICAS, PROCESSES, THREADS, ATTEMPTS, SHARED = 3, 4, 4, 5, 2


class Replica(Daemon):
    """`walletd serve` on its own socket; started without waiting, so replicas boot together."""

    def __init__(self, home: WalletHome, socket: Path, db_url: str) -> None:
        self.socket = socket
        self._booting = True
        super().__init__(home, "--socket", str(socket), "--db-url", db_url)

    def _wait_ready(self, timeout: float = 120) -> None:
        if self._booting:  # called by Daemon.__init__: defer to ready()
            self._booting = False
            return
        from walletd.client import DaemonUnavailableError, WalletClient

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise AssertionError(f"replica exited {self.proc.returncode}: {self.logs()}")
            if self.socket.exists():
                try:  # the socket file exists a moment before it accepts
                    probe = WalletClient(socket=self.socket, token="probe", timeout=2)
                except DaemonUnavailableError:
                    probe = None
                if probe is not None:
                    with probe as c:
                        if c.health():
                            return
            time.sleep(0.05)
        raise AssertionError(f"replica not ready: {self.logs()}")

    def ready(self) -> None:
        """Wait until this replica answers health with SERVING."""
        self._wait_ready()


def _admin(home: WalletHome, db_url: str, *args: str) -> str:
    return home.run(*args, "--data-dir", str(home.data_dir), "--db-url", db_url).stdout


def _prepare(home: WalletHome, db_url: str) -> dict[str, Path]:
    """Migrate the database, add both clients with their caps, set the global budget."""
    _admin(home, db_url, "db", "upgrade")
    tokens = {}
    for name, cap in CLIENT_CAPS.items():
        token = _admin(home, db_url, "client", "add", name, "--scopes", "pay,read")
        path = home.root / f"{name}.token"
        path.write_text(token.splitlines()[-1] + "\n")
        path.chmod(0o600)
        tokens[name] = path
        _admin(home, db_url, "budget", "set", name, "--total", str(cap / 1_000_000))
    _admin(home, db_url, "budget", "set", "--global", "--total", str(BUDGET / 1_000_000))
    return tokens


def _callers(
    sockets: list[Path], tokens: dict[str, Path], shared: int = SHARED, attempts: int = ATTEMPTS
) -> dict[str, list[dict[str, Any]]]:
    """Run the caller processes; results per client name."""
    names = sorted(tokens)
    procs = []
    for p in range(PROCESSES):
        name = names[p % len(names)]
        argv = [
            sys.executable, "-m", "tests.pg.replica_worker", ",".join(map(str, sockets)),
            str(tokens[name]), str(THREADS), str(attempts), f"p{p}", str(shared), str(p),
        ]  # fmt: skip
        procs.append((name, subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)))
    results: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for name, proc in procs:
        out = proc.communicate(timeout=600)[0]
        assert proc.returncode == 0, out
        results[name].append(json.loads(out))
    return results


def _ledger(db_url: str) -> list[dict[str, Any]]:
    engine = create_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(
                text(
                    "select c.name, p.idempotency_key, p.id, p.amount, p.header_value, p.nonce "
                    "from payments p join clients c on c.id = p.client_id"
                )
            )
            return [dict(r._mapping) for r in rows]
    finally:
        engine.dispose()


def test_three_replicas_hold_a_shared_budget_exactly(wallet_home: WalletHome, pg_url: str) -> None:
    tokens = _prepare(wallet_home, pg_url)
    sockets = [wallet_home.root / f"r{i}.sock" for i in range(REPLICAS)]
    replicas = [Replica(wallet_home, s, pg_url) for s in sockets]
    try:
        for r in replicas:
            r.ready()
        results = _callers(sockets, tokens)
    finally:
        codes = [r.stop() for r in replicas]
    assert codes == [0] * REPLICAS, replicas[0].logs()

    runs = [run for per_client in results.values() for run in per_client]
    assert [e for run in runs for e in run["errors"]] == []
    receipts = [r for run in runs for r in run["receipts"]]
    refused = [r for run in runs for r in run["refused"]]
    assert len(receipts) + len(refused) == PROCESSES * THREADS * (SHARED + ATTEMPTS)
    served = {r["socket"] for r in receipts + refused}
    assert served == {str(s) for s in sockets}, "every replica served callers"

    # One payment per (client, key); the accepted total is the global budget exactly.
    payments: dict[str, dict[str, Any]] = {}
    for name, per_client in results.items():
        for r in (r for run in per_client for r in run["receipts"]):
            payments.setdefault(r["id"], {"client": name, **r})
    assert sum(p["amount"] for p in payments.values()) == BUDGET
    for name, cap in CLIENT_CAPS.items():
        assert sum(p["amount"] for p in payments.values() if p["client"] == name) <= cap

    # The shared keys: every caller on every replica got the same authorization, signed once.
    for name, per_client in results.items():
        for j in range(SHARED):
            got = [r for run in per_client for r in run["receipts"] if r["key"] == f"shared-{j}"]
            assert len(got) == (PROCESSES // 2) * THREADS, (name, j)
            assert len({(r["id"], r["header"]) for r in got}) == 1, (name, j)
            assert sum(not r["reused"] for r in got) == 1, (name, j)
            assert len({r["socket"] for r in got}) == REPLICAS, (name, j)

    # The ledger holds exactly what was signed and handed out, once per key.
    rows = _ledger(pg_url)
    assert len({(r["name"], r["idempotency_key"]) for r in rows}) == len(rows)
    assert len({r["nonce"] for r in rows}) == len(rows)
    assert sum(r["amount"] for r in rows) == BUDGET
    assert {r["id"]: r["header_value"] for r in rows} == {
        pid: p["header"] for pid, p in payments.items()
    }
