"""upto payments: the authorized maximum next to the amount charged.

An ``upto`` payment authorizes a maximum and the server settles what was
used. ``authorized`` keeps the maximum the payer signed for (0 for every
other kind, whose whole ``amount`` is the authorization); ``amount`` is what
counts against budgets: the maximum while the payment is open, the amount
the chain shows charged once it settles, the rest released.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("authorized", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("authorized")
