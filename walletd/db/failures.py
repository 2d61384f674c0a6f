"""Database failures as the specific StorageError the caller and the operator need.

Every ledger failure fails the payment closed; these classes only say *why*,
so a caller can tell "retry shortly" (busy) from "an operator must act"
(full, read-only, a failing disk). SQLite's result code (Python 3.11+) and
PostgreSQL's SQLSTATE are read from the driver's exception; anything else stays
a plain StorageError with the message it had before.
"""

from __future__ import annotations

from walletd.errors import (
    StorageBusyError,
    StorageError,
    StorageFullError,
    StorageIOError,
    StorageReadOnlyError,
)

_Kind = tuple[type[StorageError], str]

_BUSY: _Kind = (StorageBusyError, "the ledger is locked by another writer")
_FULL: _Kind = (StorageFullError, "the ledger's disk is full")
_READ_ONLY: _Kind = (StorageReadOnlyError, "the ledger is read-only")
_IO: _Kind = (StorageIOError, "I/O error on the ledger (a failing disk, or a file made read-only)")

_SQLITE: dict[int, _Kind] = {5: _BUSY, 6: _BUSY, 8: _READ_ONLY, 10: _IO, 13: _FULL}
"""Primary SQLite result codes: BUSY, LOCKED, READONLY, IOERR, FULL."""

_POSTGRES: dict[str, _Kind] = {
    "55P03": _BUSY,  # lock_not_available: lock_timeout passed (walletd sets one)
    "53100": _FULL,  # disk_full
    "25006": _READ_ONLY,  # read_only_sql_transaction: connected to a standby
    "58030": _IO,  # io_error
}


def _kind(orig: BaseException) -> tuple[_Kind, str] | None:
    """The kind of failure and its driver code name, when the driver says which."""
    code = getattr(orig, "sqlite_errorcode", None)
    if isinstance(code, int) and code & 0xFF in _SQLITE:
        return _SQLITE[code & 0xFF], str(getattr(orig, "sqlite_errorname", code))
    state = getattr(orig, "sqlstate", None)
    if isinstance(state, str) and state in _POSTGRES:
        return _POSTGRES[state], state
    return None


def storage_error(orig: BaseException | None, fallback: str) -> StorageError:
    """The StorageError for a driver exception; ``fallback`` is the message of an unknown one."""
    found = _kind(orig) if orig is not None else None
    if found is None:
        return StorageError(fallback)
    (cls, what), cause = found
    return cls(f"{what}: {orig}"[:300], {"cause": cause})
