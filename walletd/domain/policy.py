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
from walletd.domain.direct import KIND_EXACT, KIND_PERMIT2, KIND_UPTO
from walletd.domain.networks import (
    DEFAULT_ASSETS,
    DEFAULT_ENABLED,
    EIP3009,
    KNOWN_NETWORKS,
    PERMIT2,
    Asset,
    Network,
    asset_allowed,
    find_network,
    to_usd_atomic,
)
from walletd.domain.permit2 import EXACT_PROXY_ADDRESS, PERMIT2_ADDRESS, UPTO_PROXY_ADDRESS
from walletd.errors import PolicyDeniedError, RefusedError

SCHEMES = ("exact", "upto")
"""The x402 schemes walletd pays: ``exact`` (EIP-3009 or Permit2) and ``upto`` (Permit2)."""

PERMIT2_EXTRA_ADDRESSES = {
    "spender": "proxy",
    "proxy": "proxy",
    "proxyAddress": "proxy",
    "permit2Proxy": "proxy",
    "permit2": PERMIT2_ADDRESS,
    "permit2Address": PERMIT2_ADDRESS,
}
"""Keys of ``extra`` that would name a Permit2 address; any value but walletd's own is refused."""

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
    """The entry's amount in USD atomic units (6 decimals): what budgets count (upto: the max)."""
    method: str = EIP3009
    """How it is signed: ``eip3009`` or ``permit2`` (every ``upto`` entry)."""
    facilitator: str = ""
    """upto only: ``extra.facilitatorAddress``, the one account the proxy lets settle."""

    @property
    def kind(self) -> str:
        """The ledger's payment kind: ``upto``, ``permit2`` (exact over Permit2) or ``exact``."""
        if self.requirement.scheme == "upto":
            return KIND_UPTO
        return KIND_PERMIT2 if self.method == PERMIT2 else KIND_EXACT


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


def _check_scheme(req: Requirement, version: int) -> None:
    if req.scheme not in SCHEMES:
        raise _deny("scheme", f"scheme {req.scheme!r} is not 'exact' or 'upto'")
    if req.scheme == "upto" and version != 2:
        raise _deny("scheme", "scheme 'upto' needs x402 version 2")


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


def _transfer_method(req: Requirement, asset: Asset, version: int) -> str:
    """``eip3009`` or ``permit2``, as the entry asks and the token allows."""
    method = req.extra.get("assetTransferMethod")
    if req.scheme == "upto" or method == PERMIT2:
        if version != 2 or method not in (None, PERMIT2):
            raise _deny("transfer_method", f"assetTransferMethod {method!r:.20} with Permit2")
        return PERMIT2
    if method not in (None, EIP3009) or asset.transfer_method != EIP3009:
        raise _deny(
            "transfer_method",
            f"assetTransferMethod {method!r:.20} for {asset.symbol}, which has no EIP-3009 "
            f"({asset.transfer_method})",
        )
    return EIP3009


def _check_permit2_extra(req: Requirement) -> str:
    """Refuse a demand naming a Permit2 or proxy address not walletd's own; the facilitator."""
    own_proxy = UPTO_PROXY_ADDRESS if req.scheme == "upto" else EXACT_PROXY_ADDRESS
    for key, pinned in PERMIT2_EXTRA_ADDRESSES.items():
        want = own_proxy if pinned == "proxy" else pinned
        value = req.extra.get(key)
        if key in req.extra and (not isinstance(value, str) or value.lower() != want.lower()):
            raise _deny("permit2_address", f"extra.{key} {value!r:.50} is not {want}")
    if req.scheme != "upto":
        return ""
    facilitator = req.extra.get("facilitatorAddress")
    if not isinstance(facilitator, str) or not _is_address(facilitator):
        raise _deny("upto_facilitator", "upto needs extra.facilitatorAddress, a 0x address")
    if facilitator.lower() == ZERO_ADDRESS:
        raise _deny("upto_facilitator", "extra.facilitatorAddress is the zero address")
    return facilitator


def _is_address(value: str) -> bool:
    hexpart = value[2:]
    return (
        value.startswith("0x")
        and len(hexpart) == 40
        and all(c in "0123456789abcdefABCDEF" for c in hexpart)
    )


def _check_extra(req: Requirement, net: Network, asset: Asset) -> None:
    extra = req.extra
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


def check_requirement(req: Requirement, ctx: Context, version: int = 2) -> Choice:
    """Apply every non-budget rule to one entry of an x402 ``version`` demand.

    Returns the choice: its pinned network and stablecoin, its amount in USD
    atomic units, its transfer method and (upto) facilitator.

    Raises:
        PolicyDeniedError: naming the first rule the entry breaks.
    """
    _check_scheme(req, version)
    net = find_network(req.network, ctx.limits.networks)
    if net is None:
        raise _deny("network", f"network {req.network!r} is not enabled")
    asset = _check_asset(req, net, ctx.limits)
    usd = _usd_amount(req, asset)
    method = _transfer_method(req, asset, version)
    facilitator = _check_permit2_extra(req) if method == PERMIT2 else ""
    _check_extra(req, net, asset)
    _check_payee(req, ctx)
    _check_host(ctx)
    _check_amount_and_validity(req, ctx)
    validity = min(req.max_timeout_seconds, ctx.limits.max_validity_seconds)
    return Choice(req, net, validity, asset, usd, method, facilitator)


def _passing(demand: Demand, ctx: Context) -> tuple[list[Choice], list[RefusedError]]:
    passing: list[Choice] = []
    errors: list[RefusedError] = []
    for entry in demand.entries:
        if isinstance(entry, InvalidEntry):
            errors.append(entry.error)
            continue
        try:
            passing.append(check_requirement(entry, ctx, demand.version))
        except PolicyDeniedError as exc:
            errors.append(exc)
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


def usd_amount_of(req: Requirement) -> int:
    """An entry's amount in USD atomic units when the table knows its token, for the log.

    Whether or not its network is enabled; a token the table does not know
    (or an amount not whole in USD units) is taken as given.
    """
    net = find_network(req.network, tuple(n.caip2 for n in KNOWN_NETWORKS))
    asset = net.asset(req.asset) if net is not None else None
    usd = to_usd_atomic(asset, req.amount) if asset is not None else None
    return req.amount if usd is None else usd
