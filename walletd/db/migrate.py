"""The Alembic API as walletd uses it: upgrade to head, and tell whether a ledger is current."""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine

import walletd
from walletd.errors import SchemaOutOfDateError


def migrations_dir() -> Path:
    """The Alembic scripts, inside the package so the wheel carries them.

    In a checkout ``walletd/migrations`` is a link to the top-level ``migrations/``.
    """
    return Path(walletd.__file__).resolve().parent / "migrations"


def _config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    return cfg


def head_revision() -> str:
    """The newest revision the code knows."""
    head = ScriptDirectory.from_config(_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (the only way the schema is made)."""
    cfg = _config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)


def require_current(engine: Engine) -> None:
    """Refuse a database that is behind the code.

    Raises:
        SchemaOutOfDateError: naming the command that fixes it.
    """
    current, head = current_revision(engine), head_revision()
    if current != head:
        raise SchemaOutOfDateError(
            f"database schema is at {current or 'nothing'}, code needs {head}: "
            "run `walletd db upgrade` (or start with `walletd serve --auto-migrate`)"
        )
