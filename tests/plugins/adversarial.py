"""Fixtures for the adversarial suite: one real daemon per module, and the figures file.

``tests/plugins/daemon.py`` starts a data dir and a daemon per test; the hostile
tables send dozens of demands at one daemon, so here both live for a whole
module (``module_wallet_home``, ``module_daemon``). Tests that share them must
therefore compare before/after (spent, row counts), never assume a fresh ledger.

When ``WALLETD_FIGURES_FILE`` is set, the session's :data:`tests.adversarial.figures.FIGURES`
are merged into that JSON file at the end, for ``make stress`` to print.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from tests.plugins.daemon import Daemon, WalletHome, init_home
from tests.plugins.lazy import LazyModule
from walletd.domain.money import parse_usd

if TYPE_CHECKING:
    from walletd.db.ledger import Store
    from walletd.service import admin
else:  # SQLAlchemy is imported on first use: registering this plugin stays cheap
    admin = LazyModule("walletd.service.admin")


@contextmanager
def new_wallet_home() -> Iterator[WalletHome]:
    """A fresh data dir made by `walletd init` (cheap KDF), removed afterwards."""
    home = init_home(Path(tempfile.mkdtemp(prefix="wd-adv-", dir="/tmp")))
    try:
        yield home
    finally:
        shutil.rmtree(home.root, ignore_errors=True)


@contextmanager
def running_daemon(home: WalletHome, *extra: str) -> Iterator[Daemon]:
    """`walletd serve` for the block; it must exit 0 on SIGTERM."""
    daemon = Daemon(home, *extra)
    try:
        yield daemon
    finally:
        code = daemon.stop()
    assert code == 0, daemon.logs()


@contextmanager
def operator_store(home: WalletHome) -> Iterator[Store]:
    """The data dir's ledger, opened in-process as `walletd client|budget` would open it.

    Faster than a CLI subprocess (about 1 s each) for setting up many clients;
    the daemon sees the changes on its next call, exactly as with the CLI.
    """
    from walletd.db.engine import make_engines, sqlite_url
    from walletd.db.ledger import Store

    engines = make_engines(sqlite_url(home.data_dir))
    try:
        yield Store(engines)
    finally:
        engines.dispose()


def add_clients(
    home: WalletHome, scopes: dict[str, str], budget: admin.BudgetChange | None = None
) -> dict[str, Path]:
    """Create clients (name -> "pay,read"...); return their 0600 token files.

    Clients that may pay get ``budget`` (default: $1 a day).
    """
    budget = budget or admin.BudgetChange(daily=parse_usd("1"))
    files: dict[str, Path] = {}
    with operator_store(home) as store:
        for name, wanted in scopes.items():
            token = admin.add_client(store, name, frozenset(wanted.split(",")))
            if "pay" in wanted:
                admin.set_budget(store, name, budget)
            files[name] = home.root / f"{name}.token"
            files[name].write_text(token + "\n")
            files[name].chmod(0o600)
    return files


@pytest.fixture(scope="module")
def module_wallet_home() -> Iterator[WalletHome]:
    """One data dir for the whole module."""
    with new_wallet_home() as home:
        yield home


@pytest.fixture(scope="module")
def module_daemon(module_wallet_home: WalletHome) -> Iterator[Daemon]:
    """One `walletd serve` for the whole module (on ``module_wallet_home``)."""
    with running_daemon(module_wallet_home) as daemon:
        yield daemon


def pytest_sessionfinish(session: pytest.Session) -> None:
    """Merge the session's figures into ``$WALLETD_FIGURES_FILE`` when it is set."""
    target = os.environ.get("WALLETD_FIGURES_FILE")
    if not target:
        return
    from tests.adversarial.figures import FIGURES

    if not FIGURES.is_empty():
        FIGURES.save(Path(target))
