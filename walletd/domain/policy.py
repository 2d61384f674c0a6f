"""Which entry of a demand walletd may pay, if any: every rule, pure.

Among the well-formed ``accepts``, walletd keeps those that pass every policy
rule, and pays the cheapest that also fits every budget. Rules are checked in a
fixed order and each refusal names its rule, so an operator can see exactly
why a demand was refused. Budgets are monotone in the amount, so if the
cheapest passing entry does not fit, no dearer one can.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from walletd.domain.budget import Budget, check_spend
from walletd.domain.demand import Demand, InvalidEntry, Requirement
from walletd.domain.networks import (
    DEFAULT_ASSETS,
    DEFAULT_ENABLED,
    EIP3009,
    Asset,
    Network,
    asset_allowed,
    find_network,
    to_usd_atomic,
)
from walletd.errors import PolicyDeniedError, RefusedError

ZERO_ADDRESS = "0x" + "0" * 40


@dataclass(frozen=True)
class Limits:
    """Daemon-wide rules that do not depend on the client."""

    networks: tuple[str, ...] = DEFAULT_ENABLED
    """Enabled networks by CAIP-2 id; Base only unless Base Sepolia is opted in."""
    max_validity_seconds: int = 300
    """validBefore is at most this far ahead, whatever the demand's maxTimeoutSeconds."""
    max_demand_timeout_seconds: int = 3600
    """A demand asking for a longer timeout than this is refused as hostile."""
    assets: tuple[str, ...] = DEFAULT_ASSETS
    """Stablecoins walletd pays in (``walletd.domain.networks.asset_allowed``); empty: all."""


@dataclass(frozen=True)
class Choice:
    """The entry walletd will pay, with the facts the signer needs."""

    requirement: Requirement
    network: Network
    validity_seconds: int
    asset: Asset
    """The pinned stablecoin the entry names."""
    amount: int
    """The entry's amount in USD atomic units (6 decimals): what budgets count."""


@dataclass(frozen=True)
class Context:
    """Everything the rules look at besides the demand itself."""

    url_host: str
    budget: Budget
    global_budget: Budget
    spent: Mapping[str, int]
    global_spent: Mapping[str, int]
    limits: Limits


def _deny(rule: str, message: str) -> PolicyDeniedError:
    return PolicyDeniedError(f"policy {rule}: {message}", {"rule": rule})


def _check_scheme(req: Requirement, ctx: Context) -> None:
    if req.scheme != "exact":
        raise _deny("scheme", f"scheme {req.scheme!r} is not 'exact'")


def _check_asset(req: Requirement, net: Network, limits: Limits) -> Asset:
    asset = net.asset(req.asset)
    if asset is None:
        symbols = ", ".join(f"{a.symbol} {a.address}" for a in net.assets)
        raise _deny(
            "asset", f"asset {req.asset} is not a pinned stablecoin on {net.caip2} ({symbols})"
        )
    if not asset_allowed(net, asset, limits.assets):
        raise _deny("asset_allowlist", f"{asset.symbol} on {net.caip2} is not in [policy] assets")
    decimals = req.extra.get("decimals")
    if decimals is not None and (type(decimals) is not int or decimals != asset.decimals):
        raise _deny(
            "decimals",
            f"extra.decimals {decimals!r:.20} disagrees with {asset.symbol}'s {asset.decimals}",
        )
    return asset


def _check_extra(req: Requirement, net: Network, asset: Asset) -> None:
    extra = req.extra
    method = extra.get("assetTransferMethod")
    if method not in (None, EIP3009) or asset.transfer_method != EIP3009:
        raise _deny(
            "transfer_method",
            f"assetTransferMethod {method!r:.20} for {asset.symbol} ({asset.transfer_method}) "
            "is not supported",
        )
    flow = extra.get("paymentFlow")
    if flow not in (None, "authorization"):
        raise _deny("payment_flow", f"paymentFlow {flow!r} is not supported")
    for key, pinned in (("name", asset.eip712_name), ("version", asset.eip712_version)):
        if key in extra and extra[key] != pinned:
            raise _deny(
                "eip712_domain",
                f"extra.{key} {extra[key]!r:.40} disagrees with {net.caip2} "
                f"{asset.symbol} {pinned!r}",
            )


def _check_payee(req: Requirement, ctx: Context) -> None:
    if req.pay_to.lower() == ZERO_ADDRESS:
        raise _deny("payee_zero", "payTo is the zero address")
    for scope, budget in (("", ctx.budget), ("global ", ctx.global_budget)):
        if budget.payees and req.pay_to.lower() not in budget.payees:
            raise _deny("payee_allowlist", f"payTo {req.pay_to} is not in the {scope}allowlist")


def _check_host(ctx: Context) -> None:
    for scope, budget in (("", ctx.budget), ("global ", ctx.global_budget)):
        if budget.hosts and ctx.url_host.lower() not in budget.hosts:
            raise _deny("host_allowlist", f"host {ctx.url_host!r} is not in the {scope}allowlist")


def _usd_amount(req: Requirement, asset: Asset) -> int:
    usd = to_usd_atomic(asset, req.amount)
    if usd is None:
        raise _deny(
            "amount_exact",
            f"amount {req.amount} {asset.symbol} ({asset.decimals} decimals) is not a whole "
            "number of USD atomic units (6 decimals)",
        )
    return usd


def _check_amount_and_validity(req: Requirement, ctx: Context) -> None:
    if req.amount <= 0:
        raise _deny("amount_positive", "amount must be greater than 0")
    if req.max_timeout_seconds > ctx.limits.max_demand_timeout_seconds:
        raise _deny(
            "validity",
            f"maxTimeoutSeconds {req.max_timeout_seconds} > "
            f"{ctx.limits.max_demand_timeout_seconds}",
        )
    if not ctx.budget.has_amount_limit():
        raise _deny("budget_unset", "the client has no budget; set one with `walletd budget set`")


def check_requirement(req: Requirement, ctx: Context) -> tuple[Network, Asset, int]:
    """Apply every non-budget rule to one entry.

    Returns its pinned network, its pinned stablecoin and its amount in USD atomic units.

    Raises:
        PolicyDeniedError: naming the first rule the entry breaks.
    """
    _check_scheme(req, ctx)
    net = find_network(req.network, ctx.limits.networks)
    if net is None:
        raise _deny("network", f"network {req.network!r} is not enabled")
    asset = _check_asset(req, net, ctx.limits)
    usd = _usd_amount(req, asset)
    _check_extra(req, net, asset)
    _check_payee(req, ctx)
    _check_host(ctx)
    _check_amount_and_validity(req, ctx)
    return net, asset, usd


def _passing(demand: Demand, ctx: Context) -> tuple[list[Choice], list[RefusedError]]:
    passing: list[Choice] = []
    errors: list[RefusedError] = []
    for entry in demand.entries:
        if isinstance(entry, InvalidEntry):
            errors.append(entry.error)
            continue
        try:
            net, asset, usd = check_requirement(entry, ctx)
        except PolicyDeniedError as exc:
            errors.append(exc)
            continue
        validity = min(entry.max_timeout_seconds, ctx.limits.max_validity_seconds)
        passing.append(Choice(entry, net, validity, asset, usd))
    return passing, errors


def choose(demand: Demand, ctx: Context) -> Choice:
    """Pick the cheapest entry that passes every rule and fits every budget.

    Raises:
        InvalidDemandError: no entry was well-formed.
        PolicyDeniedError: no well-formed entry passes the rules (names the first).
        BudgetExceededError: the cheapest passing entry does not fit a budget.
    """
    passing, errors = _passing(demand, ctx)
    if not passing:
        policy = [e for e in errors if isinstance(e, PolicyDeniedError)]
        raise policy[0] if policy else errors[0]
    cheapest = min(passing, key=lambda choice: choice.amount)
    amount = cheapest.amount
    check_spend(ctx.budget, ctx.spent, amount)
    check_spend(ctx.global_budget, ctx.global_spent, amount, scope="global_")
    return cheapest
