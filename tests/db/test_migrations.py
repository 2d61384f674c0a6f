"""The schema comes only from Alembic, and matches the models exactly (SQLite and PostgreSQL)."""

from __future__ import annotations

import sqlite3

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from walletd.db import migrate
from walletd.db.engine import BUSY_TIMEOUT_MS, make_engines
from walletd.db.tables import metadata
from walletd.errors import SchemaOutOfDateError


@pytest.fixture
def engines(ledger_url: str):
    """Engines on an empty database, once per backend (``ledger_url`` is parametrized)."""
    made = make_engines(ledger_url)
    yield made
    made.dispose()


@pytest.fixture
def sqlite_engines(sqlite_ledger_url: str):
    """Engines on an empty SQLite file, for the SQLite-only checks."""
    made = make_engines(sqlite_ledger_url)
    yield made
    made.dispose()


def test_migrations_have_a_single_head() -> None:
    assert len(ScriptDirectory.from_config(migrate._config()).get_heads()) == 1


def test_upgraded_schema_matches_the_models(engines) -> None:
    migrate.upgrade(engines.write)
    with engines.read.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diff == []


def test_downgrade_to_base_and_up_again_keeps_working(engines) -> None:
    migrate.upgrade(engines.write)
    cfg = migrate._config()
    with engines.write.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "base")
    assert migrate.current_revision(engines.read) is None
    with pytest.raises(SchemaOutOfDateError, match="walletd db upgrade"):
        migrate.require_current(engines.read)
    migrate.upgrade(engines.write)
    migrate.require_current(engines.read)


def test_sqlite_ledger_uses_wal_foreign_keys_busy_timeout_and_full_sync(sqlite_engines) -> None:
    engines = sqlite_engines
    migrate.upgrade(engines.write)
    with engines.write.connect() as conn:
        pragmas = {
            name: conn.exec_driver_sql(f"PRAGMA {name}").scalar()
            for name in ("journal_mode", "foreign_keys", "busy_timeout", "synchronous")
        }
    assert pragmas == {"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": BUSY_TIMEOUT_MS,
                       "synchronous": 2}  # fmt: skip


def test_an_empty_database_is_refused_until_upgraded(engines) -> None:
    with pytest.raises(SchemaOutOfDateError):
        migrate.require_current(engines.read)


def test_ledger_rejects_a_payment_for_an_unknown_client(sqlite_engines) -> None:
    engines = sqlite_engines
    migrate.upgrade(engines.write)
    url = engines.write.url.database
    with sqlite3.connect(url) as db:
        db.execute("PRAGMA foreign_keys=ON")
        with pytest.raises(sqlite3.IntegrityError):
            db.execute(
                "insert into payment_events (payment_id, at_ms, status, cause, data) "
                "values ('nope', 0, 'signed', 'x', '{}')"
            )
