"""Admin events: every client, budget and freeze change, hash-chained.

``admin_events`` records each change of a client (added, revoked), a budget
(a client's or the global one) and the freeze switch, with the state it left,
in the change's own transaction. Rows are chained like ``payment_events``
(see ``walletd.domain.audit``), and ``walletd audit verify`` replays them and
compares the result with the ``clients`` and ``wallet_state`` rows.

The upgrade writes the first row: a ``snapshot`` of every client and of the
wallet row as they are now, so an existing ledger is covered from this
revision on (how those rows came to be before it was not recorded).

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-07
"""

from __future__ import annotations

import json
import time

import sqlalchemy as sa
from alembic import op

from walletd.domain import audit

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def _snapshot() -> None:
    conn = op.get_bind()
    clients = sa.table("clients", *(sa.column(n) for n in audit.CLIENT_FIELDS))
    wallet = sa.table(
        "wallet_state",
        sa.column("id"),
        sa.column("frozen", sa.Boolean),
        *(sa.column(n) for n in audit.LIMIT_FIELDS),
    )
    rows = conn.execute(sa.select(clients).order_by(clients.c.id)).mappings()
    state = conn.execute(sa.select(wallet).where(wallet.c.id == 1)).mappings().one()
    data = {
        "clients": [audit.client_state(dict(row)) for row in rows],
        "wallet": audit.wallet_state(dict(state)),
    }
    doc: dict[str, object] = {
        "id": 1,
        "at_ms": time.time_ns() // 1_000_000,
        "operation": audit.SNAPSHOT,
        "client": "",
        "data": json.dumps(data, sort_keys=True),
        "prev_hash": audit.GENESIS,
    }
    doc["hash"] = audit.admin_event_hash(doc)
    events = sa.table("admin_events", *(sa.column(n) for n in doc))
    conn.execute(sa.insert(events), [doc])


def upgrade() -> None:
    op.create_table(
        "admin_events",
        sa.Column("id", sa.Integer(), autoincrement=True, nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("operation", sa.String(length=32), nullable=False),
        sa.Column("client", sa.String(length=64), nullable=False),
        sa.Column("data", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.String(length=64), nullable=False),
        sa.Column("hash", sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_admin_events")),
    )
    _snapshot()


def downgrade() -> None:
    op.drop_table("admin_events")
