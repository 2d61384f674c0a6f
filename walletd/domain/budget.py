"""Budgets: limits per window, and the pure check of one spend against them.

Hourly and daily are rolling windows ending now; monthly is the UTC calendar month;
total is lifetime. Amounts are integers of USDC atomic units. The database layer
sums what each window has spent; this module only decides.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime

from walletd.domain.money import format_usd
from walletd.errors import BudgetExceededError

WINDOWS: tuple[str, ...] = ("per_request", "hourly", "daily", "monthly", "total")
"""Every window, in the order checks and reports use."""

SPAN_WINDOWS: tuple[str, ...] = ("hourly", "daily", "monthly", "total")
"""Windows that sum past spending (per_request looks only at the one amount)."""


@dataclass(frozen=True)
class Budget:
    """Limits of one client (or of all clients together, for the global budget).

    ``None`` means no limit in that window. ``payees`` and ``hosts`` are allowlists;
    empty means any.
    """

    per_request: int | None = None
    hourly: int | None = None
    daily: int | None = None
    monthly: int | None = None
    total: int | None = None
    payees: frozenset[str] = field(default_factory=frozenset)
    """Lower-cased payee addresses."""
    hosts: frozenset[str] = field(default_factory=frozenset)
    """Lower-cased URL hosts."""

    def limit(self, window: str) -> int | None:
        """The limit of one window by name."""
        value: int | None = getattr(self, window)
        return value

    def summed_windows(self) -> tuple[str, ...]:
        """The summing windows this budget limits: the only sums its checks read."""
        return tuple(w for w in SPAN_WINDOWS if getattr(self, w) is not None)

    def has_amount_limit(self) -> bool:
        """True when at least one window caps amounts."""
        return any(self.limit(w) is not None for w in WINDOWS)


def window_starts(now_ms: int) -> dict[str, int]:
    """The first millisecond (Unix epoch) each summing window counts from."""
    now = datetime.fromtimestamp(now_ms / 1000, tz=UTC)
    month_start = now.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    return {
        "hourly": now_ms - 3_600_000 + 1,
        "daily": now_ms - 86_400_000 + 1,
        "monthly": int(month_start.timestamp()) * 1000,
        "total": 0,
    }


def check_spend(
    budget: Budget, spent: Mapping[str, int], amount: int, *, scope: str = "", suffix: str = ""
) -> None:
    """Raise BudgetExceededError unless ``amount`` fits every window of ``budget``.

    ``spent`` maps each summing window to what it already counts. ``scope`` prefixes
    the window name in the error (``global_``) and ``suffix`` follows it (a scoped
    budget's ``[selector]``), so the caller knows which budget hit.
    """
    for window in WINDOWS:
        limit = budget.limit(window)
        if limit is None:
            continue
        already = 0 if window == "per_request" else spent.get(window, 0)
        if already + amount > limit:
            raise BudgetExceededError(
                f"{scope}{window}{suffix} budget exceeded: limit {format_usd(limit)} USD, "
                f"spent {format_usd(already)} USD, requested {format_usd(amount)} USD",
                {
                    "window": f"{scope}{window}{suffix}",
                    "limit": str(limit),
                    "spent": str(already),
                    "requested": str(amount),
                },
            )


@dataclass(frozen=True)
class WindowState:
    """What one window allows, has spent, and has left."""

    window: str
    limit: int | None
    spent: int
    remaining: int | None


@dataclass(frozen=True)
class RateState:
    """One rate limit: signed payments allowed per rolling window, and those counted."""

    window: str
    """As RATE_LIMITED names it (``payments_per_minute``, ``payments_per_day[host=x]``)."""
    per: str
    """``minute``, ``hour`` or ``day``."""
    limit: int
    count: int

    @property
    def remaining(self) -> int:
        """Payments still allowed in the window now."""
        return max(self.limit - self.count, 0)


@dataclass(frozen=True)
class BudgetState:
    """A client's windows (and the global ones) as GetBudget reports them."""

    client: str
    windows: tuple[WindowState, ...]
    frozen: bool
    hosts: tuple[str, ...] = ()
    """The client's host allowlist (lower-cased, sorted); empty means any host."""
    global_hosts: tuple[str, ...] = ()
    """The global host allowlist, which every client's URLs must also pass."""
    scoped: tuple[WindowState, ...] = ()
    """The amount windows of the scoped budgets that apply to the client's payments
    (its own and the global ones), named as refusals name them (``daily[label:tool=x]``)."""
    rates: tuple[RateState, ...] = ()
    """The rate limits that apply to the client (its own and the global ones)."""

    def allows_host(self, host: str) -> bool:
        """Whether Pay's host rule lets a URL on ``host`` be paid for."""
        host = host.lower()
        return all(not hosts or host in hosts for hosts in (self.hosts, self.global_hosts))


def window_states(budget: Budget, spent: Mapping[str, int], prefix: str = "") -> list[WindowState]:
    """The state of each limited window, for reports; unlimited windows are left out."""
    states = []
    for window in WINDOWS:
        limit = budget.limit(window)
        if limit is None:
            continue
        used = 0 if window == "per_request" else spent.get(window, 0)
        states.append(WindowState(prefix + window, limit, used, max(limit - used, 0)))
    return states
