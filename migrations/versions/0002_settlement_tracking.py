"""Settlement tracking: the reported and the confirmed transaction, and a status index.

The reconciler scans open payments by status on every pass, and checks the
server's claimed transaction (``reported_tx``) against the chain before it
records the confirmed one (``settled_tx``).

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("payments", sa.Column("reported_tx", sa.String(length=66), nullable=True))
    op.add_column("payments", sa.Column("settled_tx", sa.String(length=66), nullable=True))
    op.create_index("ix_payments_status", "payments", ["status"])


def downgrade() -> None:
    op.drop_index("ix_payments_status", table_name="payments")
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("settled_tx")
        batch.drop_column("reported_tx")
