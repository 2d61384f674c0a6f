"""Rate limits and scoped budgets hold exactly across `walletd serve` replicas on PostgreSQL.

Three replicas share the database. Two clients race at once, their callers'
threads spread over the replicas: ``rate`` may sign 10 payments per rolling
minute (its own budget has room for all 32 attempts), ``payee`` has a budget
for one payee of 12 payments (its own budget has room for all). Whatever the
interleaving, exactly 10 and exactly 12 are signed: the limits' running totals
are read and written in the Pay transaction, which holds the wallet row lock.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.pg.test_replica_race import Replica, _admin, _callers
from tests.plugins.daemon import PAY_TO, WalletHome

pytestmark = [pytest.mark.postgres, pytest.mark.slow]

PRICE = 3000
RATE, PAYEE_PAYMENTS = 10, 12
REPLICAS = 3


def _prepare(home: WalletHome, db_url: str) -> dict[str, Path]:
    _admin(home, db_url, "db", "upgrade")
    tokens = {}
    for name in ("payee", "rate"):
        token = _admin(home, db_url, "client", "add", name, "--scopes", "pay")
        path = home.root / f"{name}.token"
        path.write_text(token.splitlines()[-1] + "\n")
        path.chmod(0o600)
        tokens[name] = path
        _admin(home, db_url, "budget", "set", name, "--daily", "1")
    _admin(home, db_url, "budget", "set", "rate", "--max-payments", str(RATE), "--per", "minute")
    _admin(home, db_url, "budget", "set", "payee", "--for", f"payee={PAY_TO}",
           "--daily", str(PAYEE_PAYMENTS * PRICE / 1_000_000))  # fmt: skip
    return tokens


def test_replicas_hold_a_rate_limit_and_a_payee_budget_exactly(
    wallet_home: WalletHome, pg_url: str
) -> None:
    tokens = _prepare(wallet_home, pg_url)
    sockets = [wallet_home.root / f"r{i}.sock" for i in range(REPLICAS)]
    replicas = [Replica(wallet_home, s, pg_url) for s in sockets]
    try:
        for r in replicas:
            r.ready()
        results = _callers(sockets, tokens, shared=0, attempts=4)
    finally:
        codes = [r.stop() for r in replicas]
    assert codes == [0] * REPLICAS, replicas[0].logs()
    signed: dict[str, list[dict[str, Any]]] = {}
    for name, runs in results.items():
        assert [e for run in runs for e in run["errors"]] == []
        signed[name] = [r for run in runs for r in run["receipts"]]
        reasons = {r["reason"] for run in runs for r in run["refused"]}
        assert reasons == {"RATE_LIMITED" if name == "rate" else "BUDGET_EXCEEDED"}
    assert len(signed["rate"]) == RATE
    assert len(signed["payee"]) == PAYEE_PAYMENTS
    assert sum(r["amount"] for r in signed["payee"]) == PAYEE_PAYMENTS * PRICE
    assert "ok:" in _admin(wallet_home, pg_url, "audit", "verify")
