"""Operator use cases: clients, budgets and the freeze switch.

The CLI runs these directly against the ledger (the operator owns the data
dir), so they work whether or not the daemon runs; the daemon reads clients,
budgets and the freeze flag inside every Pay transaction, so changes take
effect on the next payment. Each change is recorded by the ledger as a
hash-chained admin event in its own transaction (``walletd audit verify``
replays them against the rows).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from walletd.db.ledger import ClientRecord, Store
from walletd.domain.budget import Budget, BudgetState, window_states
from walletd.errors import InvalidRequestError
from walletd.service.clock import now_ms
from walletd.service.tokens import hash_token, new_token

SCOPES = frozenset({"pay", "read", "approve"})
"""``approve``: list, approve and deny payments held above an approval threshold."""


def add_client(store: Store, name: str, scopes: frozenset[str]) -> str:
    """Create a client and return its bearer token (shown once, stored hashed)."""
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        raise InvalidRequestError("client name must be 1-64 letters, digits, '-' or '_'")
    unknown = scopes - SCOPES
    if unknown or not scopes:
        raise InvalidRequestError(f"scopes must be a non-empty subset of {sorted(SCOPES)}")
    token = new_token()
    with store.write() as tx:
        tx.add_client(name, hash_token(token), ",".join(sorted(scopes)), now_ms())
    return token


def list_clients(store: Store) -> list[ClientRecord]:
    """Every client."""
    with store.read() as tx:
        return tx.list_clients()


def revoke_client(store: Store, name: str) -> None:
    """Revoke a client's token; its next call fails."""
    with store.write() as tx:
        tx.revoke_client(name, now_ms())


@dataclass(frozen=True)
class BudgetChange:
    """The fields an operator gave to `budget set`; None leaves a field as it is."""

    per_request: int | None = None
    hourly: int | None = None
    daily: int | None = None
    monthly: int | None = None
    total: int | None = None
    payees: frozenset[str] | None = None
    hosts: frozenset[str] | None = None
    clear: bool = False
    """Start from no limits at all (and no approval threshold) before applying the given fields."""
    approve_above: int | None = None
    """Hold payments above this amount for a human approval (None: keep as it is)."""
    approve_above_off: bool = False
    """Remove the approval threshold."""


def _apply(current: Budget, change: BudgetChange) -> Budget:
    base = Budget() if change.clear else current
    own = ("clear", "approve_above", "approve_above_off")
    given = {k: v for k, v in change.__dict__.items() if k not in own and v is not None}
    if "payees" in given:
        given["payees"] = frozenset(p.lower() for p in given["payees"])
    if "hosts" in given:
        given["hosts"] = frozenset(h.lower() for h in given["hosts"])
    return replace(base, **given)


def set_budget(store: Store, name: str | None, change: BudgetChange) -> Budget:
    """Change a client's budget, or the global one when ``name`` is None."""
    with store.write() as tx:
        if name is None:
            state = tx.lock_state()
            budget, threshold = _apply(state.budget, change), state.approve_above
            tx.set_global_budget(budget, now_ms())
        else:
            client = tx.client_by_name(name)
            budget, threshold = _apply(client.budget, change), client.approve_above
            tx.set_client_budget(name, budget, now_ms())
        wanted = _threshold(threshold, change)
        if wanted != threshold:
            tx.set_approval_threshold(name, wanted, now_ms())
    return budget


def _threshold(current: int | None, change: BudgetChange) -> int | None:
    """The approval threshold a change leaves."""
    if change.approve_above is not None and change.approve_above_off:
        raise InvalidRequestError("give an approval threshold or remove it, not both")
    if change.approve_above is not None:
        return change.approve_above
    return None if change.clear or change.approve_above_off else current


def approval_threshold(store: Store, name: str | None) -> int | None:
    """A client's (or the global, for None) approval threshold; None when there is none."""
    with store.read() as tx:
        if name is None:
            return tx.wallet_state().approve_above
        return tx.client_by_name(name).approve_above


def show_budget(store: Store, name: str | None) -> tuple[Budget, BudgetState]:
    """A budget and what its windows have spent (global when ``name`` is None)."""
    now = now_ms()
    with store.read() as tx:
        state = tx.wallet_state()
        if name is None:
            budget, spent, label = state.budget, tx.spent(None, now), "global"
        else:
            client = tx.client_by_name(name)
            budget, spent, label = client.budget, tx.spent(client.id, now), client.name
    return budget, BudgetState(label, tuple(window_states(budget, spent)), state.frozen)


def set_frozen(store: Store, frozen: bool) -> None:
    """Stop (or resume) every payment at once."""
    with store.write() as tx:
        tx.set_frozen(frozen, now_ms())
