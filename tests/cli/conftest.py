"""Fixtures for the CLI tests: a ledger paid through the real service, a daemon, a runner.

``books`` is the report tests' in-process ledger (SQLite, clients alpha and
beta, paid through the real WalletService); ``pay_daemon`` is one real
``walletd serve`` per module with client ``svc`` capped at 0.01 USD a request.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.plugins.daemon import WalletHome, client_daemon
from tests.report.conftest import Books, make_books

PER_REQUEST_USD = "0.01"


def walletd(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run the real ``walletd`` CLI with no WALLETD_* variables but ``env``'s."""
    full = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    full.pop("COLUMNS", None)
    full.update(env)
    return subprocess.run(
        [sys.executable, "-m", "walletd", *args],
        capture_output=True, text=True, env=full, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def books(sqlite_ledger_url: str) -> Iterator[Books]:
    """A SQLite ledger with clients alpha and beta (see tests/report/conftest.py)."""
    made, engines = make_books(sqlite_ledger_url)
    yield made
    engines.dispose()  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def pay_daemon() -> Iterator[tuple[WalletHome, Path]]:
    """A running daemon and the token file of client `svc` (per request 0.01 USD)."""
    with client_daemon("--per-request", PER_REQUEST_USD, "--daily", "5") as found:
        yield found
