"""An in-process walletd over a migrated ledger (SQLite and PostgreSQL), and CLI helpers.

``books`` pays through the real WalletService (so decisions and the hash chain
are written exactly as the daemon writes them) and moves payments through the
ledger's own ``move`` (as the reconciler does), without a chain.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field

import pytest

from tests.plugins.daemon import demand_header
from tests.service.conftest import CountingSigner
from walletd.db import migrate, queries
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.domain.audit import AuditResult
from walletd.domain.payment import Caller, PayCommand, PayReceipt
from walletd.domain.policy import Limits
from walletd.domain.report import ReportQuery, SpendReport
from walletd.errors import WalletdError
from walletd.service import admin
from walletd.service.clock import now_ms
from walletd.service.wallet import WalletService

CLIENTS = {"alpha": 20_000, "beta": 8_000}
"""Client name -> daily budget (atomic units)."""


@dataclass
class Books:
    """A ledger with clients alpha and beta, paid through the real service."""

    url: str
    store: Store
    service: WalletService
    callers: dict[str, Caller] = field(default_factory=dict)

    def pay(
        self,
        client: str,
        key: str,
        amount: int = 3000,
        *,
        host: str = "api.example",
        model: str = "llama",
    ) -> PayReceipt | WalletdError:
        """Pay one demand; a refusal is returned, not raised."""
        cmd = PayCommand(
            key, "POST", f"https://{host}/v1/chat", demand_header(str(amount)),
            labels={"model": model},
        )  # fmt: skip
        try:
            return self.service.pay(self.callers[client], cmd)
        except WalletdError as err:
            return err

    def move(self, payment_id: str, target: str, *, settled_tx: str | None = None) -> None:
        """Move a payment as the reconciler would (compare-and-set on its status)."""
        with self.store.read() as tx:
            current = tx.tracked_payment(payment_id).status
        with self.store.write() as tx:
            assert tx.move(payment_id, current, target, now_ms(), "test", {}, settled_tx=settled_tx)

    def verify(self) -> AuditResult:
        with queries.read_only(self.url) as conn:
            return queries.verify_chain(conn)

    def report(self, *group_by: str, **kw: object) -> SpendReport:
        query = ReportQuery(group_by=group_by, **kw)  # type: ignore[arg-type]
        with queries.read_only(self.url) as conn:
            return queries.spend_report(conn, query, now_ms())


def make_books(url: str) -> tuple[Books, object]:
    engines = make_engines(url)
    migrate.upgrade(engines.write)
    store = Store(engines)
    service = WalletService(store, CountingSigner(), Limits())
    books = Books(url, store, service)
    for name, daily in CLIENTS.items():
        token = admin.add_client(store, name, frozenset({"pay", "read"}))
        admin.set_budget(store, name, admin.BudgetChange(daily=daily))
        books.callers[name] = service.authenticate(token)
    return books, engines


@pytest.fixture
def books(ledger_url: str) -> Iterator[Books]:
    """Books on SQLite and on PostgreSQL (``ledger_url`` is parametrized)."""
    made, engines = make_books(ledger_url)
    yield made
    engines.dispose()  # type: ignore[attr-defined]


@pytest.fixture
def sqlite_books(sqlite_ledger_url: str) -> Iterator[Books]:
    """Books on a SQLite file (for the sqlite3 shell)."""
    made, engines = make_books(sqlite_ledger_url)
    yield made
    engines.dispose()  # type: ignore[attr-defined]


def walletd(*args: str, check: bool = False) -> subprocess.CompletedProcess[str]:
    """Run the real ``walletd`` CLI."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    proc = subprocess.run(
        [sys.executable, "-m", "walletd", *args],
        capture_output=True, text=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


def sqlite_path(url: str) -> str:
    return url.removeprefix("sqlite:///")


def sqlite_shell(db_path: str, sql: str) -> str:
    """Run SQL through Debian's ``sqlite3`` shell (Python's module in a subprocess if absent)."""
    if shutil.which("sqlite3"):
        argv = ["sqlite3", db_path, sql]
    else:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("CI=true: the sqlite3 shell is missing (scripts/test installs it)")
        program = (
            "import sqlite3, sys; c = sqlite3.connect(sys.argv[1]); "
            "[print('|'.join(map(str, r))) for r in c.execute(sys.argv[2])]; c.commit()"
        )
        argv = [sys.executable, "-c", program, db_path, sql]
    return subprocess.run(argv, capture_output=True, text=True, check=True, timeout=60).stdout
