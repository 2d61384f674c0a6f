"""Ledger failures name their cause: busy, full, read-only, I/O (walletd.db.failures).

The daemon-level faults (a full tmpfs, immutable files, a held lock) are in
tests/adversarial/test_faults.py; here the mapping itself, and a real lock
held past the wait limit on both backends.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from sqlalchemy.engine import make_url

from tests.plugins.pg import libpq_url
from walletd.db import migrate
from walletd.db.engine import make_engines
from walletd.db.failures import storage_error
from walletd.db.ledger import Store
from walletd.errors import (
    StorageBusyError,
    StorageError,
    StorageFullError,
    StorageIOError,
    StorageReadOnlyError,
)


class FakeSqliteError(Exception):
    def __init__(self, code: int, name: str, text: str) -> None:
        super().__init__(text)
        self.sqlite_errorcode = code
        self.sqlite_errorname = name


class FakePgError(Exception):
    def __init__(self, sqlstate: str, text: str) -> None:
        super().__init__(text)
        self.sqlstate = sqlstate


@pytest.mark.parametrize(
    ("orig", "cls", "cause"),
    [
        (FakeSqliteError(5, "SQLITE_BUSY", "database is locked"), StorageBusyError, "SQLITE_BUSY"),
        (FakeSqliteError(13, "SQLITE_FULL", "database or disk is full"), StorageFullError, None),
        (FakeSqliteError(8, "SQLITE_READONLY", "attempt to write a readonly database"),
         StorageReadOnlyError, None),
        (FakeSqliteError(778, "SQLITE_IOERR_WRITE", "disk I/O error"), StorageIOError,
         "SQLITE_IOERR_WRITE"),
        (FakePgError("55P03", "canceling statement due to lock timeout"), StorageBusyError,
         "55P03"),
        (FakePgError("53100", "could not extend file"), StorageFullError, None),
        (FakePgError("25006", "cannot execute INSERT in a read-only transaction"),
         StorageReadOnlyError, None),
    ],
)  # fmt: skip
def test_a_known_failure_gets_its_class_and_cause(
    orig: Exception, cls: type[StorageError], cause: str | None
) -> None:
    err = storage_error(orig, "fallback")
    assert type(err) is cls
    assert str(orig) in err.message
    if cause is not None:
        assert err.details == {"cause": cause}


@pytest.mark.parametrize(
    "orig",
    [None, ValueError("x"), FakeSqliteError(1, "SQLITE_ERROR", "x"), FakePgError("42P01", "x")],
)
def test_anything_else_stays_a_plain_storage_error(orig: Exception | None) -> None:
    err = storage_error(orig, "ledger unavailable: x")
    assert type(err) is StorageError
    assert (err.message, err.details) == ("ledger unavailable: x", {})


@contextmanager
def _write_lock_held(url: str) -> Iterator[None]:
    """Another process's transaction holding the ledger's write lock."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        conn = sqlite3.connect(parsed.database or "", isolation_level=None)
        conn.execute("BEGIN EXCLUSIVE")
        try:
            yield
        finally:
            conn.close()
        return
    import psycopg

    with psycopg.connect(libpq_url(url)) as holder:
        holder.execute("select * from wallet_state where id = 1 for update")
        yield


def test_a_writer_held_up_past_the_wait_limit_is_storage_busy(
    ledger_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    engines.dispose()
    monkeypatch.setattr("walletd.db.engine.BUSY_TIMEOUT_MS", 200)
    monkeypatch.setattr("walletd.db.engine.PG_LOCK_TIMEOUT_MS", 200)
    engines = make_engines(ledger_url)
    store = Store(engines)
    try:
        with (
            _write_lock_held(ledger_url),
            pytest.raises(StorageBusyError) as busy,
            store.write() as tx,
        ):
            tx.lock_state()
        assert busy.value.reason == "STORAGE_BUSY"
        assert busy.value.details["cause"] in ("SQLITE_BUSY", "55P03")
        with store.write() as tx:  # released: writes go through again
            tx.set_frozen(False)
    finally:
        engines.dispose()
