"""Key events: every change of the signing key (passphrase change, rotation), hash-chained.

``key_events`` records what was done to the keystore, when, and the payer
address before and after (equal for a passphrase change). It never holds a
secret: no passphrase, no key, no ciphertext. Rows are chained like
``payment_events`` and ``decisions`` (see ``walletd.domain.audit``), so
``walletd audit verify`` covers them. The table starts empty: earlier key
operations were not recorded.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "key_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("old_address", sa.String(length=42), nullable=False),
        sa.Column("new_address", sa.String(length=42), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_key_events")),
    )


def downgrade() -> None:
    op.drop_table("key_events")
