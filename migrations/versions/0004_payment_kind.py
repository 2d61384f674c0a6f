"""Payment kind: ``exact`` (an EIP-3009 authorization) or ``transfer`` (a direct ERC-20 transfer).

Every existing row is an authorization, so the column is added with the
server default ``exact`` and kept NOT NULL. For a ``transfer`` row, ``nonce``
holds the transaction hash (its identity on chain) and the reconciler checks
the receipt instead of ``authorizationState``.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-28
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.add_column(
            sa.Column("kind", sa.String(length=16), nullable=False, server_default="exact")
        )


def downgrade() -> None:
    with op.batch_alter_table("payments") as batch:
        batch.drop_column("kind")
