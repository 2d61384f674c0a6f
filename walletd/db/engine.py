"""Engines for the ledger: SQLite with WAL and full durability, or any SQLAlchemy URL.

SQLite gets two engines on the same file. The write engine opens every
transaction with ``BEGIN IMMEDIATE``, which takes the database write lock before
anything is read: a Pay's check, reservation and record then run as one
serialised transaction across threads *and* processes, so no budget can be
exceeded by a race. The read engine uses ordinary deferred transactions and,
under WAL, never blocks writers. ``synchronous=FULL`` makes every commit durable
(fsync) before Pay returns a signature.

PostgreSQL gets one engine pinned to READ COMMITTED, whatever the server's
default: Pay's first statement locks the single ``wallet_state`` row (``SELECT
... FOR UPDATE``), so every Pay on every replica queues on that row, and under
READ COMMITTED each later statement takes a fresh snapshot, so the window sums
read after the lock include every payment committed by the previous holder.
Under REPEATABLE READ the snapshot would be taken before the lock wait and the
sums would be stale (the budget check passes on a spent budget; tests/pg shows
it), which is why the level is not left to the server. Lock and idle timeouts
make a stuck peer fail the others closed (StorageError) instead of hanging them;
a refused connection is a StorageError too, so a daemon whose database is down
refuses with one line, not a traceback.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import ArgumentError, NoSuchModuleError

# The default SQLite URL is a setting (config); it stays importable from here too.
from walletd.config import sqlite_url as sqlite_url
from walletd.errors import InvalidRequestError, StorageError

BUSY_TIMEOUT_MS = 5_000
"""How long a write waits for SQLite's lock before it fails closed (STORAGE_BUSY).

Half the client's default 10 s deadline: a caller behind a stuck writer hears
STORAGE_BUSY instead of a bare timeout, and its Pay gives up before the caller does.
"""

PG_ISOLATION = "READ COMMITTED"
"""The level Pay's row-lock-then-sum proof needs (see the module docstring)."""
PG_LOCK_TIMEOUT_MS = BUSY_TIMEOUT_MS
"""How long a Pay waits for the wallet_state row before it fails closed (STORAGE_BUSY)."""
PG_IDLE_IN_TRANSACTION_MS = 60_000
"""A session holding a transaction open this long is ended by the server, releasing its locks."""
PG_CONNECT_TIMEOUT_S = 10
PG_POOL_SIZE = 16
"""One connection per gRPC worker thread (``build_server``'s max_workers)."""


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


def _sqlite_engine(url: str, begin: str) -> Engine:
    # As many pooled connections as gRPC workers: past the pool size every
    # checkout would open (and on return close) a fresh SQLite connection.
    engine = create_engine(
        url, connect_args={"timeout": BUSY_TIMEOUT_MS / 1000}, pool_size=PG_POOL_SIZE
    )

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


def url_problems(url: str, name: str = "db.url") -> list[str]:
    """Why ``url`` cannot be a ledger URL (``config check``, ``--db-url``); empty when it can."""
    try:
        backend = make_url(url).get_backend_name()
    except ArgumentError:
        return [
            f"{name} is not a database URL "
            "(e.g. sqlite:////var/lib/walletd/walletd.db or postgresql+psycopg://user@host/db)"
        ]
    if backend not in ("sqlite", "postgresql"):
        return [f"{name}: walletd supports sqlite and postgresql, not {backend}"]
    return []


def redacted(url: str) -> str:
    """``url`` with any password replaced by ``***`` (for logs and ``config check``)."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:  # an unparsable URL is shown as a placeholder, never echoed
        return "<unparsable database URL>"


def _postgres_url(url: URL) -> URL:
    """Plain ``postgresql://`` means psycopg 3 (the driver walletd ships), not psycopg2."""
    if url.drivername in ("postgresql", "postgres"):
        return url.set(drivername="postgresql+psycopg")
    return url


def _postgres_engine(url: URL) -> Engine:
    timeouts = (
        f"-c lock_timeout={PG_LOCK_TIMEOUT_MS} "
        f"-c idle_in_transaction_session_timeout={PG_IDLE_IN_TRANSACTION_MS}"
    )
    try:
        engine = create_engine(
            url,
            isolation_level=PG_ISOLATION,
            pool_pre_ping=True,
            pool_size=PG_POOL_SIZE,
            max_overflow=4,
            connect_args={
                "connect_timeout": PG_CONNECT_TIMEOUT_S,
                "application_name": "walletd",
                "options": timeouts,
            },
        )
    except (ImportError, NoSuchModuleError) as exc:
        raise InvalidRequestError(
            f"no driver for {url.drivername}: install walletd[postgres] (psycopg 3)"
        ) from exc
    event.listen(engine, "handle_error", _refused_connection)
    return engine


def _refused_connection(ctx: ExceptionContext) -> None:
    """Turn a failure to *connect* into StorageError; errors inside transactions pass on.

    Only the no-connection path is touched (the ledger maps the rest), and never
    the pool's pre-ping, whose own handling replaces a dead pooled connection.
    """
    if ctx.connection is None and not ctx.is_pre_ping:
        url = ctx.engine.url.render_as_string(hide_password=True) if ctx.engine else "?"
        raise StorageError(f"ledger unavailable: cannot connect to {url}: {ctx.original_exception}")


_WRITES_KEY = "walletd_written_statements"


def _count_write(conn: Connection, _cursor: Any, statement: str, *_args: Any) -> None:
    """Count a statement SQLAlchemy sends that is not a plain read (see ``written_statements``)."""
    if statement.lstrip()[:6].upper() != "SELECT":
        conn.info[_WRITES_KEY] = conn.info.get(_WRITES_KEY, 0) + 1


def written_statements(conn: Connection) -> int:
    """How many non-SELECT statements SQLAlchemy has sent on this pooled connection.

    A running count per DBAPI connection, for callers that compare it before and
    after a step (the group commit's "did this job write?"). Anything not a
    SELECT counts, so the answer errs towards "it wrote", which only costs a
    batch re-run, never a half-committed job. Pay's hot statements bypass
    SQLAlchemy and are counted by the ledger itself.
    """
    return int(conn.info.get(_WRITES_KEY, 0))


def _with_write_count(engines: Engines) -> Engines:
    for engine in {engines.write, engines.read}:
        event.listen(engine, "before_cursor_execute", _count_write)
    return engines


def make_engines(url: str) -> Engines:
    """Build the engines for a ledger URL (SQLite gets the write/read pair)."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        pair = Engines(_sqlite_engine(url, "BEGIN IMMEDIATE"), _sqlite_engine(url, "BEGIN"))
        return _with_write_count(pair)
    if parsed.get_backend_name() == "postgresql":
        engine = _postgres_engine(_postgres_url(parsed))
        return _with_write_count(Engines(engine, engine))
    engine = create_engine(url, pool_pre_ping=True, pool_size=20, max_overflow=10)
    return _with_write_count(Engines(engine, engine))
