"""The ledger's transactions: rows in, domain objects out; nothing else sees a Session.

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
"""

from __future__ import annotations

import json
import time
from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError, OperationalError, SQLAlchemyError
from sqlalchemy.orm import Session

from walletd.db import hot, tables
from walletd.db.engine import Engines, written_statements
from walletd.db.failures import storage_error
from walletd.domain import audit, buckets, lifecycle
from walletd.domain.budget import SPAN_WINDOWS, Budget, window_starts
from walletd.domain.payment import PaymentStatus, PaymentView
from walletd.errors import InvalidRequestError, NotFoundError, StorageError

LIMIT_COLUMNS = ("per_request", "hourly", "daily", "monthly", "total")


@dataclass(frozen=True)
class ClientRecord:
    """A client as the service needs it (never the token)."""

    id: int
    name: str
    scopes: frozenset[str]
    revoked: bool
    budget: Budget


@dataclass(frozen=True)
class NewPayment:
    """Everything recorded for one signed payment."""

    id: str
    client_id: int
    idempotency_key: str
    fingerprint: str
    amount: int
    payee: str
    network: str
    asset: str
    payer: str
    method: str
    url: str
    host: str
    nonce: str
    valid_after: int
    valid_before: int
    header_name: str
    header_value: str
    labels: Mapping[str, str]
    created_at_ms: int
    kind: str = "exact"
    """``exact`` or ``transfer`` (``walletd.domain.direct``)."""


@dataclass(frozen=True)
class NewDecision:
    """One Pay decision for the decision log (``outcome`` is ``paid`` or ``refused``)."""

    at_ms: int
    client_id: int
    client: str
    outcome: str
    reason: str
    rule: str
    message: str
    idempotency_key: str
    host: str
    payee: str
    amount: int
    labels: Mapping[str, str]
    payment_id: str | None


@dataclass(frozen=True)
class StoredPayment:
    """A payment row as the service sees it."""

    id: str
    client_id: int
    fingerprint: str
    status: str
    amount: int
    payee: str
    network: str
    valid_before: int
    header_name: str
    header_value: str


@dataclass(frozen=True)
class TrackedPayment:
    """A payment as the reconciler follows it on chain."""

    id: str
    client_id: int
    status: str
    amount: int
    payee: str
    payer: str
    network: str
    nonce: str
    valid_after: int
    valid_before: int
    created_at_ms: int
    reported_tx: str | None
    settled_tx: str | None
    released: bool
    kind: str = "exact"


@dataclass(frozen=True)
class KeyEventRecord:
    """One recorded key operation: what, when, the payer address before and after."""

    id: int
    at_ms: int
    operation: str
    old_address: str
    new_address: str
    data: Mapping[str, object]


@dataclass(frozen=True)
class PaymentEventRecord:
    """One row of a payment's history."""

    at_ms: int
    status: str
    cause: str
    data: Mapping[str, object]


def _tracked(row: tables.Payment) -> TrackedPayment:
    return TrackedPayment(
        id=row.id,
        client_id=row.client_id,
        status=row.status,
        amount=row.amount,
        payee=row.payee,
        payer=row.payer,
        network=row.network,
        nonce=row.nonce,
        valid_after=row.valid_after,
        valid_before=row.valid_before,
        created_at_ms=row.created_at_ms,
        reported_tx=row.reported_tx,
        settled_tx=row.settled_tx,
        released=row.released_at_ms is not None,
        kind=row.kind,
    )


def _split(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(",") if part)


def _budget(row: tables.Client | tables.WalletState) -> Budget:
    return Budget(
        **{name: getattr(row, name) for name in LIMIT_COLUMNS},
        payees=_split(row.payees),
        hosts=_split(row.hosts),
    )


def _client_record(row: tables.Client) -> ClientRecord:
    return ClientRecord(
        row.id, row.name, _split(row.scopes), row.revoked_at_ms is not None, _budget(row)
    )


def _raw_budget(limits: tuple[Any, ...]) -> Budget:
    """A Budget from the columns of ``hot.LIMITS`` (per_request .. total, payees, hosts)."""
    per_request, hourly, daily, monthly, total, payees, hosts = limits
    return Budget(per_request, hourly, daily, monthly, total, _split(payees), _split(hosts))


def _raw_client(row: tuple[Any, ...]) -> ClientRecord:
    """A ClientRecord from (id, name, scopes, revoked_at_ms, *hot.LIMITS)."""
    return ClientRecord(
        int(row[0]), row[1], _split(row[2]), row[3] is not None, _raw_budget(row[4:])
    )


def _stored(row: tables.Payment) -> StoredPayment:
    return StoredPayment(
        row.id,
        row.client_id,
        row.fingerprint,
        row.status,
        row.amount,
        row.payee,
        row.network,
        row.valid_before,
        row.header_name,
        row.header_value,
    )


def _new_payment_facts(new: NewPayment, status: str, labels: str) -> dict[str, object]:
    """The row ``add_payment`` inserts, as ``audit.payment_digest`` reads it."""
    facts: dict[str, object] = {k: v for k, v in new.__dict__.items() if k != "labels"}
    facts.update(status=status, labels=labels, released_at_ms=None)
    facts.update(reported_tx=None, settled_tx=None)
    return facts


_PAYMENT_COLUMNS = list(tables.Payment.__table__.columns)
"""Every payment column: ``audit.payment_digest`` picks what it covers."""


class LedgerTx:
    """One transaction on the ledger; the methods are the only queries walletd makes."""

    def __init__(self, conn: Connection, *, writer: bool = False) -> None:
        self._conn = conn
        self._orm: Session | None = None
        self._writer = writer
        self._locked = False
        self._dbapi: Any = conn.dialect.loaded_dbapi
        self._sql = hot.statements(conn.dialect.paramstyle, conn.dialect.name)
        self._cursor: Any = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        self._tails: dict[str, tuple[int, str]] = {}
        """Chain tails read or written in this transaction (it holds the writer lock)."""
        self._state: tuple[bool, Budget] | None = None
        """The wallet row as locked in this transaction (nobody else can change it now)."""
        self._lifetimes: dict[int, int] | None = None
        """Lifetime totals of the scopes ``spent_pair`` just read; dropped at any bucket write."""
        self._hot_writes = 0
        """Statements written through the hot path so far (see ``writes``)."""

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

    # --- the hot statements (``walletd.db.hot``) -------------------------------------

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

    @property
    def _statements(self) -> hot.Statements:
        return self._sql

    def _serialise(self) -> None:
        """In a write transaction, lock the wallet row before touching chained tables.

        See the module docstring: on PostgreSQL this is what keeps two appends
        from reading the same chain tail (SQLite's BEGIN IMMEDIATE already has).
        """
        if self._writer and not self._locked:
            self.lock_state()

    # --- wallet state -------------------------------------------------------------

    def lock_state(self) -> tuple[bool, Budget]:
        """Lock the wallet row (serialises writers on PostgreSQL); return frozen, global budget."""
        if self._state is None:
            row = self._raw(self._statements.lock_state).fetchone()
            self._locked = True
            self._state = (bool(row[0]), _raw_budget(row[1:]))
        return self._state

    def wallet_state(self) -> tuple[bool, Budget]:
        """Read the wallet row without locking it: frozen, global budget."""
        row = self._session.get_one(tables.WalletState, 1)
        return row.frozen, _budget(row)

    def set_frozen(self, frozen: bool, at_ms: int | None = None) -> None:
        """Stop or resume every payment (recorded as an admin event)."""
        self._serialise()
        self._state = None
        self._session.execute(
            update(tables.WalletState).where(tables.WalletState.id == 1).values(frozen=frozen)
        )
        self._admin_event(audit.FREEZE, "", {"frozen": frozen}, at_ms)

    def set_global_budget(self, budget: Budget, at_ms: int | None = None) -> None:
        """Replace the budget that caps all clients together (recorded as an admin event)."""
        self._serialise()
        self._state = None
        values = _budget_values(budget)
        self._session.execute(
            update(tables.WalletState).where(tables.WalletState.id == 1).values(**values)
        )
        self._admin_event(audit.BUDGET_SET, "", values, at_ms)

    def _admin_event(
        self, operation: str, client: str, data: Mapping[str, object], at_ms: int | None
    ) -> None:
        """Append one admin event (the state a change left) to its chain, in this transaction."""
        self._serialise()
        last_id, prev = self._tail(tables.AdminEvent)
        doc: dict[str, object] = {
            "id": last_id + 1,
            "at_ms": time.time_ns() // 1_000_000 if at_ms is None else at_ms,
            "operation": operation,
            "client": client,
            "data": json.dumps(data, sort_keys=True),
            "prev_hash": prev,
        }
        self._session.add(tables.AdminEvent(**doc, hash=audit.admin_event_hash(doc)))
        self._session.flush()

    # --- clients ------------------------------------------------------------------

    def client_by_token_hash(self, token_hash: str) -> ClientRecord | None:
        """The client holding this token hash, revoked or not."""
        row = self._session.execute(
            select(tables.Client).where(tables.Client.token_hash == token_hash)
        ).scalar_one_or_none()
        return None if row is None else _client_record(row)

    def client_by_name(self, name: str) -> ClientRecord:
        """The named client; raises NotFoundError."""
        row = self._session.execute(
            select(tables.Client).where(tables.Client.name == name)
        ).scalar_one_or_none()
        if row is None:
            raise NotFoundError(f"no client named {name!r}")
        return _client_record(row)

    def client_by_id(self, client_id: int) -> ClientRecord:
        """The client with this id (it exists: payments reference it)."""
        row = self._raw(self._statements.client_by_id, (client_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no client with id {client_id}")
        return _raw_client(row)

    def add_client(self, name: str, token_hash: str, scopes: str, now_ms: int) -> None:
        """Create a client (recorded as an admin event); its name must be new."""
        self._serialise()
        row = tables.Client(
            name=name,
            token_hash=token_hash,
            scopes=scopes,
            created_at_ms=now_ms,
            payees="",
            hosts="",
        )
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError as exc:
            raise InvalidRequestError(f"a client named {name!r} already exists") from exc
        state = audit.client_state({c: getattr(row, c) for c in audit.CLIENT_FIELDS})
        self._admin_event(audit.CLIENT_ADD, name, state, now_ms)

    def list_clients(self) -> list[ClientRecord]:
        """Every client, by name."""
        rows = self._session.execute(select(tables.Client).order_by(tables.Client.name))
        return [_client_record(row) for row in rows.scalars()]

    def revoke_client(self, name: str, now_ms: int) -> None:
        """Revoke a client's token at once (recorded as an admin event, unless it already was)."""
        self._serialise()
        self.client_by_name(name)
        result = self._session.execute(
            update(tables.Client)
            .where(tables.Client.name == name, tables.Client.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms)
        )
        if getattr(result, "rowcount", 0) == 1:
            self._admin_event(audit.CLIENT_REVOKE, name, {"revoked_at_ms": now_ms}, now_ms)

    def set_client_budget(self, name: str, budget: Budget, at_ms: int | None = None) -> None:
        """Replace a client's budget (recorded as an admin event)."""
        self._serialise()
        self.client_by_name(name)
        values = _budget_values(budget)
        self._session.execute(
            update(tables.Client).where(tables.Client.name == name).values(**values)
        )
        self._admin_event(audit.BUDGET_SET, name, values, at_ms)

    # --- payments -----------------------------------------------------------------

    def client_with_payment(
        self, client_id: int, idempotency_key: str
    ) -> tuple[ClientRecord, StoredPayment | None]:
        """The client, and its payment under this idempotency key if any, in one statement."""
        row = self._raw(self._statements.client_with_payment, (idempotency_key, client_id))
        found = row.fetchone()
        if found is None:
            raise NotFoundError(f"no client with id {client_id}")
        width = hot.CLIENT_WIDTH
        payment = None if found[width] is None else StoredPayment(*found[width:])
        return _raw_client(found[:width]), payment

    def payment(self, payment_id: str) -> StoredPayment:
        """One payment by id; raises NotFoundError."""
        row = self._session.get(tables.Payment, payment_id)
        if row is None:
            raise NotFoundError(f"no payment {payment_id!r}")
        return _stored(row)

    def spent(
        self, client_id: int | None, now_ms: int, windows: Collection[str] = SPAN_WINDOWS
    ) -> dict[str, int]:
        """What each summing window in ``windows`` counts, for one client or (None) for all.

        Read from the running totals (``walletd.domain.buckets``): a handful of
        index lookups, whatever the window holds. A scope whose totals outgrew
        BIGINT, or a window reaching back past pruned buckets, is summed from
        the rows instead; both give the same numbers.
        """
        wanted = [w for w in SPAN_WINDOWS if w in windows]
        if not wanted:
            return {}
        starts = window_starts(now_ms)
        scope = hot.GLOBAL_SCOPE if client_id is None else client_id
        per_client = client_id is not None
        sql = self._statements.window_sums(len(wanted), per_client)
        params = hot.window_params(scope, [starts[w] for w in wanted], per_client)
        try:
            row = self._raw(sql, params).fetchone()
        except StorageError as exc:
            # SQLite's SUM raises past int64: only the rows of a scope whose totals
            # outgrew BIGINT can get there, and that scope is summed from the rows.
            if "overflow" not in str(exc.__cause__):
                raise
            return {w: v for w, v in self._scan_spent(client_id, starts).items() if w in wanted}
        return self._window_totals(client_id, starts, wanted, row)

    def spent_pair(
        self, client_id: int, now_ms: int, windows: Collection[str], global_windows: Collection[str]
    ) -> tuple[dict[str, int], dict[str, int]]:
        """``spent`` of one client and of everyone (``spent(None, ...)``) in one statement."""
        wanted = [w for w in SPAN_WINDOWS if w in windows]
        wanted_global = [w for w in SPAN_WINDOWS if w in global_windows]
        if not wanted or not wanted_global:
            return self.spent(client_id, now_ms, windows), self.spent(None, now_ms, global_windows)
        starts = window_starts(now_ms)
        sql = self._statements.window_sums_pair(len(wanted), len(wanted_global))
        params = hot.window_params(client_id, [starts[w] for w in wanted], True)
        params += hot.window_params(hot.GLOBAL_SCOPE, [starts[w] for w in wanted_global], False)
        try:
            row = self._raw(sql, params).fetchone()
        except StorageError as exc:
            if "overflow" not in str(exc.__cause__):  # see ``spent``: each scope on its own
                raise
            return self.spent(client_id, now_ms, windows), self.spent(None, now_ms, global_windows)
        split = len(wanted) * (len(buckets.SPANS) + 2) + 2
        self._lifetimes = {client_id: row[split - 2] or 0, hot.GLOBAL_SCOPE: row[-2] or 0}
        return (
            self._window_totals(client_id, starts, wanted, row[:split]),
            self._window_totals(None, starts, wanted_global, row[split:]),
        )

    def _window_totals(
        self, client_id: int | None, starts: dict[str, int], wanted: list[str], row: Any
    ) -> dict[str, int]:
        """The windows' totals from a ``window_sums`` row, or from the rows when they must be."""
        lifetime, horizon = row[-2], row[-1] or 0
        if lifetime == buckets.SATURATED or any(
            buckets.needs_rows(starts[w], horizon) for w in wanted
        ):
            return {w: v for w, v in self._scan_spent(client_id, starts).items() if w in wanted}
        width = len(buckets.SPANS) + 2
        return {
            w: sum(int(v) for v in row[i * width : (i + 1) * width]) for i, w in enumerate(wanted)
        }

    def _scan_spent(self, client_id: int | None, starts: dict[str, int]) -> dict[str, int]:
        """Every window summed from the payment rows (what the running totals must equal)."""
        pay = tables.Payment
        sums = [
            func.coalesce(func.sum(pay.amount).filter(pay.created_at_ms >= starts[w]), 0)
            for w in SPAN_WINDOWS
        ]
        query = select(*sums).where(pay.released_at_ms.is_(None))
        if client_id is not None:
            query = query.where(pay.client_id == client_id)
        try:
            row = self._session.execute(query).one()
        except OperationalError as exc:
            # SQLite's SUM over INTEGER raises on int64 overflow (PostgreSQL widens
            # to numeric). Sum exactly in Python instead: a window that large must
            # refuse with BUDGET_EXCEEDED, not stop the ledger with a storage error.
            if "overflow" not in str(exc.orig):
                raise
            return self._spent_exactly(client_id, starts)
        return {w: int(v) for w, v in zip(SPAN_WINDOWS, row, strict=True)}

    def _spent_exactly(self, client_id: int | None, starts: dict[str, int]) -> dict[str, int]:
        pay = tables.Payment
        query = select(pay.amount, pay.created_at_ms).where(pay.released_at_ms.is_(None))
        if client_id is not None:
            query = query.where(pay.client_id == client_id)
        totals = dict.fromkeys(SPAN_WINDOWS, 0)
        for amount, created in self._session.execute(query):
            for window in SPAN_WINDOWS:
                if created >= starts[window]:
                    totals[window] += amount
        return totals

    def add_payment(self, new: NewPayment, status: str, cause: str) -> None:
        """Record a signed payment, its first event, and its amount in the running totals."""
        self._serialise()
        labels = json.dumps(dict(new.labels))
        facts = _new_payment_facts(new, status, labels)
        self._write(self._statements.insert_payment, [facts[c] for c in hot.PAYMENT_INSERT_COLUMNS])
        snapshot = audit.payment_digest(facts)
        self._append_event(new.id, new.created_at_ms, status, cause, {}, snapshot)
        self._count(new.client_id, new.amount, new.created_at_ms)

    def _count(self, client_id: int, amount: int, created_ms: int) -> None:
        """Add a new unreleased payment to its scopes' running totals."""
        sql = self._statements
        lifetimes = self._lifetimes_of(client_id)
        rows: list[int] = []
        for scope in (client_id, hot.GLOBAL_SCOPE):
            lifetime = lifetimes.get(scope, 0)
            if lifetime == buckets.SATURATED:
                continue
            if lifetime + amount > buckets.INT64_MAX:
                # Past BIGINT: this scope is summed from the rows from now on.
                saturate = (scope, buckets.LIFETIME, 0, buckets.SATURATED)
                self._write(sql.set_bucket, saturate)
                continue
            for span, start in buckets.bucket_keys(created_ms):
                rows += (scope, span, start, amount)
        if rows:
            self._write(sql.add_buckets(len(rows) // 4), rows)

    def _lifetimes_of(self, client_id: int) -> dict[int, int]:
        """The lifetime totals of a client's scope and the global one, before a bucket write.

        What ``spent_pair`` read for this client moments ago is still exact (only
        bucket writes change it, and each of them comes through here or prune),
        which saves a round trip per Pay on PostgreSQL; otherwise read them.
        """
        known, self._lifetimes = self._lifetimes, None
        if known is not None and client_id in known:
            return known
        found = self._raw(self._statements.lifetimes, (client_id, hot.GLOBAL_SCOPE)).fetchall()
        return dict(found)

    def _uncount(self, client_id: int, amount: int, created_ms: int) -> None:
        """Take a released payment out of its scopes' running totals."""
        sql = self._statements
        lifetimes = self._lifetimes_of(client_id)
        for scope in (client_id, hot.GLOBAL_SCOPE):
            if lifetimes.get(scope, 0) == buckets.SATURATED:
                continue
            for span, start in buckets.bucket_keys(created_ms):
                self._write(sql.sub_bucket, (amount, scope, span, start))

    def prune_spend_buckets(self, before_ms: int) -> None:
        """Delete second, minute and hour buckets starting before ``before_ms``.

        Only the hourly and daily windows read them, so nothing later than a
        day ago is needed; the horizon row makes a window that reaches past it
        (a clock set back by days) sum its rows instead.
        """
        self._lifetimes = None
        sql = self._statements
        horizon = self._raw(sql.horizon).fetchone()
        if horizon is not None and horizon[0] >= before_ms:
            return
        self._write(sql.prune, (before_ms,))
        self._write(sql.set_bucket, (hot.GLOBAL_SCOPE, hot.HORIZON_SPAN, 0, before_ms))

    def add_event(
        self, payment_id: str, at_ms: int, status: str, cause: str, data: Mapping[str, object]
    ) -> None:
        """Append one transition of a payment, chained to the event before it.

        Call it after every change to the payment row in the same transaction:
        the event records the row as it is now (see ``walletd.domain.audit``).

        Raises:
            StorageError: no such payment (nothing is recorded).
        """
        self._serialise()
        row = (
            self._session.execute(select(*_PAYMENT_COLUMNS).where(tables.Payment.id == payment_id))
            .mappings()
            .one_or_none()
        )
        if row is None:
            raise StorageError(f"ledger constraint violated: no payment {payment_id!r}")
        snapshot = audit.payment_digest({str(name): row[name] for name in row})
        self._append_event(payment_id, at_ms, status, cause, data, snapshot)

    def _hot_tail(self, table: str) -> tuple[int, str]:
        """A chain's tail, read once per transaction and then kept as rows are appended."""
        tail = self._tails.get(table)
        if tail is None:
            last = self._raw(self._statements.tail(table)).fetchone()
            tail = (0, audit.GENESIS) if last is None else (int(last[0]), str(last[1]))
        return tail

    def _tail(
        self,
        model: type[tables.PaymentEvent]
        | type[tables.Decision]
        | type[tables.KeyEvent]
        | type[tables.AdminEvent],
    ) -> tuple[int, str]:
        """The id and hash of a chain's newest row (0 and GENESIS when it is empty)."""
        last = self._session.execute(
            select(model.id, model.hash).order_by(model.id.desc()).limit(1)
        ).first()
        return (0, audit.GENESIS) if last is None else (int(last[0]), str(last[1]))

    def _append_event(
        self,
        payment_id: str,
        at_ms: int,
        status: str,
        cause: str,
        data: Mapping[str, object],
        payment_hash: str,
    ) -> None:
        last_id, prev = self._hot_tail(audit.EVENTS)
        doc: dict[str, object] = {
            "id": last_id + 1,
            "payment_id": payment_id,
            "at_ms": at_ms,
            "status": status,
            "cause": cause,
            "data": json.dumps(data, sort_keys=True),
            "payment_hash": payment_hash,
            "prev_hash": prev,
        }
        doc["hash"] = audit.event_hash(doc)
        self._write(self._statements.insert_event, [doc[c] for c in hot.EVENT_COLUMNS])
        self._tails[audit.EVENTS] = (last_id + 1, str(doc["hash"]))

    def add_decision(self, new: NewDecision) -> None:
        """Append one Pay decision to the decision log, chained to the one before it."""
        self._serialise()
        last_id, prev = self._hot_tail(audit.DECISIONS)
        doc: dict[str, object] = {k: v for k, v in new.__dict__.items() if k != "labels"}
        doc.update(id=last_id + 1, labels=json.dumps(dict(new.labels)), prev_hash=prev)
        doc["hash"] = audit.decision_hash(doc)
        self._write(self._statements.insert_decision, [doc[c] for c in hot.DECISION_COLUMNS])
        self._tails[audit.DECISIONS] = (last_id + 1, str(doc["hash"]))

    # --- settlement tracking ----------------------------------------------------

    def tracked_payment(self, payment_id: str) -> TrackedPayment:
        """One payment with its settlement facts; raises NotFoundError."""
        row = self._session.get(tables.Payment, payment_id)
        if row is None:
            raise NotFoundError(f"no payment {payment_id!r}")
        return _tracked(row)

    def open_payments(self, statuses: Collection[str], limit: int) -> list[TrackedPayment]:
        """Payments in ``statuses``, oldest validBefore first (they are due first)."""
        query = (
            select(tables.Payment)
            .where(tables.Payment.status.in_(list(statuses)))
            .order_by(tables.Payment.valid_before, tables.Payment.id)
            .limit(limit)
        )
        return [_tracked(row) for row in self._session.execute(query).scalars()]

    def record_reported_tx(self, payment_id: str, tx_hash: str) -> None:
        """Remember the transaction a server claimed; the first claim is kept.

        The caller records an event in the same transaction (which snapshots it).
        """
        self._serialise()
        self._session.execute(
            update(tables.Payment)
            .where(tables.Payment.id == payment_id, tables.Payment.reported_tx.is_(None))
            .values(reported_tx=tx_hash)
        )

    def move(
        self,
        payment_id: str,
        current: str,
        target: str,
        at_ms: int,
        cause: str,
        data: Mapping[str, object],
        *,
        settled_tx: str | None = None,
    ) -> bool:
        """Move a payment from ``current`` to ``target`` with its event; False if it moved already.

        A compare-and-set on the status, so the daemon's reconciler and a CLI
        ``reconcile`` running at once can never both apply a transition. The
        lifecycle table is enforced here so no caller can skip it, and the
        budget is released exactly when the target status releases it.

        Raises:
            lifecycle.TransitionError: the table forbids the move.
        """
        lifecycle.require_move(current, target)
        self._serialise()
        values: dict[str, object] = {"status": target}
        if lifecycle.releases(target):
            values["released_at_ms"] = at_ms
        if settled_tx is not None:
            values["settled_tx"] = settled_tx
        result = self._session.execute(
            update(tables.Payment)
            .where(tables.Payment.id == payment_id, tables.Payment.status == current)
            .values(**values)
        )
        if getattr(result, "rowcount", 0) != 1:
            return False
        if lifecycle.releases(target):
            pay = tables.Payment
            client_id, amount, created = self._session.execute(
                select(pay.client_id, pay.amount, pay.created_at_ms).where(pay.id == payment_id)
            ).one()
            self._uncount(client_id, amount, created)
        self.add_event(payment_id, at_ms, target, cause, data)
        return True

    def outstanding(self, payer: str | None = None) -> tuple[int, int]:
        """Count and sum of payments counted as spent but not settled (may still move money).

        ``payer`` restricts it to one key's authorizations: after a rotation only
        the new key's promises draw on the new key's balance.
        """
        pay = tables.Payment
        query = select(func.count(), func.coalesce(func.sum(pay.amount), 0)).where(
            pay.released_at_ms.is_(None), pay.status != PaymentStatus.SETTLED
        )
        if payer is not None:
            query = query.where(pay.payer == payer)
        row = self._session.execute(query).one()
        return int(row[0]), int(row[1])

    def outstanding_by_key(self, payer: str) -> tuple[tuple[int, int], tuple[int, int]]:
        """``outstanding(payer)``, and the same for every other (retired) key, in one query."""
        pay = tables.Payment
        mine, others = pay.payer == payer, pay.payer != payer
        query = select(
            func.count().filter(mine), func.coalesce(func.sum(pay.amount).filter(mine), 0),
            func.count().filter(others), func.coalesce(func.sum(pay.amount).filter(others), 0),
        ).where(pay.released_at_ms.is_(None), pay.status != PaymentStatus.SETTLED)  # fmt: skip
        row = self._session.execute(query).one()
        return (int(row[0]), int(row[1])), (int(row[2]), int(row[3]))

    # --- key events ---------------------------------------------------------------

    def add_key_event(
        self,
        at_ms: int,
        operation: str,
        addresses: tuple[str, str],
        data: Mapping[str, object],
    ) -> None:
        """Append a key operation (old and new address; never a secret) to its chain."""
        self._serialise()
        last_id, prev = self._tail(tables.KeyEvent)
        old_address, new_address = addresses
        doc: dict[str, object] = {
            "id": last_id + 1,
            "at_ms": at_ms,
            "operation": operation,
            "old_address": old_address,
            "new_address": new_address,
            "data": json.dumps(data, sort_keys=True),
            "prev_hash": prev,
        }
        self._session.add(tables.KeyEvent(**doc, hash=audit.key_event_hash(doc)))

    def key_events(self) -> list[KeyEventRecord]:
        """Every key operation, oldest first."""
        rows = self._session.execute(select(tables.KeyEvent).order_by(tables.KeyEvent.id))
        return [
            KeyEventRecord(
                e.id, e.at_ms, e.operation, e.old_address, e.new_address, json.loads(e.data)
            )
            for e in rows.scalars()
        ]

    def current_key(self) -> str | None:
        """The address the newest key event left in use, or None when none was recorded."""
        return self._session.execute(
            select(tables.KeyEvent.new_address).order_by(tables.KeyEvent.id.desc()).limit(1)
        ).scalar_one_or_none()

    def events(self, payment_id: str) -> list[PaymentEventRecord]:
        """A payment's history, oldest first."""
        query = (
            select(tables.PaymentEvent)
            .where(tables.PaymentEvent.payment_id == payment_id)
            .order_by(tables.PaymentEvent.id)
        )
        return [
            PaymentEventRecord(e.at_ms, e.status, e.cause, json.loads(e.data))
            for e in self._session.execute(query).scalars()
        ]

    def list_payments(self, client_id: int | None, limit: int) -> list[PaymentView]:
        """Payments newest first, for one client or all."""
        query = (
            select(tables.Payment, tables.Client.name)
            .join(tables.Client)
            .order_by(tables.Payment.created_at_ms.desc(), tables.Payment.id)
            .limit(limit)
        )
        if client_id is not None:
            query = query.where(tables.Payment.client_id == client_id)
        return [_view(row, name) for row, name in self._session.execute(query)]


def _view(row: tables.Payment, client: str) -> PaymentView:
    return PaymentView(
        payment_id=row.id,
        client=client,
        status=row.status,
        amount=row.amount,
        payee=row.payee,
        network=row.network,
        url=row.url,
        created_at=row.created_at_ms // 1000,
        valid_before=row.valid_before,
        nonce=row.nonce,
        labels=json.loads(row.labels),
    )


def _budget_values(budget: Budget) -> dict[str, object]:
    values: dict[str, object] = {name: budget.limit(name) for name in LIMIT_COLUMNS}
    values["payees"] = ",".join(sorted(budget.payees))
    values["hosts"] = ",".join(sorted(budget.hosts))
    return values


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
        return None if row is None else _raw_client(row)

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
