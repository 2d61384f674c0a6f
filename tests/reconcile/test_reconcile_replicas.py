"""Several reconciler replicas over the same open payments: each payment moves exactly once.

Four worker processes (``reconcile_worker``), each with its own engines, all
load the same open payments and then race to move every one of them (a
barrier makes them start deciding together). The ledger's ``move`` is a
compare-and-set on the status under the writers' lock, so whatever the
interleaving: one terminal event per payment, budgets released once, the
replicas' move counts add up to the number of payments, and the hash chain
does not fork. Runs on SQLite and PostgreSQL (``ledger_url``).
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.plugins.daemon import demand_header
from tests.reconcile.reconcile_worker import outcome
from tests.service.conftest import CountingSigner
from walletd.db import migrate, queries, tables
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain import lifecycle
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.service import admin
from walletd.service.wallet import WalletService

REPLICAS = 4
PAYMENTS = 45
URL = "http://127.0.0.1:9/v1/chat"


def _open_payments(store: Store) -> dict[str, tuple[str, int]]:
    """Sign PAYMENTS authorizations (every third one reported refused); id -> (nonce, amount)."""
    token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
    admin.set_budget(store, "svc", admin.BudgetChange(daily=10**12))
    service = WalletService(store, CountingSigner(), Limits())
    caller = service.authenticate(token)
    made: dict[str, tuple[str, int]] = {}
    for i in range(PAYMENTS):
        header = demand_header(str(1000 + i), url=URL)
        receipt = service.pay(caller, PayCommand(f"k{i}", "POST", URL, header))
        if i % 3 == 0:
            service.report_outcome(caller, receipt.payment_id, 402, "")
        with store.read() as tx:
            made[receipt.payment_id] = (tx.tracked_payment(receipt.payment_id).nonce, 1000 + i)
    return made


def _race(ledger_url: str) -> list[dict[str, Any]]:
    """Run the replicas at once; their JSON reports."""
    ready = Path(tempfile.mkdtemp(prefix="wd-race-", dir="/tmp"))
    argv = [sys.executable, "-m", "tests.reconcile.reconcile_worker", ledger_url, str(ready),
            str(REPLICAS)]  # fmt: skip
    procs = [
        subprocess.Popen([*argv, str(i)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for i in range(REPLICAS)
    ]
    reports = []
    for proc in procs:
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        reports.append(json.loads(out.splitlines()[-1]))
    return reports


def _terminal_events(store: Store) -> Counter[str]:
    """How many events moved each payment into a final status."""
    final = [s for s, targets in lifecycle.TRANSITIONS.items() if not targets]
    with store.connection() as conn:
        rows = conn.execute(
            select(tables.PaymentEvent.payment_id, func.count())
            .where(tables.PaymentEvent.status.in_(final))
            .group_by(tables.PaymentEvent.payment_id)
        ).all()
    return Counter({str(pid): int(n) for pid, n in rows})


@pytest.mark.slow
@pytest.mark.timeout(360)
def test_replicas_reconcile_each_payment_exactly_once(ledger_url: str) -> None:
    engines = make_engines(ledger_url)
    try:
        migrate.upgrade(engines.write)
        store = Store(engines)
        made = _open_payments(store)
        reports = _race(ledger_url)
        assert [r["errors"] for r in reports] == [[]] * REPLICAS
        moved: Counter[str] = Counter()
        for report in reports:
            moved.update(report["moved"])
        expected = Counter(outcome(nonce) for nonce, _ in made.values())
        assert moved == expected and sum(moved.values()) == PAYMENTS
        assert _terminal_events(store) == Counter(dict.fromkeys(made, 1))

        with store.read() as tx:
            rows = {pid: tx.tracked_payment(pid) for pid in made}
            assert tx.outstanding() == (0, 0)
        assert {pid: row.status for pid, row in rows.items()} == {
            pid: outcome(nonce) for pid, (nonce, _) in made.items()
        }
        assert all(row.released == (row.status != "settled") for row in rows.values())
        with store.connection() as conn:
            audit = queries.verify_chain(conn)
        assert audit.ok, audit.first_break
        settled = sum(amount for nonce, amount in made.values() if outcome(nonce) == "settled")
        with store.read() as tx:
            assert tx.spent(None, 0)["total"] == settled
    finally:
        engines.dispose()
