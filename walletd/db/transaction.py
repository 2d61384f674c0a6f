"""What every part of a ledger transaction shares: the connection, the cursor, the writer lock.

``LedgerTx`` (``walletd.db.ledger``) is assembled from one mixin per concern
(clients, spending, chains, Pay, settlement); each builds on ``Transaction``,
which owns the state they share: the SQLAlchemy connection and its lazily
made ORM session, the DBAPI cursor the plain-SQL statements of
``walletd.db.hot`` run on, the write count the group commit reads, and the
wallet row lock that serialises every writer of a hash-chained table.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy import Connection
from sqlalchemy.orm import Session

from walletd.db import hot
from walletd.db.engine import written_statements
from walletd.db.failures import storage_error
from walletd.db.records import WalletState
from walletd.errors import StorageError


class Transaction:
    """One transaction on the ledger: the shared state and the statement runners."""

    def __init__(self, conn: Connection, *, writer: bool = False) -> None:
        self._conn = conn
        self._orm: Session | None = None
        self._writer = writer
        self._locked = False
        self._dbapi: Any = conn.dialect.loaded_dbapi
        self._sql = hot.statements(conn.dialect.paramstyle, conn.dialect.name)
        self._cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._state: WalletState | None = None
        """The wallet row as locked in this transaction (nobody else can change it now)."""
        self._tails: dict[str, tuple[int, str]] = {}
        """Chain tails read or written in this transaction (it holds the writer lock)."""
        self._lifetimes: dict[int, int] | None = None
        """Lifetime totals of the scopes ``spent_pair`` just read; dropped at any bucket write."""
        self._hot_writes = 0
        """Statements written through the hot path so far (see ``writes``)."""
        self._limit_rows: dict[int, list[Any]] = {}
        """Scoped limits of a client and the global ones, by client id (``LimitsTx``)."""
        self._limit_lifetimes: dict[int, int] | None = None
        """Lifetime totals of the limit scopes ``LimitsTx.usage`` just read."""

    @property
    def writes(self) -> int:
        """A count that grows with every write this transaction makes, by any path.

        The group commit compares it before and after a job to decide whether a
        refused job left rows behind (then the batch is rolled back and run
        without it). It adds the hot statements, every non-SELECT statement
        SQLAlchemy sent on this connection (counted by ``engine.count_writes``),
        and one for ORM changes not yet flushed, so a write through the ORM is
        seen whether or not it has reached the database.
        """
        pending = self._orm is not None and bool(
            self._orm.new or self._orm.dirty or self._orm.deleted
        )
        return self._hot_writes + written_statements(self._conn) + int(pending)

    @property
    def _session(self) -> Session:
        """An ORM session in this transaction, made on first use (the hot path needs none)."""
        if self._orm is None:
            self._orm = Session(bind=self._conn, expire_on_commit=False)
        return self._orm

    def flush(self) -> None:
        """Send what the ORM session holds; ``Store`` calls it before the commit."""
        if self._orm is not None:
            self._orm.flush()

    def close(self) -> None:
        """Let go of the cursor and the ORM session (the transaction itself is the Store's)."""
        self._cursor.close()
        if self._orm is not None:
            self._orm.close()

    # --- the plain-SQL statements (``walletd.db.hot``) -----------------------------------

    def _raw(self, sql: str, params: Any = ()) -> Any:
        """Run one hot statement on this transaction's own DBAPI connection."""
        if self._orm is not None and self._orm.new:
            self._orm.flush()
        try:
            return self._cursor.execute(sql, params)
        except self._dbapi.Error as exc:
            raise self._driver_error(exc) from exc

    def _driver_error(self, exc: Exception) -> StorageError:
        """The StorageError a driver error on a hot statement (or a pipeline) becomes."""
        if isinstance(exc, self._dbapi.IntegrityError):
            return StorageError("ledger constraint violated; nothing was recorded")
        return storage_error(exc, f"ledger unavailable: {exc}")

    def _write(self, sql: str, params: Any = ()) -> Any:
        self._hot_writes += 1
        return self._raw(sql, params)

    @contextmanager
    def pipelined(self) -> Iterator[None]:
        """Send the statements made inside without waiting for each one's answer.

        On PostgreSQL this is psycopg's pipeline mode: a Pay's inserts travel
        together and are answered together (a read inside, or the end of the
        block, waits for everything sent before it), instead of one loopback
        round trip each. The block is one job's writes, so a failing statement
        still fails that job, raised as StorageError when the block ends.
        SQLite runs in-process: there it changes nothing.
        """
        pipeline = getattr(self._cursor.connection, "pipeline", None)
        if pipeline is None:
            yield
            return
        try:
            with pipeline():
                yield
        except self._dbapi.Error as exc:
            raise self._driver_error(exc) from exc

    # --- the writer lock ----------------------------------------------------------------

    def lock_state(self) -> WalletState:
        """Lock the wallet row (serialises writers on PostgreSQL) and return it.

        Read once per transaction: while it holds the lock nobody else can
        change the row (this transaction's own changes forget it).
        """
        if self._state is None:
            self._state = hot.wallet_state(self._raw(self._sql.lock_state).fetchone())
            self._locked = True
        return self._state

    def _serialise(self) -> None:
        """In a write transaction, lock the wallet row before touching chained tables.

        See ``walletd.db.ledger``: on PostgreSQL this is what keeps two appends
        from reading the same chain tail (SQLite's BEGIN IMMEDIATE already has).
        """
        if self._writer and not self._locked:
            self.lock_state()
