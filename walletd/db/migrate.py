"""The Alembic API as walletd uses it: upgrade to head, and tell whether a ledger is current."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine
from sqlalchemy.exc import OperationalError

import walletd
from walletd.errors import SchemaOutOfDateError, StorageError


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


@contextmanager
def _unavailable(engine: Engine) -> Iterator[None]:
    """A database that cannot be opened as one StorageError line, not a driver traceback.

    The common case gets its own words: SQLite cannot create ``walletd.db`` in a
    data directory that does not exist.
    """
    try:
        yield
    except OperationalError as exc:
        url = engine.url
        if url.get_backend_name() == "sqlite" and url.database:
            directory = Path(url.database).parent
            if not directory.is_dir():
                raise StorageError(
                    f"no ledger directory {directory}: check --data-dir (or --db-url), "
                    "or create the wallet with `walletd init`"
                ) from exc
        cause = " ".join(str(exc.orig).split())  # libpq adds hint lines: keep it to one
        raise StorageError(f"ledger unavailable: {cause}") from exc


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at, or None for an empty database."""
    with _unavailable(engine), engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to ``revision`` (the only way the schema is made)."""
    cfg = _config()
    with _unavailable(engine), engine.begin() as conn:
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
