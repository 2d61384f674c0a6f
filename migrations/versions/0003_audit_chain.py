"""Tamper-evident ledger: hash-chained payment events, and the Pay decision log.

``payment_events`` gains ``payment_hash``, ``prev_hash`` and ``hash`` (see
``walletd.domain.audit`` for what each covers). Existing events are chained
here, in id order; each one's ``payment_hash`` is the payment row as it is at
migration time, since earlier states were never recorded: history before this
revision is anchored as of the upgrade. ``decisions`` records every Pay
decision, paid or refused, chained the same way.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

from walletd.domain import audit

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def _backfill_events() -> None:
    """Chain every existing event, oldest id first."""
    conn = op.get_bind()
    payments = sa.table("payments", *(sa.column(name) for name in audit.PAYMENT_FIELDS))
    fields = [f for f in audit.EVENT_FIELDS if f not in ("payment_hash", "prev_hash")]
    events = sa.table(
        "payment_events", *(sa.column(n) for n in (*fields, "payment_hash", "prev_hash", "hash"))
    )
    digests = {
        row["id"]: audit.payment_digest(dict(row))
        for row in conn.execute(sa.select(payments)).mappings()
    }
    prev = audit.GENESIS
    updates: list[dict[str, Any]] = []
    query = sa.select(*(events.c[n] for n in fields)).order_by(events.c.id)
    for row in conn.execute(query).mappings():
        # An event without its payment row (possible only with foreign keys off) is
        # chained anyway; `walletd audit verify` names it.
        snapshot = digests.get(row["payment_id"], audit.GENESIS)
        doc = {**row, "payment_hash": snapshot, "prev_hash": prev}
        prev = audit.event_hash(doc)
        updates.append({"eid": row["id"], "ph": doc["payment_hash"], "pv": doc["prev_hash"],
                        "h": prev})  # fmt: skip
    if updates:
        conn.execute(
            events.update()
            .where(events.c.id == sa.bindparam("eid"))
            .values(
                payment_hash=sa.bindparam("ph"),
                prev_hash=sa.bindparam("pv"),
                hash=sa.bindparam("h"),
            ),
            updates,
        )


def upgrade() -> None:
    with op.batch_alter_table("payment_events") as batch:
        for name in ("payment_hash", "prev_hash", "hash"):
            batch.add_column(sa.Column(name, sa.String(length=64), nullable=True))
    _backfill_events()
    with op.batch_alter_table("payment_events") as batch:
        for name in ("payment_hash", "prev_hash", "hash"):
            batch.alter_column(name, existing_type=sa.String(length=64), nullable=False)
    op.create_table(
        "decisions",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("client_id", sa.Integer(), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("reason", sa.String(length=32), nullable=False),
        sa.Column("rule", sa.String(length=64), nullable=False),
        sa.Column("message", sa.Text(), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=False),
        sa.Column("host", sa.String(length=255), nullable=False),
        sa.Column("payee", sa.String(length=42), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("labels", sa.Text(), nullable=False),
        sa.Column("payment_id", sa.String(length=40), nullable=True),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.ForeignKeyConstraint(
            ["client_id"], ["clients.id"], name=op.f("fk_decisions_client_id_clients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_decisions")),
    )
    op.create_index("ix_decisions_at", "decisions", ["at_ms"])
    op.create_index("ix_decisions_client_at", "decisions", ["client_id", "at_ms"])


def downgrade() -> None:
    op.drop_index("ix_decisions_client_at", table_name="decisions")
    op.drop_index("ix_decisions_at", table_name="decisions")
    op.drop_table("decisions")
    with op.batch_alter_table("payment_events") as batch:
        batch.drop_column("hash")
        batch.drop_column("prev_hash")
        batch.drop_column("payment_hash")
