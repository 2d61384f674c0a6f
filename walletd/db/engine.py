"""Engines for the ledger: SQLite with WAL and full durability, or any SQLAlchemy URL.

SQLite gets two engines on the same file. The write engine opens every
transaction with ``BEGIN IMMEDIATE``, which takes the database write lock before
anything is read: a Pay's check, reservation and record then run as one
serialised transaction across threads *and* processes, so no budget can be
exceeded by a race. The read engine uses ordinary deferred transactions and,
under WAL, never blocks writers. ``synchronous=FULL`` makes every commit durable
(fsync) before Pay returns a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

BUSY_TIMEOUT_MS = 30_000


@dataclass(frozen=True)
class Engines:
    """The write and read engines of one ledger (the same engine off SQLite)."""

    write: Engine
    read: Engine

    @property
    def is_sqlite(self) -> bool:
        """True when the ledger is a SQLite file."""
        return self.write.dialect.name == "sqlite"

    def dispose(self) -> None:
        """Close every pooled connection."""
        self.write.dispose()
        if self.read is not self.write:
            self.read.dispose()


def sqlite_url(data_dir: Path) -> str:
    """The default ledger URL: ``walletd.db`` inside the data dir."""
    return f"sqlite:///{data_dir / 'walletd.db'}"


def _sqlite_engine(url: str, begin: str) -> Engine:
    engine = create_engine(url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        # Let SQLAlchemy's "begin" event emit BEGIN itself (pysqlite recipe).
        dbapi_conn.isolation_level = None
        cursor = dbapi_conn.cursor()
        for pragma in (
            "journal_mode=WAL",
            "foreign_keys=ON",
            f"busy_timeout={BUSY_TIMEOUT_MS}",
            "synchronous=FULL",
        ):
            cursor.execute(f"PRAGMA {pragma}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        conn.exec_driver_sql(begin)

    return engine


def make_engines(url: str) -> Engines:
    """Build the engines for a ledger URL (SQLite gets the write/read pair)."""
    if make_url(url).get_backend_name() == "sqlite":
        return Engines(_sqlite_engine(url, "BEGIN IMMEDIATE"), _sqlite_engine(url, "BEGIN"))
    engine = create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=10)
    return Engines(engine, engine)
