"""The Pay path's statements, run on the DBAPI cursor of the ledger transaction.

Executing a statement through the ORM costs 100-400 µs, through SQLAlchemy Core
50-100 µs, through the driver 5-10 µs; a Pay runs about ten. So the statements
every Pay makes are plain SQL here, run on the very connection (and so in the
very transaction: SQLite's ``BEGIN IMMEDIATE``, PostgreSQL's row lock) of the
``LedgerTx`` that asks. Both ledgers speak this SQL (SQLite >= 3.24 and
PostgreSQL: ``ON CONFLICT ... DO UPDATE``, multi-row ``VALUES``); only the
placeholder and ``FOR UPDATE`` differ. Driver exceptions are turned into
StorageError by ``LedgerTx`` exactly like SQLAlchemy's.

Every statement is built once from the constants below (table and column
names, spans); values only ever travel as parameters.
"""

# ruff: noqa: S608  (SQL text from constants only; values are always parameters)

from __future__ import annotations

from collections.abc import Sequence
from functools import cache

from walletd.domain import audit, buckets

GLOBAL_SCOPE = 0
"""The spend-bucket scope of every client together (client ids start at 1)."""

HORIZON_SPAN = -1
"""Span of the row (0, -1, 0) that holds the prune horizon of the fine buckets."""

LIMITS = "per_request, hourly, daily, monthly, total, payees, hosts"

CLIENT_COLUMNS = f"id, name, scopes, revoked_at_ms, {LIMITS}"
"""What a client read returns (``ledger._raw_client`` takes them in this order)."""
CLIENT_WIDTH = len(CLIENT_COLUMNS.split(","))
"""How many of a joined row's values are the client's."""

PAYMENT_INSERT_COLUMNS: tuple[str, ...] = (
    "id", "client_id", "idempotency_key", "fingerprint", "status", "amount", "payee",
    "network", "asset", "payer", "method", "url", "host", "nonce", "valid_after",
    "valid_before", "header_name", "header_value", "labels", "created_at_ms", "kind",
)  # fmt: skip
"""What a new payment row is inserted with; the other columns start NULL."""

EVENT_COLUMNS = (*audit.EVENT_FIELDS, "hash")
DECISION_COLUMNS = (*audit.DECISION_FIELDS, "hash")


def _insert(table: str, columns: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({', '.join('?' * len(columns))})"


def _qualified(alias: str, columns: str) -> str:
    return ", ".join(f"{alias}.{name.strip()}" for name in columns.split(","))


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
        self.lock_state = sql(
            f"SELECT frozen, {LIMITS} FROM wallet_state WHERE id = 1{lock_suffix}"
        )
        client = f"SELECT {CLIENT_COLUMNS} FROM clients"
        self.client_by_id = sql(f"{client} WHERE id = ?")
        self.client_by_token_hash = sql(f"{client} WHERE token_hash = ?")
        stored = (
            "id, client_id, fingerprint, status, amount, payee, network, valid_before, "
            "header_name, header_value"
        )
        self.client_with_payment = sql(
            f"SELECT {_qualified('c', CLIENT_COLUMNS)}, "
            f"{_qualified('p', stored)} FROM clients c LEFT JOIN payments p "
            "ON p.client_id = c.id AND p.idempotency_key = ? WHERE c.id = ?"
        )
        """A client and its payment under an idempotency key (NULLs: none), in one statement."""
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
