"""walletd's own table of EVM networks, their USD stablecoins and EIP-712 domains.

A 402 demand comes from a server walletd does not trust, so nothing in it that
walletd can know itself is taken from it: the token address, its decimals, its
transfer method and its EIP-712 domain (name, version, chain id, verifying
contract) come from this table.

The table pins every EVM network and stablecoin of the reference x402 SDK's
default asset table (``x402/mechanisms/evm/default_assets.py`` of x402 2.25,
``DEFAULT_ASSETS``); ``tests/domain/test_network_table.py`` compares the two, so
a drift fails CI. Chain ids are the CAIP-2 references. The legacy x402 v1
names come from the same SDK's ``x402/mechanisms/evm/v1/constants.py``
(``V1_NETWORK_CHAIN_IDS``); a network without one there has none here.

Which of them a deployment pays on is configuration (``[policy] networks`` and
``[policy] assets``), Base mainnet USDC only by default.
"""

from __future__ import annotations

from dataclasses import dataclass

EIP3009 = "eip3009"
"""Transfer method: the token's own ``transferWithAuthorization`` (EIP-3009)."""
PERMIT2 = "permit2"
"""Transfer method: a Permit2 ``permitWitnessTransferFrom`` through the x402 proxy."""

USD_DECIMALS = 6
"""Budgets and the ledger count USD in 6-decimal atomic units, whatever the token's decimals."""


@dataclass(frozen=True)
class Asset:
    """One pinned USD stablecoin on one network."""

    symbol: str
    address: str
    """Checksummed token contract address."""
    eip712_name: str
    """The token's EIP-712 domain name (differs between networks, even for one issuer)."""
    eip712_version: str
    decimals: int
    transfer_method: str = EIP3009
    """``eip3009`` or ``permit2`` (the token has no EIP-3009)."""
    supports_eip2612: bool = False
    """The token has an EIP-2612 ``permit`` (the gas-sponsoring approval path)."""


@dataclass(frozen=True)
class Network:
    """One EVM network walletd can pay on, with its pinned stablecoins (first: the default)."""

    caip2: str
    """CAIP-2 id used by x402 v2, e.g. ``eip155:8453``."""
    v1_name: str
    """Legacy x402 v1 network name, e.g. ``base``; "" when the SDK names none."""
    chain_id: int
    assets: tuple[Asset, ...]
    label: str = ""
    """A human name, for ``walletd networks``."""

    @property
    def default_asset(self) -> Asset:
        """The first stablecoin (USDC on Base): the one direct transfers and balances use."""
        return self.assets[0]

    @property
    def usdc(self) -> str:
        """The default stablecoin's address (USDC on Base and most networks)."""
        return self.assets[0].address

    @property
    def eip712_name(self) -> str:
        """The default stablecoin's EIP-712 name."""
        return self.assets[0].eip712_name

    @property
    def eip712_version(self) -> str:
        """The default stablecoin's EIP-712 version."""
        return self.assets[0].eip712_version

    def asset(self, address: str) -> Asset | None:
        """The pinned stablecoin at ``address`` (any case), or None."""
        wanted = address.lower()
        for asset in self.assets:
            if asset.address.lower() == wanted:
                return asset
        return None


def _usdc(address: str, name: str = "USDC", version: str = "2") -> Asset:
    return Asset("USDC", address, name, version, 6)


def _net(caip2: str, v1_name: str, label: str, *assets: Asset) -> Network:
    return Network(caip2, v1_name, int(caip2.split(":")[1]), assets, label)


# Every entry: x402 2.25 x402/mechanisms/evm/default_assets.py DEFAULT_ASSETS[caip2]
# (address, EIP-712 name/version, decimals, asset_transfer_method, supports_eip2612),
# each issuer's own deployment listing behind it. v1 names: x402/mechanisms/evm/v1/constants.py.
BASE = _net(  # Base mainnet; Circle native USDC
    "eip155:8453", "base", "Base", _usdc("0x833589fCD6eDb6E08f4c7C32D4f71b54bdA02913", "USD Coin")
)
BASE_SEPOLIA = _net(  # Base Sepolia testnet; Circle USDC
    "eip155:84532", "base-sepolia", "Base Sepolia",
    _usdc("0x036CbD53842c5426634e7929541eC2318f3dCF7e"),
)  # fmt: skip
ETHEREUM = _net(  # Ethereum mainnet; Circle USDC
    "eip155:1", "ethereum", "Ethereum",
    _usdc("0xA0b86991c6218b36c1d19D4a2e9Eb0cE3606eB48", "USD Coin"),
)  # fmt: skip
AVALANCHE = _net(  # Avalanche C-Chain; Circle native USDC
    "eip155:43114", "avalanche", "Avalanche C-Chain",
    _usdc("0xB97EF9Ef8734C71904D8002F8b6Bc66Dd9c48a6E", "USD Coin"),
)  # fmt: skip
MEGAETH = _net(  # MegaETH mainnet; MegaUSD: no EIP-3009, EIP-2612 permit, 18 decimals
    "eip155:4326", "megaeth", "MegaETH",
    Asset("MegaUSD", "0xFAfDdbb3FC7688494971a79cc65DCa3EF82079E7", "MegaUSD", "1", 18,
          PERMIT2, True),
)  # fmt: skip
MONAD = _net(  # Monad mainnet; Circle USDC
    "eip155:143", "monad", "Monad", _usdc("0x754704Bc059F8C67012fEd69BC8A327a5aafb603")
)
MONAD_TESTNET = _net(  # Monad testnet; Circle USDC
    "eip155:10143", "monad-testnet", "Monad testnet",
    _usdc("0x534b2f3A21130d7a60830c2Df862319e593943A3"),
)  # fmt: skip
STABLE = _net(  # Stable mainnet; USDT0 (EIP-3009)
    "eip155:988", "stable", "Stable",
    Asset("USDT0", "0x779Ded0c9e1022225f8E0630b35a9b54bE713736", "USDT0", "1", 6),
)  # fmt: skip
STABLE_TESTNET = _net(  # Stable testnet; USDT0 (EIP-3009)
    "eip155:2201", "stable-testnet", "Stable testnet",
    Asset("USDT0", "0x78Cf24370174180738C5B8E352B6D14c83a6c9A9", "USDT0", "1", 6),
)  # fmt: skip
POLYGON = _net(  # Polygon PoS mainnet; Circle native USDC
    "eip155:137", "polygon", "Polygon",
    _usdc("0x3c499c542cEF5E3811e1192ce70d8cC03d5c3359", "USD Coin"),
)  # fmt: skip
ARBITRUM = _net(  # Arbitrum One; Circle native USDC
    "eip155:42161", "", "Arbitrum One",
    _usdc("0xaf88d065e77c8cC2239327C5EDb3A432268e5831", "USD Coin"),
)  # fmt: skip
ARBITRUM_SEPOLIA = _net(  # Arbitrum Sepolia; Circle USDC
    "eip155:421614", "", "Arbitrum Sepolia",
    _usdc("0x75faf114eafb1BDbe2F0316DF893fd58CE46AA4d", "USD Coin"),
)  # fmt: skip
MEZO = _net(  # Mezo mainnet; mUSD: no EIP-3009, EIP-2612 permit, 18 decimals
    "eip155:31612", "", "Mezo",
    Asset("mUSD", "0xdD468A1DDc392dcdbEf6db6e34E89AA338F9F186", "Mezo USD", "1", 18,
          PERMIT2, True),
)  # fmt: skip
MEZO_TESTNET = _net(  # Mezo testnet; mUSD: no EIP-3009, EIP-2612 permit, 18 decimals
    "eip155:31611", "", "Mezo testnet",
    Asset("mUSD", "0x118917a40FAF1CD7a13dB0Ef56C86De7973Ac503", "Mezo USD", "1", 18,
          PERMIT2, True),
)  # fmt: skip
RADIUS = _net(  # Radius Network; SBC: no EIP-3009, EIP-2612 permit, 6 decimals
    "eip155:723487", "", "Radius",
    Asset("SBC", "0x33ad9e4BD16B69B5BFdED37D8B5D9fF9aba014Fb", "Stable Coin", "1", 6,
          PERMIT2, True),
)  # fmt: skip
RADIUS_TESTNET = _net(  # Radius testnet; SBC (same address as mainnet)
    "eip155:72344", "", "Radius testnet",
    Asset("SBC", "0x33ad9e4BD16B69B5BFdED37D8B5D9fF9aba014Fb", "Stable Coin", "1", 6,
          PERMIT2, True),
)  # fmt: skip
ADI = _net(  # ADI Chain; bridged USDC.e (EIP-3009)
    "eip155:36900", "", "ADI Chain",
    Asset("USDC.e", "0x9cb8142aEBBcdc60AF7c97Af897A67A8f3CA71C2", "USDC.e", "2", 6),
)  # fmt: skip
HPP = _net(  # HPP mainnet; Bridged USDC (EIP-3009)
    "eip155:190415", "", "HPP",
    Asset("USDC.e", "0x401eCb1D350407f13ba348573E5630B83638E30D", "Bridged USDC", "2", 6),
)  # fmt: skip
HPP_SEPOLIA = _net(  # HPP Sepolia; Bridged USDC (same address as mainnet)
    "eip155:181228", "", "HPP Sepolia",
    Asset("USDC.e", "0x401eCb1D350407f13ba348573E5630B83638E30D", "Bridged USDC", "2", 6),
)  # fmt: skip
XDC = _net(  # XDC Network; Bridged USDC Standard (EIP-3009)
    "eip155:50", "", "XDC Network", _usdc("0xfA2958CB79b0491CC627c1557F441eF849Ca8eb1")
)
XDC_APOTHEM = _net(  # XDC Apothem testnet; Bridged USDC Standard (EIP-3009)
    "eip155:51", "", "XDC Apothem", _usdc("0xb5AB69F7bBada22B28e79C8FFAECe55eF1c771D4")
)
IGRA = _net(  # Igra mainnet; USDC without EIP-3009 and without EIP-2612
    "eip155:38833", "", "Igra",
    Asset("USDC", "0xA5b8BF902b2844dA17d4506cc827F7F1681735E7", "USDC", "1", 6, PERMIT2),
)  # fmt: skip
FLARE = _net(  # Flare mainnet; USD₮0 (EIP-3009; the EIP-712 name has the ₮ sign)
    "eip155:14", "flare", "Flare",
    Asset("USDT0", "0xe7cd86e13AC4309349F30B3435a9d337750fC82D", "USD\u20ae0", "1", 6),
)  # fmt: skip
CELO = _net(  # Celo mainnet; USDC, Tether USDT and Tether USAT (all EIP-3009)
    "eip155:42220", "celo", "Celo",
    _usdc("0xcebA9300f2b948710d2653dD7B07f33A8B32118C"),
    Asset("USDT", "0x48065fbBE25f71C9282ddf5e1cD6D6A887483D5e", "Tether USD", "1", 6),
    Asset("USAT", "0xD2ab3C9A02DBBAB236BfEC45D1d755DF4267F771", "Tether America USD", "1", 6),
)  # fmt: skip
CELO_SEPOLIA = _net(  # Celo Sepolia testnet; Circle USDC
    "eip155:11142220", "", "Celo Sepolia", _usdc("0x01C5C0122039549AD1493B8220cABEdD739BC44E")
)
SEI = _net(  # Sei mainnet (EVM); Circle USDC
    "eip155:1329", "sei", "Sei", _usdc("0xe15fC38F6D8c56aF07bbCBe3BAf5708A2Bf42392")
)
SEI_TESTNET = _net(  # Sei testnet (EVM); Circle USDC
    "eip155:1328", "sei-testnet", "Sei testnet",
    _usdc("0x4fCF1784B31630811181f670Aea7A7bEF803eaED"),
)  # fmt: skip
ARC = _net(  # Arc mainnet; USDC is the native-gas token's ERC-20 interface at 0x36…00
    "eip155:5042", "", "Arc", _usdc("0x3600000000000000000000000000000000000000")
)
ARC_TESTNET = _net(  # Arc testnet; same USDC interface address
    "eip155:5042002", "", "Arc testnet", _usdc("0x3600000000000000000000000000000000000000")
)

KNOWN_NETWORKS: tuple[Network, ...] = (
    BASE, BASE_SEPOLIA, ETHEREUM, AVALANCHE, MEGAETH, MONAD, MONAD_TESTNET, STABLE,
    STABLE_TESTNET, POLYGON, ARBITRUM, ARBITRUM_SEPOLIA, MEZO, MEZO_TESTNET, RADIUS,
    RADIUS_TESTNET, ADI, HPP, HPP_SEPOLIA, XDC, XDC_APOTHEM, IGRA, FLARE, CELO, CELO_SEPOLIA,
    SEI, SEI_TESTNET, ARC, ARC_TESTNET,
)  # fmt: skip
DEFAULT_ENABLED: tuple[str, ...] = (BASE.caip2,)
DEFAULT_ASSETS: tuple[str, ...] = ()
"""The asset allowlist: empty means every pinned stablecoin of each enabled network."""


def find_network(name: str, enabled: tuple[str, ...]) -> Network | None:
    """The enabled network named ``name`` (CAIP-2 or v1 name), or None."""
    for net in KNOWN_NETWORKS:
        if net.caip2 in enabled and name in (net.caip2, net.v1_name) and name:
            return net
    return None


def by_caip2(caip2: str) -> Network:
    """The known network with this CAIP-2 id; raises KeyError for an unknown one."""
    for net in KNOWN_NETWORKS:
        if net.caip2 == caip2:
            return net
    raise KeyError(caip2)


def asset_allowed(net: Network, asset: Asset, allowlist: tuple[str, ...]) -> bool:
    """Whether ``[policy] assets`` admits ``asset`` on ``net``.

    An entry is a symbol (``USDC``: that stablecoin on every enabled network) or
    ``CAIP2/SYMBOL`` (``eip155:42220/USDT``: on that network only). Empty admits all.
    """
    if not allowlist:
        return True
    return asset.symbol in allowlist or f"{net.caip2}/{asset.symbol}" in allowlist


def known_asset_entry(entry: str) -> bool:
    """Whether an ``[policy] assets`` entry names a pinned stablecoin (for config checks)."""
    for net in KNOWN_NETWORKS:
        for asset in net.assets:
            if entry in (asset.symbol, f"{net.caip2}/{asset.symbol}"):
                return True
    return False


def to_usd_atomic(asset: Asset, amount: int) -> int | None:
    """``amount`` token units as USD atomic units (6 decimals), or None when not exact.

    A stablecoin unit counts as one USD. With more than 6 decimals the amount
    must be a whole number of USD atomic units; it is never rounded.
    """
    if asset.decimals <= USD_DECIMALS:
        return amount * _pow10(USD_DECIMALS - asset.decimals)
    usd, rest = divmod(amount, _pow10(asset.decimals - USD_DECIMALS))
    return None if rest else usd


def to_token_units(asset: Asset, usd_atomic: int) -> int:
    """USD atomic units as ``asset`` token units (exact: the inverse of ``to_usd_atomic``).

    Raises:
        ValueError: the token has fewer decimals than 6 and the amount is not whole in it.
    """
    if asset.decimals >= USD_DECIMALS:
        return usd_atomic * _pow10(asset.decimals - USD_DECIMALS)
    whole, rest = divmod(usd_atomic, _pow10(USD_DECIMALS - asset.decimals))
    if rest:
        raise ValueError(f"{usd_atomic} USD atomic units are not whole {asset.symbol} units")
    return whole


def _pow10(exponent: int) -> int:
    result: int = 10**exponent
    return result
