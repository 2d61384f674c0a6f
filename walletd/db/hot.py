"""The ledger's plain-SQL statements, run on the DBAPI cursor of the ledger transaction.

Executing a statement through the ORM costs 100-400 µs, through SQLAlchemy Core
50-100 µs, through the driver 5-10 µs; a Pay runs about ten. So the statements
every Pay makes are plain SQL here, run on the very connection (and so in the
very transaction: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's row lock) of the
``LedgerTx`` that asks. Both ledgers speak this SQL (SQLite >= 3.24 and
PostgreSQL: ``ON CONFLICT ... DO UPDATE``, multi-row ``VALUES``); only the
placeholder and ``FOR UPDATE`` differ. Driver exceptions are turned into
StorageError by ``LedgerTx`` exactly like SQLAlchemy's.

The row shapes Pay reads (the wallet row, a client, a stored payment) are
read only here, by Pay and by everyone else, and each has one decoder next to
its column list. Column lists come from the table metadata
(``walletd.db.tables``); every statement is built once from them and from the
constants below; values only ever travel as parameters. ``tests/db/
test_hot_columns.py`` checks every column named here against the metadata and
against the schema the migrations make.
"""

# ruff: noqa: S608  (SQL text from constants only; values are always parameters)

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import fields
from functools import cache
from typing import Any

from sqlalchemy.orm import InstrumentedAttribute

from walletd.db import tables
from walletd.db.records import ClientRecord, StoredPayment, WalletState
from walletd.domain import buckets
from walletd.domain.budget import Budget

GLOBAL_SCOPE = 0
"""The spend-bucket scope of every client together (client ids start at 1)."""

HORIZON_SPAN = -1
"""Span of the row (0, -1, 0) that holds the prune horizon of the fine buckets."""


def _keys(*attributes: InstrumentedAttribute[Any]) -> tuple[str, ...]:
    return tuple(attribute.key for attribute in attributes)


def _named(model: type[tables.Base], names: Iterable[str]) -> tuple[str, ...]:
    """``names``, each looked up in ``model``'s table (a name it lacks fails at import)."""
    table = model.__table__
    return tuple(str(table.c[name].name) for name in names)


# --- the row shapes: built from the table metadata, each with its one decoder ----------

BUDGET_COLUMNS = tables.BUDGET_COLUMNS
"""A budget, in clients and wallet_state alike (``per_request`` .. ``hosts``)."""

WALLET_COLUMNS = (
    _keys(tables.WalletState.frozen) + BUDGET_COLUMNS + _keys(tables.WalletState.approve_above)
)
"""What a wallet_state read returns (``wallet_state`` decodes it)."""

CLIENT_COLUMNS = (
    _keys(tables.Client.id, tables.Client.name, tables.Client.scopes, tables.Client.revoked_at_ms)
    + BUDGET_COLUMNS
    + _keys(tables.Client.approve_above)
)
"""What a client read returns (``client_record`` decodes it)."""

STORED_COLUMNS = _named(tables.Payment, (field.name for field in fields(StoredPayment)))
"""What a payment read for Pay returns: ``StoredPayment``'s fields, which name its columns."""

PAYMENT_INSERT_COLUMNS = tuple(c.name for c in tables.Payment.__table__.c if not c.nullable)
"""What a new payment row is inserted with: every NOT NULL column (the others start NULL)."""

PAYMENT_COLUMNS = tuple(c.name for c in tables.Payment.__table__.c)
"""Every payment column: what an event's snapshot (``audit.payment_digest``) reads."""
EVENT_COLUMNS = tuple(c.name for c in tables.PaymentEvent.__table__.c)
DECISION_COLUMNS = tuple(c.name for c in tables.Decision.__table__.c)


def _split(text: str) -> frozenset[str]:
    return frozenset(part for part in text.split(",") if part)


def budget(values: Sequence[Any]) -> Budget:
    """A Budget from the values of ``BUDGET_COLUMNS``, in that order.

    The columns are Budget's fields in Budget's order (``tests/db/
    test_hot_columns.py`` checks it), so the values are taken by position:
    this runs twice in every Pay.
    """
    per_request, hourly, daily, monthly, total, payees, hosts = values
    return Budget(per_request, hourly, daily, monthly, total, _split(payees), _split(hosts))


def budget_values(limits: Budget) -> dict[str, object]:
    """A Budget as the values of ``BUDGET_COLUMNS`` (what ``budget`` reads back)."""
    values: dict[str, object] = {name: getattr(limits, name) for name in BUDGET_COLUMNS}
    values.update(payees=",".join(sorted(limits.payees)), hosts=",".join(sorted(limits.hosts)))
    return values


_WIDTH = len(BUDGET_COLUMNS)


def wallet_state(row: Sequence[Any]) -> WalletState:
    """The record of a ``WALLET_COLUMNS`` row."""
    return WalletState(bool(row[0]), budget(row[1 : 1 + _WIDTH]), row[1 + _WIDTH])


def client_record(row: Sequence[Any]) -> ClientRecord:
    """The record of a ``CLIENT_COLUMNS`` row."""
    return ClientRecord(
        int(row[0]),
        row[1],
        _split(row[2]),
        row[3] is not None,
        budget(row[4 : 4 + _WIDTH]),
        row[4 + _WIDTH],
    )


def stored_payment(row: Sequence[Any]) -> StoredPayment:
    """The record of a ``STORED_COLUMNS`` row."""
    return StoredPayment(*row)


def _insert(table: str, names: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(names)}) VALUES ({', '.join('?' * len(names))})"


def _listed(names: Sequence[str], alias: str = "") -> str:
    prefix = f"{alias}." if alias else ""
    return ", ".join(f"{prefix}{name}" for name in names)


def _bucket_sum() -> str:
    return (
        "(SELECT COALESCE(SUM(amount), 0) FROM spend_buckets "
        "WHERE scope = ? AND span = ? AND start_ms >= ? AND start_ms < ?)"
    )


def _edge_sum(per_client: bool) -> str:
    client = "client_id = ? AND " if per_client else ""
    return (
        f"(SELECT COALESCE(SUM(amount), 0) FROM payments WHERE {client}"
        "released_at_ms IS NULL AND created_at_ms >= ? AND created_at_ms < ?)"
    )


class Statements:
    """The hot statements in one driver's placeholder style, built once."""

    def __init__(self, placeholder: str, lock_suffix: str) -> None:
        self.placeholder = placeholder
        sql = self.sql
        wallet = f"SELECT {_listed(WALLET_COLUMNS)} FROM wallet_state WHERE id = 1"
        self.lock_state = sql(f"{wallet}{lock_suffix}")
        self.wallet_state = sql(wallet)
        client = f"SELECT {_listed(CLIENT_COLUMNS)} FROM clients"
        self.client_by_id = sql(f"{client} WHERE id = ?")
        self.client_by_name = sql(f"{client} WHERE name = ?")
        self.client_by_token_hash = sql(f"{client} WHERE token_hash = ?")
        self.clients = sql(f"{client} ORDER BY name")
        limits = tables.ScopedLimit.__tablename__
        owner = tables.ScopedLimit.owner.key
        self.client_with_payment = sql(
            f"SELECT {_listed(CLIENT_COLUMNS, 'c')}, "
            f"EXISTS (SELECT 1 FROM {limits} WHERE {owner} IN (c.id, {GLOBAL_SCOPE})), "
            f"{_listed(STORED_COLUMNS, 'p')} "
            "FROM clients c LEFT JOIN payments p "
            "ON p.client_id = c.id AND p.idempotency_key = ? WHERE c.id = ?"
        )
        """A client, whether it or every client has scoped limits, and its payment under an
        idempotency key (NULLs: none), in one statement."""
        self.owned_payment = sql(
            f"SELECT c.{tables.Client.revoked_at_ms.key}, {_listed(STORED_COLUMNS, 'p')} "
            "FROM clients c LEFT JOIN payments p "
            "ON p.id = ? AND p.client_id = c.id WHERE c.id = ?"
        )
        """A client's revocation time and its payment of an id (NULLs: none), in one statement."""
        self.payment = sql(f"SELECT {_listed(STORED_COLUMNS)} FROM payments WHERE id = ?")
        owed = (
            "SELECT COUNT(*), COALESCE(SUM(amount), 0) FROM payments "
            "WHERE released_at_ms IS NULL AND status != ?"
        )
        self.outstanding = sql(owed)
        self.outstanding_of = sql(f"{owed} AND payer = ?")
        """Count and sum of the payments not settled and not released (status settled[, payer])."""
        self.payment_row = sql(f"SELECT {_listed(PAYMENT_COLUMNS)} FROM payments WHERE id = ?")
        """A payment's every column (``PAYMENT_COLUMNS``), for its event's snapshot."""
        self.report_tx = sql(
            "UPDATE payments SET reported_tx = ? WHERE id = ? AND reported_tx IS NULL"
        )
        """Keep (tx hash, id) as the transaction a server claimed, unless one is kept already."""
        self.insert_payment = sql(_insert("payments", PAYMENT_INSERT_COLUMNS))
        self.insert_event = sql(_insert("payment_events", EVENT_COLUMNS))
        self.insert_decision = sql(_insert("decisions", DECISION_COLUMNS))
        self.lifetimes = sql(
            "SELECT scope, amount FROM spend_buckets "
            f"WHERE scope IN (?, ?) AND span = {buckets.LIFETIME} AND start_ms = 0"
        )
        self.set_bucket = sql(
            "INSERT INTO spend_buckets (scope, span, start_ms, amount) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (scope, span, start_ms) DO UPDATE SET amount = excluded.amount"
        )
        """Set one bucket (scope, span, start, amount) to an amount."""
        self.sub_bucket = sql(
            "UPDATE spend_buckets SET amount = amount - ? "
            "WHERE scope = ? AND span = ? AND start_ms = ?"
        )
        """Take (amount, scope, span, start) off one bucket, if it exists."""
        spans = ", ".join(str(span) for span in buckets.FINE_SPANS)
        self.prune = sql(f"DELETE FROM spend_buckets WHERE span IN ({spans}) AND start_ms < ?")
        """Delete the fine buckets starting before a time."""
        self.horizon = (
            f"SELECT amount FROM spend_buckets WHERE scope = {GLOBAL_SCOPE} "
            f"AND span = {HORIZON_SPAN} AND start_ms = 0"
        )
        self._moves: dict[tuple[str, ...], str] = {}
        self._adds: dict[int, str] = {}
        self._sums: dict[tuple[int, bool], str] = {}
        self._pairs: dict[tuple[int, int], str] = {}

    def sql(self, text: str) -> str:
        """``text`` with its ``?`` placeholders in this driver's style."""
        return text if self.placeholder == "?" else text.replace("?", self.placeholder)

    @staticmethod
    def tail(table: str) -> str:
        """The newest row's id and hash of a hash-chained table."""
        return f"SELECT id, hash FROM {table} ORDER BY id DESC LIMIT 1"

    def move(self, columns: tuple[str, ...]) -> str:
        """Set ``columns`` of a payment (values, then id and the status it must have now)."""
        found = self._moves.get(columns)
        if found is None:
            named = _named(tables.Payment, columns)
            found = self._moves[columns] = self.sql(
                f"UPDATE payments SET {', '.join(f'{c} = ?' for c in named)} "
                "WHERE id = ? AND status = ?"
            )
        return found

    def add_buckets(self, rows: int) -> str:
        """Add to ``rows`` buckets (scope, span, start, amount), creating missing ones."""
        found = self._adds.get(rows)
        if found is None:
            values = ", ".join(["(?, ?, ?, ?)"] * rows)
            found = self._adds[rows] = self.sql(
                f"INSERT INTO spend_buckets (scope, span, start_ms, amount) VALUES {values} "
                "ON CONFLICT (scope, span, start_ms) DO UPDATE "
                "SET amount = spend_buckets.amount + excluded.amount"
            )
        return found

    def window_sums(self, windows: int, per_client: bool) -> str:
        """Per window: its bucket sums then its edge; then the lifetime and the horizon.

        Parameters (``window_params``), per window: (scope, span, first, end)
        for each range of its plan, then ([client,] edge start, edge end); then
        the scope.
        """
        found = self._sums.get((windows, per_client))
        if found is None:
            found = self._sums[(windows, per_client)] = self.sql(
                f"SELECT {self._sum_parts(windows, per_client)}"
            )
        return found

    def window_sums_pair(self, client_windows: int, global_windows: int) -> str:
        """``window_sums`` of a client's scope, then of the global one, as one statement.

        One statement is one round trip to PostgreSQL instead of two; the
        parameters are the client's ``window_params``, then the global scope's.
        """
        key = (client_windows, global_windows)
        found = self._pairs.get(key)
        if found is None:
            client = self._sum_parts(client_windows, per_client=True)
            found = self._pairs[key] = self.sql(
                f"SELECT {client}, {self._sum_parts(global_windows, per_client=False)}"
            )
        return found

    def _sum_parts(self, windows: int, per_client: bool) -> str:
        per_window = [_bucket_sum()] * (len(buckets.SPANS) + 1) + [_edge_sum(per_client)]
        lifetime = (
            "(SELECT amount FROM spend_buckets "
            f"WHERE scope = ? AND span = {buckets.LIFETIME} AND start_ms = 0)"
        )
        return ", ".join([*(per_window * windows), lifetime, f"({self.horizon})"])


@cache
def statements(paramstyle: str, dialect: str) -> Statements:
    """The statements for a driver's paramstyle (``qmark`` or ``format``/``pyformat``)."""
    return Statements(
        placeholder="?" if paramstyle == "qmark" else "%s",
        lock_suffix=" FOR UPDATE" if dialect == "postgresql" else "",
    )


def window_params(scope: int, starts: Sequence[int], per_client: bool) -> list[int]:
    """The parameters of ``Statements.window_sums`` for windows starting at ``starts``."""
    params: list[int] = []
    for start in starts:
        plan = buckets.plan(start)
        for span, first, end in plan.ranges:
            params += (scope, span, first, end)
        if per_client:
            params.append(scope)
        params += plan.edge
    params.append(scope)
    return params
