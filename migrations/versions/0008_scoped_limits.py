"""Scoped limits: budgets per label, host or payee, and rate limits.

One row per owner (a client's id, or 0 for every client together) and
selector (empty for all the owner's payments, ``label:KEY=VALUE``,
``host=HOST``, ``payee=0x...``), holding amount windows and signed payments
per rolling minute, hour and day. Their running totals live in
``spend_buckets`` under negative scopes (see ``walletd.db.tables.ScopedLimit``);
changes are admin events (``limit-set``). A new table: existing rows are untouched.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

_LIMITS = (
    "per_request",
    "hourly",
    "daily",
    "monthly",
    "total",
    "payments_minute",
    "payments_hour",
    "payments_day",
)


def upgrade() -> None:
    op.create_table(
        "scoped_limits",
        sa.Column("id", sa.Integer(), primary_key=True, autoincrement=True),
        sa.Column("owner", sa.BigInteger(), nullable=False),
        sa.Column("selector", sa.Text(), nullable=False),
        *(sa.Column(name, sa.BigInteger(), nullable=True) for name in _LIMITS),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_scoped_limits")),
    )
    op.create_index(
        "uq_scoped_limits_owner_selector", "scoped_limits", ["owner", "selector"], unique=True
    )


def downgrade() -> None:
    op.drop_index("uq_scoped_limits_owner_selector", table_name="scoped_limits")
    op.drop_table("scoped_limits")
    op.execute("DELETE FROM spend_buckets WHERE scope < 0")
