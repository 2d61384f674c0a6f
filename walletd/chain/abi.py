"""The few pieces of the USDC (FiatToken v2 / EIP-3009) interface walletd uses.

Kept as a hand-written minimal ABI rather than a compiled artifact: these
signatures are fixed by ERC-20 and EIP-3009 and are identical on Base's USDC and
on the devnet's TestUSDC.
"""

from __future__ import annotations

from typing import Any, Final

from eth_hash.auto import keccak

TRANSFER_TOPIC: Final = keccak(b"Transfer(address,address,uint256)")
AUTHORIZATION_USED_TOPIC: Final = keccak(b"AuthorizationUsed(address,bytes32)")
AUTHORIZATION_CANCELED_TOPIC: Final = keccak(b"AuthorizationCanceled(address,bytes32)")


def _fn(name: str, inputs: list[tuple[str, str]], outputs: list[str], *, view: bool) -> Any:
    return {
        "type": "function",
        "name": name,
        "stateMutability": "view" if view else "nonpayable",
        "inputs": [{"name": n, "type": t} for n, t in inputs],
        "outputs": [{"name": "", "type": t} for t in outputs],
    }


USDC_ABI: Final = [
    _fn("balanceOf", [("account", "address")], ["uint256"], view=True),
    _fn(
        "authorizationState",
        [("authorizer", "address"), ("nonce", "bytes32")],
        ["bool"],
        view=True,
    ),
    _fn(
        "cancelAuthorization",
        [
            ("authorizer", "address"),
            ("nonce", "bytes32"),
            ("v", "uint8"),
            ("r", "bytes32"),
            ("s", "bytes32"),
        ],
        [],
        view=False,
    ),
]


ERC20_ABI: Final = [
    _fn("balanceOf", [("account", "address")], ["uint256"], view=True),
    _fn("decimals", [], ["uint8"], view=True),
    _fn("allowance", [("owner", "address"), ("spender", "address")], ["uint256"], view=True),
    _fn("approve", [("spender", "address"), ("amount", "uint256")], ["bool"], view=False),
]
"""The plain ERC-20 calls of a Permit2 stablecoin: its allowance to Permit2, its decimals."""

PERMIT2_ABI: Final = [
    _fn(
        "nonceBitmap",
        [("owner", "address"), ("wordPos", "uint256")],
        ["uint256"],
        view=True,
    ),
]
"""Permit2's unordered-nonce bitmap: a set bit is a used (or invalidated) permit nonce."""


def address_topic(address: str) -> bytes:
    """An address as an indexed topic: left-padded to 32 bytes."""
    return bytes.fromhex(address.removeprefix("0x")).rjust(32, b"\0")


def nonce_bytes(nonce: str) -> bytes:
    """The ledger's 0x-hex nonce as the contract's bytes32."""
    raw = bytes.fromhex(nonce.removeprefix("0x"))
    if len(raw) != 32:
        raise ValueError("nonce must be 32 bytes")
    return raw
