"""Policy over the network table: enabled networks, the asset allowlist, decimals, USD exactness."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from walletd.domain.budget import Budget
from walletd.domain.demand import decode_demand
from walletd.domain.networks import BASE, CELO, MEGAETH, STABLE
from walletd.domain.policy import Choice, Context, Limits, choose
from walletd.errors import PolicyDeniedError

PAY_TO = "0x90F79bf6Eb2c4f870365E96051896F3aC51Fb01A"
ALL = (BASE.caip2, CELO.caip2, MEGAETH.caip2, STABLE.caip2)


def _entry(net: Any, asset: Any, amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "scheme": "exact",
        "network": net.caip2,
        "asset": asset.address,
        "amount": str(amount),
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 60,
        "extra": {"name": asset.eip712_name, "version": asset.eip712_version, **extra},
    }


def _choose(
    *entries: dict[str, Any], networks: tuple[str, ...] = ALL, assets: tuple[str, ...] = ()
) -> Choice:
    doc = {"x402Version": 2, "accepts": list(entries), "resource": {"url": "https://a.test/"}}
    demand = decode_demand(base64.b64encode(json.dumps(doc).encode()).decode(), b"")
    ctx = Context(
        url_host="a.test",
        budget=Budget(per_request=1_000_000),
        global_budget=Budget(),
        spent={},
        global_spent={},
        limits=Limits(networks=networks, assets=assets),
    )
    return choose(demand, ctx)


def _rule(*entries: dict[str, Any], **kw: Any) -> str:
    with pytest.raises(PolicyDeniedError) as info:
        _choose(*entries, **kw)
    return str(info.value.details["rule"])


def test_second_stablecoin_of_an_enabled_network_is_paid_with_its_own_domain() -> None:
    usdt = CELO.assets[1]
    choice = _choose(_entry(CELO, usdt, 2500))
    assert choice.asset == usdt and choice.network == CELO and choice.amount == 2500


def test_network_not_enabled_is_refused() -> None:
    assert _rule(_entry(CELO, CELO.assets[0], 10), networks=(BASE.caip2,)) == "network"


def test_asset_outside_the_allowlist_is_refused_and_an_allowed_sibling_paid() -> None:
    usdt0 = STABLE.assets[0]
    assert _rule(_entry(STABLE, usdt0, 10), assets=("USDC",)) == "asset_allowlist"
    usdc = _entry(BASE, BASE.default_asset, 20)
    assert _choose(_entry(STABLE, usdt0, 10), usdc, assets=("USDC",)).network == BASE


def test_decimals_disagreeing_with_the_table_are_refused() -> None:
    assert _rule(_entry(BASE, BASE.default_asset, 10, decimals=18)) == "decimals"
    assert _rule(_entry(BASE, BASE.default_asset, 10, decimals="6")) == "decimals"


def test_amount_not_exact_in_usd_atomic_units_is_refused_never_rounded() -> None:
    musd = MEGAETH.assets[0]
    assert _rule(_entry(MEGAETH, musd, 10**12 + 1)) == "amount_exact"
    assert _rule(_entry(MEGAETH, musd, 1)) == "amount_exact"


def test_coin_without_eip3009_is_paid_only_through_permit2() -> None:
    musd = MEGAETH.assets[0]
    assert _rule(_entry(MEGAETH, musd, 10**12)) == "transfer_method"
    choice = _choose(_entry(MEGAETH, musd, 10**12, assetTransferMethod="permit2"))
    assert (choice.method, choice.amount) == ("permit2", 1)


def test_cheapest_is_judged_in_usd_not_token_units() -> None:
    musd = MEGAETH.assets[0]
    # 5e12 units of an 18-decimal coin are $0.000005: cheaper than 10 USDC atomic units.
    cheap = _entry(MEGAETH, musd, 5 * 10**12, assetTransferMethod="permit2")
    choice = _choose(_entry(BASE, BASE.default_asset, 10), cheap)
    assert (choice.network, choice.amount) == (MEGAETH, 5)
