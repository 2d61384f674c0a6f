"""PostgreSQL for the tests: a fresh database per test on the server in WALLETD_TEST_PG_URL.

``scripts/test`` starts a throwaway cluster (``scripts/pg start``) and exports
the URL. Without it, PostgreSQL tests are skipped with the reason, except under
``CI=true``, where a missing server is a failure: CI must never go green by
silently testing one backend.

``ledger_url`` is the fixture the database-facing tests take: it is
parametrized over both backends, so the same test body runs on SQLite and on
PostgreSQL.
"""

from __future__ import annotations

import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest

PG_ENV = "WALLETD_TEST_PG_URL"
BACKENDS = ("sqlite", pytest.param("postgres", marks=pytest.mark.postgres))


def libpq_url(sqlalchemy_url: str) -> str:
    """The URL psycopg itself accepts (no ``+driver`` part)."""
    scheme, sep, rest = sqlalchemy_url.partition("://")
    return scheme.split("+", 1)[0] + sep + rest


def with_database(sqlalchemy_url: str, name: str) -> str:
    """The same server URL pointing at database ``name``."""
    from sqlalchemy.engine import make_url

    return make_url(sqlalchemy_url).set(database=name).render_as_string(hide_password=False)


def _unavailable(reason: str) -> None:
    """Fail under CI=true (PostgreSQL must be tested there), skip with the reason elsewhere."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true requires PostgreSQL tests to run; {reason}")
    pytest.skip(reason, allow_module_level=True)


def require_psycopg() -> ModuleType:
    """The psycopg module, or a skip (a failure under CI) naming the extra that installs it."""
    try:
        import psycopg
    except ImportError:
        _unavailable("psycopg is not installed: pip install -e '.[postgres]'")
    return psycopg


@pytest.fixture(scope="session")
def pg_server_url() -> str:
    """The admin URL of the test server; fails under CI=true, else skips, when unset."""
    require_psycopg()
    url = os.environ.get(PG_ENV, "")
    if not url:
        _unavailable(
            f"{PG_ENV} is not set: `export $(scripts/pg start)` first, or run scripts/test"
        )
    return url


def _admin(server_url: str, sql: str) -> None:
    psycopg = require_psycopg()
    with psycopg.connect(libpq_url(server_url), autocommit=True, connect_timeout=10) as conn:
        conn.execute(sql)


@pytest.fixture
def pg_url(pg_server_url: str) -> Iterator[str]:
    """A SQLAlchemy URL of a new, empty database, dropped (with its sessions) after the test."""
    name = f"wd_{secrets.token_hex(6)}"
    _admin(pg_server_url, f'CREATE DATABASE "{name}"')
    try:
        yield with_database(pg_server_url, name)
    finally:
        _admin(pg_server_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def sqlite_ledger_url() -> Iterator[str]:
    """A SQLAlchemy URL of a new SQLite file in a short temp dir."""
    import shutil

    from walletd.db.engine import sqlite_url

    root = Path(tempfile.mkdtemp(prefix="wd-db-", dir="/tmp"))
    yield sqlite_url(root)
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(params=BACKENDS)
def ledger_url(request: pytest.FixtureRequest) -> str:
    """An empty ledger database on each backend in turn (test ids ``[sqlite]``/``[postgres]``)."""
    fixture = "pg_url" if request.param == "postgres" else "sqlite_ledger_url"
    return str(request.getfixturevalue(fixture))
