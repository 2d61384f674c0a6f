"""Spend buckets: running totals of unreleased spending per scope, second, minute, hour and day.

Budget windows were summed from the payment rows on every Pay, which costs in
proportion to the window (the lifetime window grows for ever). ``spend_buckets``
keeps the same sums as running totals, changed in the payment's own
transaction (see ``walletd.domain.buckets``). The upgrade fills it from the
unreleased payments already in the ledger, so the totals equal the rows from
the first Pay after it.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-25
"""

from __future__ import annotations

from collections import defaultdict

import sqlalchemy as sa
from alembic import op

from walletd.domain import buckets

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

GLOBAL_SCOPE = 0


def _backfill() -> None:
    conn = op.get_bind()
    payments = sa.table(
        "payments",
        sa.column("client_id", sa.BigInteger),
        sa.column("amount", sa.BigInteger),
        sa.column("created_at_ms", sa.BigInteger),
        sa.column("released_at_ms", sa.BigInteger),
    )
    sums: dict[tuple[int, int, int], int] = defaultdict(int)
    query = sa.select(payments.c.client_id, payments.c.amount, payments.c.created_at_ms).where(
        payments.c.released_at_ms.is_(None)
    )
    for client_id, amount, created in conn.execute(query):
        for scope in (int(client_id), GLOBAL_SCOPE):
            for span, start in buckets.bucket_keys(int(created)):
                sums[(scope, span, start)] += int(amount)
    saturated = {
        scope
        for (scope, span, _), total in sums.items()
        if span == buckets.LIFETIME and total > buckets.INT64_MAX
    }
    rows = [
        {"scope": scope, "span": span, "start_ms": start, "amount": total}
        for (scope, span, start), total in sums.items()
        if scope not in saturated
    ]
    rows += [
        {"scope": scope, "span": buckets.LIFETIME, "start_ms": 0, "amount": buckets.SATURATED}
        for scope in saturated
    ]
    if rows:
        table = sa.table(
            "spend_buckets",
            sa.column("scope", sa.BigInteger),
            sa.column("span", sa.BigInteger),
            sa.column("start_ms", sa.BigInteger),
            sa.column("amount", sa.BigInteger),
        )
        conn.execute(sa.insert(table), rows)


def upgrade() -> None:
    op.create_table(
        "spend_buckets",
        sa.Column("scope", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("span", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("start_ms", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("scope", "span", "start_ms", name=op.f("pk_spend_buckets")),
    )
    _backfill()


def downgrade() -> None:
    op.drop_table("spend_buckets")
