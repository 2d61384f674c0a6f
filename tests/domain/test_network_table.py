"""The pinned network table matches the reference SDK, and USD conversion is exact."""

from __future__ import annotations

import pytest
from eth_utils.address import to_checksum_address
from hypothesis import given, strategies as st
from x402.mechanisms.evm.default_assets import DEFAULT_ASSETS
from x402.mechanisms.evm.v1.constants import V1_NETWORK_CHAIN_IDS

from walletd.domain.networks import (
    EIP3009,
    KNOWN_NETWORKS,
    PERMIT2,
    Asset,
    asset_allowed,
    by_caip2,
    known_asset_entry,
    to_token_units,
    to_usd_atomic,
)


def test_every_reference_network_and_stablecoin_is_pinned_identically() -> None:
    ours = {
        net.caip2: [
            (a.address, a.eip712_name, a.eip712_version, a.decimals, a.symbol,
             a.transfer_method, a.supports_eip2612)
            for a in net.assets
        ]
        for net in KNOWN_NETWORKS
    }  # fmt: skip
    reference = {
        caip2: [
            (e["asset"], e["name"], e["version"], e["decimals"], e["symbol"],
             e.get("asset_transfer_method", EIP3009), e.get("supports_eip2612", False))
            for e in entries
        ]
        for caip2, entries in DEFAULT_ASSETS.items()
    }  # fmt: skip
    assert ours == reference


def test_chain_ids_v1_names_and_addresses_are_consistent() -> None:
    assert len({n.caip2 for n in KNOWN_NETWORKS}) == len(KNOWN_NETWORKS)
    for net in KNOWN_NETWORKS:
        assert net.caip2 == f"eip155:{net.chain_id}"
        if net.v1_name:
            assert V1_NETWORK_CHAIN_IDS[net.v1_name] == net.chain_id
        else:
            assert net.chain_id not in V1_NETWORK_CHAIN_IDS.values()
        for asset in net.assets:
            assert asset.address == to_checksum_address(asset.address)
            assert asset.transfer_method in (EIP3009, PERMIT2)
        assert by_caip2(net.caip2) is net


EIGHTEEN = Asset("mUSD", "0x" + "11" * 20, "Mezo USD", "1", 18, PERMIT2)
SIX = Asset("USDC", "0x" + "22" * 20, "USDC", "2", 6)
TWO = Asset("TWO", "0x" + "33" * 20, "Two", "1", 2)


@pytest.mark.parametrize(
    ("asset", "amount", "usd"),
    [
        (SIX, 3000, 3000),
        (EIGHTEEN, 3000 * 10**12, 3000),
        (EIGHTEEN, 10**12, 1),
        (EIGHTEEN, 10**12 + 1, None),
        (EIGHTEEN, 1, None),
        (EIGHTEEN, 10**12 - 1, None),
        (TWO, 5, 50_000),
    ],
)
def test_token_amount_converts_to_usd_atomic_units_exactly_or_not_at_all(
    asset: Asset, amount: int, usd: int | None
) -> None:
    assert to_usd_atomic(asset, amount) == usd


@given(st.integers(min_value=0, max_value=2**200), st.sampled_from([SIX, EIGHTEEN, TWO]))
def test_usd_and_token_units_round_trip_exactly(usd: int, asset: Asset) -> None:
    if asset is TWO and usd % 10**4:
        with pytest.raises(ValueError):
            to_token_units(asset, usd)
        return
    assert to_usd_atomic(asset, to_token_units(asset, usd)) == usd


def test_asset_allowlist_by_symbol_and_by_network() -> None:
    celo = by_caip2("eip155:42220")
    usdc, usdt, _usat = celo.assets
    assert asset_allowed(celo, usdt, ())
    assert asset_allowed(celo, usdc, ("USDC",)) and not asset_allowed(celo, usdt, ("USDC",))
    assert asset_allowed(celo, usdt, ("eip155:42220/USDT",))
    assert not asset_allowed(celo, usdt, ("eip155:1/USDT",))
    assert known_asset_entry("USDT0") and known_asset_entry("eip155:42220/USAT")
    assert not known_asset_entry("DAI") and not known_asset_entry("eip155:8453/USDT0")
