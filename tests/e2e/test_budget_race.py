"""Budgets hold to the atomic unit under concurrency across OS processes (and daemons)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from typing import Any

import pytest

from tests.plugins.daemon import Daemon, WalletHome

PRICE = 3000
BUDGET = 32 * PRICE  # exactly 32 payments fit
PROCESSES, THREADS, ATTEMPTS = 2, 8, 4  # 64 attempts for 32 places


def _callers(sockets: list[str], token_file: str, scheme: str) -> list[dict[str, Any]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.e2e.race_worker",
                sockets[p % len(sockets)],
                token_file,
                str(THREADS),
                str(ATTEMPTS),
                f"p{p}",
                scheme,
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        for p in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    return [json.loads(out) for out in outputs]


@pytest.mark.slow
@pytest.mark.parametrize(
    ("daemons", "scheme"), [(1, "eip3009"), (2, "eip3009"), (1, "permit2"), (1, "upto")]
)
def test_accepted_total_equals_the_budget_exactly(
    wallet_home: WalletHome, daemons: int, scheme: str
) -> None:
    token = wallet_home.add_client("racer")
    wallet_home.admin("budget", "set", "racer", "--total", str(BUDGET / 1_000_000))
    running = [Daemon(wallet_home)]
    sockets = [str(wallet_home.socket)]
    if daemons == 2:
        second = wallet_home.root / "second.sock"
        running.append(Daemon(wallet_home, "--socket", str(second)))
        sockets.append(str(second))
    try:
        results = _callers(sockets, str(token), scheme)
    finally:
        codes = [d.stop() for d in running]
    accepted = [a for r in results for a in r["accepted"]]
    refused = sum(r["refused"] for r in results)
    assert sum(a["amount"] for a in accepted) == BUDGET
    assert len(accepted) + refused == PROCESSES * THREADS * ATTEMPTS
    assert len({a["header"] for a in accepted}) == len(accepted)
    with sqlite3.connect(wallet_home.data_dir / "walletd.db") as db:
        (ledger_sum, rows) = db.execute("select sum(amount), count(*) from payments").fetchone()
        kinds = {k for (k,) in db.execute("select distinct kind from payments")}
    assert (ledger_sum, rows) == (BUDGET, len(accepted))
    assert kinds == {{"eip3009": "exact"}.get(scheme, scheme)}
    assert codes == [0] * daemons
