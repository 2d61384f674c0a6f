"""Clients, the wallet row and budgets: the operator's settings, read by every Pay.

Every change here appends an admin event holding the state it left
(``ChainsTx._admin_event``), so it takes the writer lock first like any other
append. Reads go through the statements and decoders of ``walletd.db.hot``,
the same ones Pay uses.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from walletd.db import hot, tables
from walletd.db.chains import ChainsTx
from walletd.db.records import ClientRecord, WalletState
from walletd.domain import audit
from walletd.domain.budget import Budget
from walletd.errors import InvalidRequestError, NotFoundError


class ClientsTx(ChainsTx):
    """Clients, the freeze switch and the budgets, each change recorded as an admin event."""

    # --- the wallet row -------------------------------------------------------------------

    def wallet_state(self) -> WalletState:
        """Read the wallet row without locking it."""
        return hot.wallet_state(self._raw(self._sql.wallet_state).fetchone())

    def set_frozen(self, frozen: bool, at_ms: int | None = None) -> None:
        """Stop or resume every payment (recorded as an admin event)."""
        self._serialise()
        self._state = None
        self._session.execute(
            update(tables.WalletState).where(tables.WalletState.id == 1).values(frozen=frozen)
        )
        self._admin_event(audit.FREEZE, "", {"frozen": frozen}, at_ms)

    def set_global_budget(self, budget: Budget, at_ms: int | None = None) -> None:
        """Replace the budget that caps all clients together (recorded as an admin event)."""
        self._serialise()
        self._state = None
        values = hot.budget_values(budget)
        self._session.execute(
            update(tables.WalletState).where(tables.WalletState.id == 1).values(**values)
        )
        self._admin_event(audit.BUDGET_SET, "", values, at_ms)

    # --- clients --------------------------------------------------------------------------

    def client_by_name(self, name: str) -> ClientRecord:
        """The named client; raises NotFoundError."""
        row = self._raw(self._sql.client_by_name, (name,)).fetchone()
        if row is None:
            raise NotFoundError(f"no client named {name!r}")
        return hot.client_record(row)

    def client_by_id(self, client_id: int) -> ClientRecord:
        """The client with this id (it exists: payments reference it)."""
        row = self._raw(self._sql.client_by_id, (client_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"no client with id {client_id}")
        return hot.client_record(row)

    def list_clients(self) -> list[ClientRecord]:
        """Every client, by name."""
        return [hot.client_record(row) for row in self._raw(self._sql.clients).fetchall()]

    def add_client(self, name: str, token_hash: str, scopes: str, now_ms: int) -> None:
        """Create a client (recorded as an admin event); its name must be new."""
        self._serialise()
        row = tables.Client(
            name=name,
            token_hash=token_hash,
            scopes=scopes,
            created_at_ms=now_ms,
            payees="",
            hosts="",
        )
        self._session.add(row)
        try:
            self._session.flush()
        except IntegrityError as exc:
            raise InvalidRequestError(f"a client named {name!r} already exists") from exc
        state = audit.client_state({c: getattr(row, c) for c in audit.CLIENT_FIELDS})
        self._admin_event(audit.CLIENT_ADD, name, state, now_ms)

    def revoke_client(self, name: str, now_ms: int) -> None:
        """Revoke a client's token at once (recorded as an admin event, unless it already was)."""
        self._serialise()
        self.client_by_name(name)
        result = self._session.execute(
            update(tables.Client)
            .where(tables.Client.name == name, tables.Client.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms)
        )
        if getattr(result, "rowcount", 0) == 1:
            self._admin_event(audit.CLIENT_REVOKE, name, {"revoked_at_ms": now_ms}, now_ms)

    def set_client_budget(self, name: str, budget: Budget, at_ms: int | None = None) -> None:
        """Replace a client's budget (recorded as an admin event)."""
        self._serialise()
        self.client_by_name(name)
        values = hot.budget_values(budget)
        self._session.execute(
            update(tables.Client).where(tables.Client.name == name).values(**values)
        )
        self._admin_event(audit.BUDGET_SET, name, values, at_ms)
