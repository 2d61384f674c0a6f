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
from walletd.domain.networks import DEFAULT_ENABLED, Network, find_network
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


@dataclass(frozen=True)
class Choice:
    """The entry walletd will pay, with the facts the signer needs."""

    requirement: Requirement
    network: Network
    validity_seconds: int


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


def _check_asset(req: Requirement, net: Network) -> None:
    if req.asset.lower() != net.usdc.lower():
        raise _deny("asset", f"asset {req.asset} is not USDC {net.usdc} on {net.caip2}")


def _check_extra(req: Requirement, net: Network) -> None:
    extra = req.extra
    method = extra.get("assetTransferMethod")
    if method not in (None, "eip3009"):
        raise _deny("transfer_method", f"assetTransferMethod {method!r} is not eip3009")
    flow = extra.get("paymentFlow")
    if flow not in (None, "authorization"):
        raise _deny("payment_flow", f"paymentFlow {flow!r} is not supported")
    for key, pinned in (("name", net.eip712_name), ("version", net.eip712_version)):
        if key in extra and extra[key] != pinned:
            raise _deny(
                "eip712_domain",
                f"extra.{key} {extra[key]!r:.40} disagrees with {net.caip2} USDC {pinned!r}",
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


def check_requirement(req: Requirement, ctx: Context) -> Network:
    """Apply every non-budget rule to one entry; return its pinned network.

    Raises:
        PolicyDeniedError: naming the first rule the entry breaks.
    """
    _check_scheme(req, ctx)
    net = find_network(req.network, ctx.limits.networks)
    if net is None:
        raise _deny("network", f"network {req.network!r} is not enabled")
    _check_asset(req, net)
    _check_extra(req, net)
    _check_payee(req, ctx)
    _check_host(ctx)
    _check_amount_and_validity(req, ctx)
    return net


def _passing(demand: Demand, ctx: Context) -> tuple[list[Choice], list[RefusedError]]:
    passing: list[Choice] = []
    errors: list[RefusedError] = []
    for entry in demand.entries:
        if isinstance(entry, InvalidEntry):
            errors.append(entry.error)
            continue
        try:
            net = check_requirement(entry, ctx)
        except PolicyDeniedError as exc:
            errors.append(exc)
            continue
        validity = min(entry.max_timeout_seconds, ctx.limits.max_validity_seconds)
        passing.append(Choice(entry, net, validity))
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
    cheapest = min(passing, key=lambda choice: choice.requirement.amount)
    amount = cheapest.requirement.amount
    check_spend(ctx.budget, ctx.spent, amount)
    check_spend(ctx.global_budget, ctx.global_spent, amount, scope="global_")
    return cheapest
