"""Initial ledger: wallet state, clients with budgets, payments and their events.

Revision ID: 0001
Revises:
Create Date: 2026-11-25
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def _limits() -> list[sa.Column[int]]:
    return [
        sa.Column(name, sa.BigInteger(), nullable=True)
        for name in ("per_request", "hourly", "daily", "monthly", "total")
    ]


def upgrade() -> None:
    state = op.create_table(
        "wallet_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("frozen", sa.Boolean(), nullable=False),
        *_limits(),
        sa.Column("payees", sa.Text(), nullable=False),
        sa.Column("hosts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_wallet_state")),
    )
    op.bulk_insert(state, [{"id": 1, "frozen": False, "payees": "", "hosts": ""}])
    op.create_table(
        "clients",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("scopes", sa.String(length=64), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_at_ms", sa.BigInteger(), nullable=True),
        *_limits(),
        sa.Column("payees", sa.Text(), nullable=False),
        sa.Column("hosts", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clients")),
        sa.UniqueConstraint("name", name=op.f("uq_clients_name")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_clients_token_hash")),
    )
    op.create_table(
        "payments",
        sa.Column("id", sa.String(length=40), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("fingerprint", sa.String(length=64), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("payee", sa.String(length=42), nullable=False),
        sa.Column("network", sa.String(length=32), nullable=False),
        sa.Column("asset", sa.String(length=42), nullable=False),
        sa.Column("payer", sa.String(length=42), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("nonce", sa.String(length=66), nullable=False),
        sa.Column("valid_after", sa.BigInteger(), nullable=False),
        sa.Column("valid_before", sa.BigInteger(), nullable=False),
        sa.Column("header_name", sa.String(length=32), nullable=False),
        sa.Column("header_value", sa.Text(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("created_at_ms", sa.BigInteger(), nullable=False),
        sa.Column("released_at_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_payments_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payments")),
        sa.UniqueConstraint("nonce", name=op.f("uq_payments_nonce")),
    )
    op.create_index(
        "uq_payments_client_key", "payments", ["client_id", "idempotency_key"], unique=True
    )
    op.create_index("ix_payments_client_created", "payments", ["client_id", "created_at_ms"])
    op.create_index("ix_payments_created", "payments", ["created_at_ms"])
    op.create_table(
        "payment_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("cause", sa.Text(), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["payment_id"], ["payments.id"], name=op.f("fk_payment_events_payment_id_payments")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_payment_events")),
    )
    op.create_index("ix_payment_events_payment", "payment_events", ["payment_id"])


def downgrade() -> None:
    op.drop_index("ix_payment_events_payment", table_name="payment_events")
    op.drop_table("payment_events")
    op.drop_index("ix_payments_created", table_name="payments")
    op.drop_index("ix_payments_client_created", table_name="payments")
    op.drop_index("uq_payments_client_key", table_name="payments")
    op.drop_table("payments")
    op.drop_table("clients")
    op.drop_table("wallet_state")
