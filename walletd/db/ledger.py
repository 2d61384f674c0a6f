"""The ledger's transactions: rows in, records out; nothing else sees a Session.

``Store.write()`` opens a serialised write transaction (SQLite ``BEGIN
IMMEDIATE``; on PostgreSQL the first statement locks the wallet_state row), so
everything a Pay reads and writes inside it is one atomic, durable step.
Database failures surface as ``StorageError`` and never as SQLAlchemy errors.

The ledger is hash-chained (``walletd.domain.audit``): appending an event or a
decision reads the chain's tail and writes the next link, which is only correct
if no other writer appends in between. So every write transaction locks the
wallet_state row *before its first write* to payments, events, decisions,
key events or admin events (``_serialise``) — Pay, client reports, the
reconciler, cancels, refusal records and client, budget or freeze changes
alike, on every backend — and no payment row is ever locked by a writer that
does not already hold it (no lock-order deadlock). Chained rows get explicit
ids (tail + 1) under that lock, so id order is chain order, and a writer that
read a stale tail collides on the id (StorageError) instead of forking the
chain. Every change to a client, a budget or the freeze flag appends an admin
event holding the state it left, in the same transaction (``_admin_event``).

``LedgerTx`` is one object per transaction, assembled from one part per
concern, each in its own module sharing the transaction (``transaction.py``):
clients, the wallet row and budgets (``clients.py``), the running spend totals
(``spending.py``), Pay's record (``pay.py``), settlement (``settlement.py``),
payments held for approval and the thresholds (``approvals.py``),
and the hash chains of payment events, decisions, key and admin events
(``chains.py``).
The records it takes and hands out are in ``records.py``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import Connection
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError

from walletd.db import hot
from walletd.db.approvals import ApprovalsTx
from walletd.db.clients import ClientsTx
from walletd.db.engine import Engines
from walletd.db.failures import storage_error
from walletd.db.pay import PayTx
from walletd.db.records import (
    ClientRecord,
    KeyEventRecord,
    NewDecision,
    NewPayment,
    PaymentEventRecord,
    StoredPayment,
    TrackedPayment,
    WalletState,
)
from walletd.db.settlement import SettlementTx
from walletd.errors import StorageError

__all__ = [
    "ClientRecord",
    "KeyEventRecord",
    "LedgerTx",
    "NewDecision",
    "NewPayment",
    "PaymentEventRecord",
    "Store",
    "StoredPayment",
    "TrackedPayment",
    "WalletState",
]


class LedgerTx(ClientsTx, PayTx, ApprovalsTx, SettlementTx):
    """One transaction on the ledger; its methods are the only queries walletd makes."""


class Store:
    """Opens ledger transactions; the daemon and CLI hold one per ledger."""

    def __init__(self, engines: Engines) -> None:
        self.engines = engines

    @contextmanager
    def write(self) -> Iterator[LedgerTx]:
        """A serialised write transaction, committed (durably) when the block ends cleanly."""
        with _storage_errors(), self.engines.write.connect() as conn, conn.begin():
            tx = LedgerTx(conn, writer=True)
            try:
                yield tx
                tx.flush()
            finally:
                tx.close()

    def client_by_token_hash(self, token_hash: str) -> ClientRecord | None:
        """The client holding this token hash, revoked or not (one statement, no Session).

        Every RPC authenticates, so this skips the ORM: one pooled connection,
        one indexed SELECT in its own implicit read transaction.
        """
        engine = self.engines.read
        sql = hot.statements(engine.dialect.paramstyle, engine.dialect.name)
        with _storage_errors():
            raw = engine.raw_connection()
        try:
            cursor = raw.cursor()
            try:
                row = cursor.execute(sql.client_by_token_hash, (token_hash,)).fetchone()
            finally:
                cursor.close()
        except engine.dialect.loaded_dbapi.Error as exc:
            raise storage_error(exc, f"ledger unavailable: {exc}") from exc
        finally:
            raw.close()
        return None if row is None else hot.client_record(row)

    @contextmanager
    def read(self) -> Iterator[LedgerTx]:
        """A read-only transaction that never blocks writers."""
        with _storage_errors(), self.engines.read.connect() as conn, conn.begin():
            tx = LedgerTx(conn)
            try:
                yield tx
            finally:
                tx.close()

    @contextmanager
    def connection(self) -> Iterator[Connection]:
        """A plain read transaction for ``walletd.db.queries`` (reports, metrics)."""
        with _storage_errors(), self.engines.read.connect() as conn, conn.begin():
            yield conn


@contextmanager
def _storage_errors() -> Iterator[None]:
    try:
        yield
    except IntegrityError as exc:
        raise StorageError("ledger constraint violated; nothing was recorded") from exc
    except OperationalError as exc:
        raise storage_error(exc.orig, f"ledger unavailable: {exc.orig}") from exc
    except SQLAlchemyError as exc:
        orig = getattr(exc, "orig", None)  # e.g. PostgreSQL's read-only standby
        raise storage_error(orig, "ledger error; nothing was recorded") from exc
