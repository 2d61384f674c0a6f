"""Scoped limits: budgets per label, host or payee, and rate limits (payments per window).

A ``ScopedLimit`` belongs to one client or to every client together (owner 0)
and applies to the payments its ``Selector`` picks: all of the owner's
payments (the owner's own rate limits), those carrying a label
(``label:KEY=VALUE``), those for a URL host (``host=HOST``) or those to a payee
(``payee=0x...``). It can cap amounts in the windows of a ``Budget`` and the
number of signed payments per rolling minute, hour and day. A payment must fit
every limit that applies to it, beside its client's and the global budget.

Amounts count while a payment is unreleased, as in the client windows; a
signature counts against a rate limit for good (releasing a payment gives its
money back, not the signature). Both are kept as running totals in
``spend_buckets`` under scopes of their own (``amount_scope``,
``count_scope``); the database layer reads them, this module only decides.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from walletd.domain.budget import (
    WINDOWS,
    Budget,
    RateState,
    WindowState,
    check_spend,
    window_states,
)
from walletd.errors import InvalidRequestError, RateLimitedError

GLOBAL_OWNER = 0
"""The owner of a limit that caps every client together."""

RATE_SPANS: Mapping[str, int] = {"minute": 60_000, "hour": 3_600_000, "day": 86_400_000}
"""The rolling windows of a rate limit, by name, in milliseconds."""

RATE_FIELDS: Mapping[str, str] = {w: f"payments_{w}" for w in RATE_SPANS}
"""The column (and field) holding the rate limit of each window."""

AMOUNT_FIELDS: tuple[str, ...] = WINDOWS
"""The amount windows a scoped budget may cap (as a client's budget does)."""

LIMIT_FIELDS: tuple[str, ...] = (*AMOUNT_FIELDS, *RATE_FIELDS.values())
"""Every limit a ``scoped_limits`` row holds, in column order."""

_LABEL_KEY = re.compile(r"[A-Za-z0-9_.:/\-]{1,64}")
_HOST = re.compile(r"[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9\-]{0,61}[a-z0-9])?)*")
_PAYEE = re.compile(r"0x[0-9a-f]{40}")


@dataclass(frozen=True)
class Subject:
    """What a selector looks at in a payment."""

    client_id: int
    labels: Mapping[str, str]
    host: str
    payee: str


@dataclass(frozen=True)
class Selector:
    """Which of the owner's payments a limit counts: all, or by label, host or payee."""

    kind: str
    """``all``, ``label``, ``host`` or ``payee``."""
    key: str = ""
    """The label's key (``label`` only)."""
    value: str = ""

    @property
    def text(self) -> str:
        """The canonical form, as stored and shown (``""`` for all payments)."""
        if self.kind == "all":
            return ""
        if self.kind == "label":
            return f"label:{self.key}={self.value}"
        return f"{self.kind}={self.value}"

    def matches(self, subject: Subject) -> bool:
        """Whether a payment with these facts is counted."""
        if self.kind == "all":
            return True
        if self.kind == "label":
            return subject.labels.get(self.key) == self.value
        if self.kind == "host":
            return subject.host.lower() == self.value
        return subject.payee.lower() == self.value


ALL = Selector("all")


def _bad(text: str, part: str, why: str) -> InvalidRequestError:
    return InvalidRequestError(
        f"bad selector {text!r}: {part} {why} "
        "(expected label:KEY=VALUE, host=HOST or payee=0x + 40 hex digits)",
        {"field": "selector", "part": part},
    )


def parse_selector(text: str) -> Selector:
    """The selector ``text`` names; raises InvalidRequestError naming the bad part."""
    if text.startswith("label:"):
        key, sep, value = text[len("label:") :].partition("=")
        if not sep:
            raise _bad(text, "label", "needs KEY=VALUE")
        if not _LABEL_KEY.fullmatch(key):
            raise _bad(text, f"label key {key!r}", "must be 1-64 of [A-Za-z0-9_.:/-]")
        if not value or len(value.encode()) > 512:
            raise _bad(text, f"label {key!r} value", "must be 1-512 bytes")
        return Selector("label", key, value)
    kind, sep, value = text.partition("=")
    if not sep or kind not in ("host", "payee"):
        raise _bad(text, f"kind {kind if sep else text!r}", "is not label:, host= or payee=")
    lowered = value.lower()
    if kind == "host" and (len(lowered) > 253 or not _HOST.fullmatch(lowered)):
        raise _bad(text, f"host {value!r}", "is not a host name")
    if kind == "payee" and not _PAYEE.fullmatch(lowered):
        raise _bad(text, f"payee {value!r}", "is not an address (0x + 40 hex digits)")
    return Selector(kind, "", lowered)


@dataclass(frozen=True)
class ScopedLimit:
    """One ``scoped_limits`` row: an owner, a selector, and its limits (None: none)."""

    id: int
    owner: int
    """A client's id, or ``GLOBAL_OWNER``."""
    selector: Selector
    budget: Budget = field(default_factory=Budget)
    """The amount windows (its allowlists are always empty)."""
    payments: Mapping[str, int | None] = field(default_factory=dict)
    """Signed payments allowed per rolling window (``RATE_SPANS`` names)."""

    @property
    def amount_scope(self) -> int:
        """The spend-bucket scope of its running amounts (negative: never a client's)."""
        return -2 * self.id

    @property
    def count_scope(self) -> int:
        """The spend-bucket scope of its running signature counts."""
        return -2 * self.id - 1

    def applies(self, subject: Subject) -> bool:
        """Whether a payment with these facts counts against this limit."""
        return self.owner in (GLOBAL_OWNER, subject.client_id) and self.selector.matches(subject)

    def rate(self, window: str) -> int | None:
        """The rate limit of one window (``minute``, ``hour``, ``day``)."""
        return self.payments.get(window)

    def rate_windows(self) -> tuple[str, ...]:
        """The rate windows this limit caps."""
        return tuple(w for w in RATE_SPANS if self.rate(w) is not None)

    def values(self) -> dict[str, int | None]:
        """Its limits by column name (``LIMIT_FIELDS``)."""
        found: dict[str, int | None] = {w: self.budget.limit(w) for w in AMOUNT_FIELDS}
        found.update({RATE_FIELDS[w]: self.rate(w) for w in RATE_SPANS})
        return found

    def name(self, window: str) -> str:
        """A window's name in refusals and reports (``daily[host=x]``, ``global_hourly``)."""
        prefix = "global_" if self.owner == GLOBAL_OWNER else ""
        scoped = f"[{self.selector.text}]" if self.selector.text else ""
        return f"{prefix}{window}{scoped}"


def limit_from_values(
    ident: int, owner: int, selector: Selector, values: Mapping[str, int | None]
) -> ScopedLimit:
    """A ScopedLimit from its ``LIMIT_FIELDS`` values."""
    per_request, hourly, daily, monthly, total = (values.get(w) for w in AMOUNT_FIELDS)
    budget = Budget(per_request, hourly, daily, monthly, total)
    rates = {w: values.get(column) for w, column in RATE_FIELDS.items()}
    return ScopedLimit(ident, owner, selector, budget, rates)


def rate_starts(now_ms: int) -> dict[str, int]:
    """The first millisecond each rolling rate window counts from."""
    return {w: now_ms - span + 1 for w, span in RATE_SPANS.items()}


@dataclass(frozen=True)
class LimitUsage:
    """One limit with what its windows count now."""

    limit: ScopedLimit
    spent: Mapping[str, int]
    """Amount window -> unreleased amount."""
    counts: Mapping[str, int]
    """Rate window -> signed payments."""


def limit_states(usages: list[LimitUsage]) -> tuple[list[WindowState], list[RateState]]:
    """The scoped amount windows and the rate windows of ``usages``, named as refusals do."""
    windows: list[WindowState] = []
    rates: list[RateState] = []
    for usage in usages:
        limit = usage.limit
        prefix = "global_" if limit.owner == GLOBAL_OWNER else ""
        scoped = f"[{limit.selector.text}]" if limit.selector.text else ""
        for state in window_states(limit.budget, usage.spent, prefix):
            windows.append(
                WindowState(state.window + scoped, state.limit, state.spent, state.remaining)
            )
        for window in limit.rate_windows():
            allowed = limit.rate(window) or 0
            count = usage.counts.get(window, 0)
            rates.append(RateState(limit.name(f"payments_per_{window}"), window, allowed, count))
    return windows, rates


def check_limits(usages: list[LimitUsage], amount: int) -> None:
    """Raise unless one more payment of ``amount`` fits every limit.

    Amounts first (BudgetExceededError, the window named as ``ScopedLimit.name``
    says), then rates (RateLimitedError with the window's limit and count).
    """
    for usage in usages:
        limit = usage.limit
        prefix = "global_" if limit.owner == GLOBAL_OWNER else ""
        scoped = f"[{limit.selector.text}]" if limit.selector.text else ""
        check_spend(limit.budget, usage.spent, amount, scope=prefix, suffix=scoped)
    for usage in usages:
        limit = usage.limit
        for window in limit.rate_windows():
            allowed = limit.rate(window)
            count = usage.counts.get(window, 0)
            if allowed is not None and count + 1 > allowed:
                name = limit.name(f"payments_per_{window}")
                raise RateLimitedError(
                    f"{name} rate limit reached: {count} of {allowed} payments "
                    f"in the last {window}",
                    {"window": name, "limit": str(allowed), "count": str(count), "per": window},
                )


_ORDER = ("per_request", "hourly", "daily", "monthly", "total")


def _order_warnings(what: str, budget: Budget) -> list[str]:
    """A narrower window whose limit is above a wider one's (it can never be reached)."""
    found = []
    for i, narrow in enumerate(_ORDER):
        low = budget.limit(narrow)
        for wide in _ORDER[i + 1 :]:
            high = budget.limit(wide)
            if low is not None and high is not None and low > high:
                found.append(f"{what}: {narrow} is above {wide}, so {narrow} never applies")
    return found


def _rate_order_warnings(what: str, rates: Mapping[str, int | None]) -> list[str]:
    found = []
    names = list(RATE_SPANS)
    for i, narrow in enumerate(names):
        low = rates.get(narrow)
        for wide in names[i + 1 :]:
            high = rates.get(wide)
            if low is not None and high is not None and low > high:
                found.append(
                    f"{what}: {low} payments per {narrow} is above {high} per {wide}, "
                    f"so the {narrow} limit never applies"
                )
    return found


def _above(what: str, budget: Budget, outer: str, outer_budget: Budget) -> list[str]:
    found = []
    for window in _ORDER:
        mine, theirs = budget.limit(window), outer_budget.limit(window)
        if mine is not None and theirs is not None and mine > theirs:
            found.append(f"{what}: {window} is above the {outer} {window}, so it never applies")
    return found


def contradictions(
    what: str,
    own: Budget,
    limits: list[ScopedLimit],
    outer: Budget | None = None,
    outer_limits: list[ScopedLimit] | None = None,
) -> list[str]:
    """Limits that contradict each other: accepted, but ``budget show`` warns.

    ``what`` names the owner (``client alpha``, ``global``); ``own`` is its
    budget and ``limits`` its scoped limits (its rate limits among them);
    ``outer`` and ``outer_limits`` are the global ones when the owner is a client.
    """
    found = _order_warnings(what, own)
    rates = next((lim for lim in limits if lim.selector == ALL), None)
    own_rates = rates.payments if rates is not None else {}
    found += _rate_order_warnings(what, own_rates)
    if outer is not None:
        found += _above(what, own, "global", outer)
        outer_all = next((lim for lim in outer_limits or [] if lim.selector == ALL), None)
        for window in RATE_SPANS:
            mine = own_rates.get(window)
            theirs = outer_all.rate(window) if outer_all is not None else None
            if mine is not None and theirs is not None and mine > theirs:
                found.append(
                    f"{what}: {mine} payments per {window} is above the global {theirs}, "
                    "so it never applies"
                )
    for lim in limits:
        if lim.selector == ALL:
            continue
        scoped = f"{what} [{lim.selector.text}]"
        found += _order_warnings(scoped, lim.budget)
        found += _rate_order_warnings(scoped, lim.payments)
        found += _above(scoped, lim.budget, "own", own)
        for window in RATE_SPANS:
            mine, theirs = lim.rate(window), own_rates.get(window)
            if mine is not None and theirs is not None and mine > theirs:
                found.append(
                    f"{scoped}: {mine} payments per {window} is above the own {theirs}, "
                    "so it never applies"
                )
        kind, value = lim.selector.kind, lim.selector.value
        if kind == "payee" and own.payees and value not in own.payees:
            found.append(f"{scoped}: the payee is not in the payee allowlist, so it never applies")
        if kind == "host" and own.hosts and value not in own.hosts:
            found.append(f"{scoped}: the host is not in the host allowlist, so it never applies")
    return found
