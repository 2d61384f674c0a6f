"""``walletd db``: the ledger's schema (upgrade, current) and online backups."""

from __future__ import annotations

from pathlib import Path

import click

from walletd.cli._common import (
    ledger_options,
    open_store,
    settings_from,
)
from walletd.cli._output import emit, json_option


@click.group()
def db() -> None:
    """Ledger schema: upgrade it, or show where it is."""


@db.command("upgrade")
@ledger_options
@json_option
def db_upgrade(data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool) -> None:
    """Apply every migration up to the newest (safe while the daemon runs)."""
    from walletd.db import migrate

    store = open_store(settings_from(data_dir, config_path, db_url=db_url), check_schema=False)
    migrate.upgrade(store.engines.write)
    revision = migrate.current_revision(store.engines.read)
    store.engines.dispose()
    emit(as_json, {"revision": revision}, [f"database at revision {revision}"])


@db.command("current")
@ledger_options
@json_option
def db_current(data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool) -> None:
    """Show the ledger's schema revision and the code's."""
    from walletd.db import migrate

    store = open_store(settings_from(data_dir, config_path, db_url=db_url), check_schema=False)
    current, head = migrate.current_revision(store.engines.read), migrate.head_revision()
    store.engines.dispose()
    emit(
        as_json,
        {"current": current, "head": head, "up_to_date": current == head},
        [f"current: {current or 'none'}", f"head: {head}"],
    )


@db.command("backup")
@click.argument("dest", type=click.Path(path_type=Path, dir_okay=False))
@ledger_options
@json_option
def db_backup(
    dest: Path, data_dir: Path | None, config_path: Path | None, db_url: str, as_json: bool
) -> None:
    """Snapshot the SQLite ledger into the new file DEST (0600), while the daemon runs.

    Restore: stop the daemon, copy DEST to DIR/walletd.db (mode 0600, owned by
    the daemon's user, with no walletd.db-wal/-shm left beside it), start it.
    PostgreSQL ledgers are backed up with pg_dump instead.
    """
    from walletd.db.backup import backup_sqlite, sqlite_path

    settings = settings_from(data_dir, config_path, db_url=db_url)
    result = backup_sqlite(sqlite_path(settings.ledger_url), dest)
    emit(
        as_json,
        {"backup": str(result.path), "bytes": result.size, "payments": result.payments},
        [f"backup: {result.path} ({result.size} bytes, {result.payments} payments)"],
    )


COMMANDS = (db,)
