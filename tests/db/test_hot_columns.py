"""Every column Pay's plain SQL names exists, with its type, in the models and the migrated schema.

``walletd.db.hot`` bypasses SQLAlchemy, so nothing else would notice a column
it names going missing (a migration renaming it, say) before a Pay failed.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import fields

import pytest
from sqlalchemy import Engine, inspect

from walletd.db import hot, migrate, tables
from walletd.db.engine import make_engines
from walletd.domain import audit, buckets
from walletd.domain.budget import Budget

_KEYWORDS = frozenset((
    "select", "from", "where", "and", "or", "is", "null", "not", "in", "on", "conflict", "do",
    "set", "update", "insert", "into", "values", "delete", "order", "by", "desc", "limit",
    "left", "join", "for", "coalesce", "sum", "excluded", "as", "exists", "count",
))  # fmt: skip
"""SQL words and functions the hot statements use (anything else is a table, alias or column)."""
_TABLE = re.compile(r"\b(?:FROM|INTO|UPDATE|JOIN)\s+(\w+)(?:\s+(\w+))?")
_NAME = re.compile(r"\b([A-Za-z_]\w*)(?:\.([A-Za-z_]\w*))?")
_CHAINS = audit.CHAINS


def _statements(dialect: str) -> Iterator[str]:
    """Every statement the hot path can send, in ``dialect``'s placeholder style."""
    sql = hot.statements("qmark" if dialect == "sqlite" else "format", dialect)
    yield from (text for name, text in vars(sql).items() if isinstance(text, str) and " " in text)
    yield from (sql.tail(table) for table in _CHAINS)
    yield from (sql.add_buckets(rows) for rows in (1, 2 * len(buckets.SPANS) + 2))
    yield sql.move(("status", "released_at_ms", "settled_tx"))
    for windows in range(1, 5):
        yield sql.window_sums(windows, per_client=True)
        yield sql.window_sums(windows, per_client=False)
        yield sql.window_sums_pair(windows, 4)


def _named_columns(statement: str) -> set[tuple[str, str]]:
    """The (table, column) pairs a statement names; fails on a name no table of it has."""
    text = statement.replace("%s", "?")
    aliases: dict[str, str] = {}
    for table, alias in _TABLE.findall(text):
        if table.lower() in _KEYWORDS:  # ON CONFLICT ... DO UPDATE SET
            continue
        aliases[table] = table
        if alias and alias.lower() not in _KEYWORDS:
            aliases[alias] = table
    inserted = re.search(r"INSERT INTO (\w+)", text)
    if inserted:
        aliases["excluded"] = inserted.group(1)
    found: set[tuple[str, str]] = set()
    for first, second in _NAME.findall(text):
        if second:
            found.add((aliases[first], second))
        elif first.lower() not in _KEYWORDS and first not in aliases:
            owners = {t for t in set(aliases.values()) if first in tables.metadata.tables[t].c}
            assert owners, f"{first!r} is a column of no table in: {statement}"
            found |= {(table, first) for table in owners}
    return found


def _hot_columns(dialect: str) -> set[tuple[str, str]]:
    return {pair for text in _statements(dialect) for pair in _named_columns(text)}


def test_every_column_the_hot_path_names_is_in_the_models() -> None:
    named = _hot_columns("sqlite") | _hot_columns("postgresql")
    missing = {(t, c) for t, c in named if c not in tables.metadata.tables[t].c}
    assert missing == set()
    # the row shapes are among them, so the check covers what Pay decodes
    shapes = {("wallet_state", c) for c in hot.WALLET_COLUMNS}
    shapes |= {("clients", c) for c in hot.CLIENT_COLUMNS}
    shapes |= {("payments", c) for c in hot.STORED_COLUMNS + hot.PAYMENT_INSERT_COLUMNS}
    assert shapes <= named


def test_the_budget_columns_are_the_budget_fields_and_what_the_audit_hashes() -> None:
    # ``hot.budget`` decodes the columns by name into Budget; the audit replays them
    assert tuple(field.name for field in fields(Budget)) == tables.BUDGET_COLUMNS
    assert tables.BUDGET_COLUMNS == audit.LIMIT_FIELDS


@pytest.fixture
def migrated(ledger_url: str) -> Iterator[Engine]:
    engines = make_engines(ledger_url)
    migrate.upgrade(engines.write)
    yield engines.write
    engines.dispose()


def test_every_column_the_hot_path_names_is_in_the_migrated_schema_with_its_type(
    migrated: Engine,
) -> None:
    dialect = migrated.dialect
    inspector = inspect(migrated)
    reflected = {
        table: {c["name"]: c["type"].compile(dialect) for c in inspector.get_columns(table)}
        for table in tables.metadata.tables
    }
    wrong = {}
    for table, column in sorted(_hot_columns(dialect.name)):
        model = tables.metadata.tables[table].c[column].type.compile(dialect)
        if reflected[table].get(column) != model:
            wrong[f"{table}.{column}"] = (model, reflected[table].get(column, "missing"))
    assert wrong == {}


def test_every_hot_statement_compiles_against_the_migrated_schema(migrated: Engine) -> None:
    raw = migrated.raw_connection()
    try:
        cursor = raw.cursor()
        for statement in _statements(migrated.dialect.name):
            params = [None] * (statement.count("?") + statement.count("%s"))
            cursor.execute(f"EXPLAIN {statement}", params)
            cursor.fetchall()
    finally:
        raw.rollback()
        raw.close()
