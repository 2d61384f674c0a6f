"""Operator use cases: clients, budgets and the freeze switch.

The CLI runs these directly against the ledger (the operator owns the data
dir), so they work whether or not the daemon runs; the daemon reads clients,
budgets and the freeze flag inside every Pay transaction, so changes take
effect on the next payment. Each change is recorded by the ledger as a
hash-chained admin event in its own transaction (``walletd audit verify``
replays them against the rows).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from walletd.db.ledger import ClientRecord, LedgerTx, Store
from walletd.domain.budget import WINDOWS, Budget, BudgetState, window_states
from walletd.domain.limits import (
    ALL,
    GLOBAL_OWNER,
    RATE_FIELDS,
    LimitUsage,
    ScopedLimit,
    contradictions,
    parse_selector,
)
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
    rates: Mapping[str, int] = field(default_factory=dict)
    """Signed payments allowed per rolling ``minute``, ``hour`` or ``day``."""
    selector: str | None = None
    """A scoped budget (``label:KEY=VALUE``, ``host=HOST``, ``payee=0x...``); None: the own one."""
    approve_above: int | None = None
    """Hold payments above this amount for a human approval (None: keep as it is)."""
    approve_above_off: bool = False
    """Remove the approval threshold."""

    def owns_fields(self) -> bool:
        """Whether the change touches the own budget's columns (amounts, allowlists, clear)."""
        own = (self.per_request, self.hourly, self.daily, self.monthly, self.total)
        return (
            self.clear
            or self.payees is not None
            or self.hosts is not None
            or any(v is not None for v in own)
            or not self.rates
        )


def _apply(current: Budget, change: BudgetChange) -> Budget:
    base = Budget() if change.clear else current
    given = {k: getattr(change, k) for k in (*WINDOWS, "payees", "hosts")}
    given = {k: v for k, v in given.items() if v is not None}
    if "payees" in given:
        given["payees"] = frozenset(p.lower() for p in given["payees"])
    if "hosts" in given:
        given["hosts"] = frozenset(h.lower() for h in given["hosts"])
    return replace(base, **given)


def set_budget(store: Store, name: str | None, change: BudgetChange) -> None:
    """Change a client's budget, or the global one when ``name`` is None.

    With a ``selector`` the change is to that scoped budget; rates without one
    are the owner's own rate limits. Each change is its own admin event.
    """
    selector = None if change.selector is None else parse_selector(change.selector).text
    if selector is not None and (change.payees is not None or change.hosts is not None):
        raise InvalidRequestError("a scoped budget has no allowlists (--payee, --host)")
    threshold_given = change.approve_above is not None or change.approve_above_off
    if selector is not None and threshold_given:
        raise InvalidRequestError(
            "an approval threshold is a client's or global, not scoped (--for)"
        )
    with store.write() as tx:
        state = tx.lock_state()  # first: concurrent changes apply one after the other, none lost
        owner = GLOBAL_OWNER if name is None else tx.client_by_name(name).id
        if selector is None and change.owns_fields():
            if name is None:
                tx.set_global_budget(_apply(tx.lock_state().budget, change), now_ms())
            else:
                tx.set_client_budget(name, _apply(tx.client_by_name(name).budget, change), now_ms())
        if selector is not None or change.rates or change.clear:
            _set_limit(tx, owner, name or "", change, selector or ALL.text)
        if selector is None:
            current = state.approve_above if name is None else tx.client_by_name(name).approve_above
            wanted = _threshold(current, change)
            if wanted != current:
                tx.set_approval_threshold(name, wanted, now_ms())


def _set_limit(tx: LedgerTx, owner: int, name: str, change: BudgetChange, selector: str) -> None:
    """Apply the change's amounts (scoped only) and rates to one scoped-limit row."""
    current = next((lim for lim in tx.limits_of(owner) if lim.selector.text == selector), None)
    values = {} if current is None or change.clear else current.values()
    if selector:
        for window in WINDOWS:
            given = getattr(change, window)
            if given is not None:
                values[window] = given
    for window, count in change.rates.items():
        values[RATE_FIELDS[window]] = count
    if current is None and all(v is None for v in values.values()):
        return  # nothing to set, nothing to remove
    tx.set_limit(owner, name, selector, values, now_ms())


@dataclass(frozen=True)
class LimitsView:
    """An owner's scoped limits with what they count now, and the contradictions found."""

    own: LimitUsage | None
    """The owner's own rate limits (selector ALL), if any."""
    scoped: tuple[LimitUsage, ...]
    warnings: tuple[str, ...]


def show_limits(store: Store, name: str | None) -> LimitsView:
    """An owner's rate limits and scoped budgets (global when ``name`` is None), and warnings."""
    now = now_ms()
    with store.read() as tx:
        state = tx.wallet_state()
        global_limits = tx.limits_of(GLOBAL_OWNER)
        if name is None:
            budget, limits, what = state.budget, global_limits, "global"
            outer: tuple[Budget | None, list[ScopedLimit] | None] = (None, None)
        else:
            client = tx.client_by_name(name)
            budget, limits, what = client.budget, tx.limits_of(client.id), f"client {name}"
            outer = (state.budget, global_limits)
        usages = tx.usage(limits, now)
    warnings = contradictions(what, budget, limits, *outer)
    own = next((u for u in usages if u.limit.selector == ALL), None)
    scoped = tuple(u for u in usages if u.limit.selector != ALL)
    return LimitsView(own, scoped, tuple(warnings))


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
