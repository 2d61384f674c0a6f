"""Approvals: payments above a threshold wait for a human decision.

Adds ``approve_above`` (an amount in atomic units, NULL: no approval needed)
to ``clients`` and ``wallet_state``, and the ``approvals`` table: one row per
held payment, with its threshold, expiry and decision. Every existing row
starts with no threshold, which is also what the admin events replay to, so
``walletd audit verify`` holds across the upgrade.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("clients") as batch:
        batch.add_column(sa.Column("approve_above", sa.BigInteger(), nullable=True))
    with op.batch_alter_table("wallet_state") as batch:
        batch.add_column(sa.Column("approve_above", sa.BigInteger(), nullable=True))
    op.create_table(
        "approvals",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("threshold", sa.BigInteger(), nullable=False),
        sa.Column("threshold_scope", sa.String(length=8), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("expires_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("decided_at_ms", sa.BigInteger(), nullable=True),
        sa.Column("decided_by", sa.String(length=64), nullable=False),
        sa.Column("note", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_approvals_client_id_clients")
        ),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_approvals_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_approvals")),
        sa.UniqueConstraint("payment_id", name=op.f("uq_approvals_payment_id")),
    )
    op.create_index(
        "ix_approvals_status_expires", "approvals", ["status", "expires_at_ms"], unique=False
    )


def downgrade() -> None:
    op.drop_index("ix_approvals_status_expires", table_name="approvals")
    op.drop_table("approvals")
    with op.batch_alter_table("wallet_state") as batch:
        batch.drop_column("approve_above")
    with op.batch_alter_table("clients") as batch:
        batch.drop_column("approve_above")
