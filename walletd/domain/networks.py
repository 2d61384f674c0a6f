"""walletd's own table of networks, USDC addresses and EIP-712 domains.

A 402 demand comes from a server walletd does not trust, so nothing in it that
walletd can know itself is taken from it: the asset address and the EIP-712
domain (name, version, chain id, verifying contract) come from this table.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Network:
    """One EVM network walletd can pay on, with its pinned USDC contract."""

    caip2: str
    """CAIP-2 id used by x402 v2, e.g. ``eip155:8453``."""
    v1_name: str
    """Legacy x402 v1 network name, e.g. ``base``."""
    chain_id: int
    usdc: str
    """Checksummed USDC contract address."""
    eip712_name: str
    """The token's EIP-712 domain name (differs between mainnet and testnet)."""
    eip712_version: str


BASE = Network(
    caip2="eip155:8453",
    v1_name="base",
    chain_id=8453,
    usdc="0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913",
    eip712_name="USD Coin",
    eip712_version="2",
)

BASE_SEPOLIA = Network(
    caip2="eip155:84532",
    v1_name="base-sepolia",
    chain_id=84532,
    usdc="0x036CbD53842c5426634e7929541eC2318f3dCF7e",
    eip712_name="USDC",
    eip712_version="2",
)

KNOWN_NETWORKS: tuple[Network, ...] = (BASE, BASE_SEPOLIA)
DEFAULT_ENABLED: tuple[str, ...] = (BASE.caip2,)


def find_network(name: str, enabled: tuple[str, ...]) -> Network | None:
    """The enabled network named ``name`` (CAIP-2 or v1 name), or None."""
    for net in KNOWN_NETWORKS:
        if net.caip2 in enabled and name in (net.caip2, net.v1_name):
            return net
    return None


def by_caip2(caip2: str) -> Network:
    """The known network with this CAIP-2 id; raises KeyError for an unknown one."""
    for net in KNOWN_NETWORKS:
        if net.caip2 == caip2:
            return net
    raise KeyError(caip2)
