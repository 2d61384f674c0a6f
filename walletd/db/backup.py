"""Online snapshots of a SQLite ledger, safe while the daemon is paying.

SQLite's backup API copies the database page by page inside one read
transaction; under WAL a reader never blocks the daemon's writers and sees one
committed state, so the copy is consistent without stopping anything. The copy
is written to a new 0600 file next to the destination, switched out of WAL (a
single self-contained file), checked with ``PRAGMA integrity_check``, fsynced,
and only then linked to its name, which must not exist: a backup never
overwrites anything, least of all an older backup.

PostgreSQL ledgers are backed up with the server's own tool (``pg_dump``).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import sqlite3
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from walletd.db.engine import BUSY_TIMEOUT_MS, redacted
from walletd.errors import InvalidRequestError, StorageError


@dataclass(frozen=True)
class BackupResult:
    """What was written: the file, its size and how many payments it holds."""

    path: Path
    size: int
    payments: int


def sqlite_path(ledger_url: str) -> Path:
    """The file of a SQLite ledger URL; InvalidRequestError (naming pg_dump) for any other."""
    url = make_url(ledger_url)
    if url.get_backend_name() != "sqlite":
        raise InvalidRequestError(
            f"`walletd db backup` copies SQLite ledgers; this ledger is {url.get_backend_name()} "
            f"({redacted(ledger_url)}): back it up with pg_dump, e.g. "
            "`pg_dump --format=custom --file walletd.dump DBNAME` (restore with pg_restore)"
        )
    if not url.database or url.database == ":memory:":
        raise InvalidRequestError("the ledger is not a file")
    return Path(url.database)


def backup_sqlite(source: Path, dest: Path) -> BackupResult:
    """Snapshot the ledger at ``source`` into the new file ``dest`` (see the module docstring).

    Raises:
        InvalidRequestError: ``dest`` exists, or its directory does not.
        StorageError: the ledger cannot be read, or the copy is not intact.
    """
    if not source.is_file():
        raise StorageError(f"no ledger at {source}")
    if dest.exists() or dest.is_symlink():
        raise InvalidRequestError(f"{dest} exists; refusing to overwrite it")
    if not dest.parent.is_dir():
        raise InvalidRequestError(f"directory {dest.parent} does not exist")
    tmp = dest.parent / f".{dest.name}.{secrets.token_hex(8)}.tmp"
    try:
        os.close(os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o600))
        payments = _copy(source, tmp)
        _fsync(tmp)
        os.link(tmp, dest)  # atomic and no-clobber
        _fsync_dir(dest.parent)
    except FileExistsError as exc:
        raise InvalidRequestError(f"{dest} exists; refusing to overwrite it") from exc
    except (OSError, sqlite3.Error) as exc:
        raise StorageError(f"backup failed: {exc}") from exc
    finally:
        for leftover in (tmp, Path(f"{tmp}-journal"), Path(f"{tmp}-wal"), Path(f"{tmp}-shm")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()
    return BackupResult(dest, dest.stat().st_size, payments)


def _copy(source: Path, tmp: Path) -> int:
    """Copy in one step (one read transaction), make the copy standalone, check it."""
    src = sqlite3.connect(source, timeout=BUSY_TIMEOUT_MS / 1000)
    try:
        src.execute("PRAGMA query_only = ON")
        dst = sqlite3.connect(tmp)
        try:
            src.backup(dst)
            dst.execute("PRAGMA journal_mode = DELETE")
            (verdict,) = dst.execute("PRAGMA integrity_check").fetchone()
            if verdict != "ok":
                raise StorageError(f"the copy failed its integrity check: {verdict}")
            (payments,) = dst.execute("select count(*) from payments").fetchone()
        finally:
            dst.close()
    finally:
        src.close()
    return int(payments)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
