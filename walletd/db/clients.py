"""Clients, the wallet row and budgets: the operator's settings, read by every Pay.

None of these writes touches a hash-chained table, so none takes the writer
lock (``Transaction._serialise``). Reads go through the statements and
decoders of ``walletd.db.hot``, the same ones Pay uses.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError

from walletd.db import hot, tables
from walletd.db.records import ClientRecord, WalletState
from walletd.db.transaction import Transaction
from walletd.domain.budget import Budget
from walletd.errors import InvalidRequestError, NotFoundError


class ClientsTx(Transaction):
    """Clients, the freeze switch and the budgets."""

    # --- the wallet row -------------------------------------------------------------------

    def wallet_state(self) -> WalletState:
        """Read the wallet row without locking it."""
        return hot.wallet_state(self._raw(self._sql.wallet_state).fetchone())

    def set_frozen(self, frozen: bool) -> None:
        """Stop or resume every payment."""
        self._state = None
        self._session.execute(
            update(tables.WalletState).where(tables.WalletState.id == 1).values(frozen=frozen)
        )

    def set_global_budget(self, budget: Budget) -> None:
        """Replace the budget that caps all clients together."""
        self._state = None
        self._session.execute(
            update(tables.WalletState)
            .where(tables.WalletState.id == 1)
            .values(**hot.budget_values(budget))
        )

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
        """Create a client; its name must be new."""
        self._session.add(
            tables.Client(
                name=name,
                token_hash=token_hash,
                scopes=scopes,
                created_at_ms=now_ms,
                payees="",
                hosts="",
            )
        )
        try:
            self._session.flush()
        except IntegrityError as exc:
            raise InvalidRequestError(f"a client named {name!r} already exists") from exc

    def revoke_client(self, name: str, now_ms: int) -> None:
        """Revoke a client's token at once."""
        self.client_by_name(name)
        self._session.execute(
            update(tables.Client)
            .where(tables.Client.name == name, tables.Client.revoked_at_ms.is_(None))
            .values(revoked_at_ms=now_ms)
        )

    def set_client_budget(self, name: str, budget: Budget) -> None:
        """Replace a client's budget."""
        self.client_by_name(name)
        self._session.execute(
            update(tables.Client)
            .where(tables.Client.name == name)
            .values(**hot.budget_values(budget))
        )
