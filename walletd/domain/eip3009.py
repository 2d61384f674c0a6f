"""EIP-3009 ``TransferWithAuthorization``: the EIP-712 digest and the x402 payload.

The digest is computed from the fixed struct layout with a precomputed domain
separator per network, instead of going through a generic typed-data encoder:
it is the hot path of every payment, and the layout never changes. A property
test proves it equal to eth-account's ``encode_typed_data`` digest.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from eth_hash.auto import keccak

from walletd.domain.networks import Asset, Network

TRANSFER_TYPEHASH = keccak(
    b"TransferWithAuthorization(address from,address to,uint256 value,"
    b"uint256 validAfter,uint256 validBefore,bytes32 nonce)"
)
DOMAIN_TYPEHASH = keccak(
    b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)"
)


@dataclass(frozen=True)
class Authorization:
    """The signed fields of one EIP-3009 transfer authorization."""

    from_address: str
    to_address: str
    value: int
    valid_after: int
    valid_before: int
    nonce: bytes

    def as_json(self) -> dict[str, str]:
        """The x402 wire form: decimal strings, and the nonce as 0x + 64 hex."""
        return {
            "from": self.from_address,
            "to": self.to_address,
            "value": str(self.value),
            "validAfter": str(self.valid_after),
            "validBefore": str(self.valid_before),
            "nonce": "0x" + self.nonce.hex(),
        }


def _word_address(address: str) -> bytes:
    return bytes.fromhex(address[2:]).rjust(32, b"\0")


def _word_uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


@lru_cache(maxsize=64)
def domain_separator(network: Network, asset: Asset | None = None) -> bytes:
    """The EIP-712 domain separator of a pinned token (default: the network's first)."""
    token = asset if asset is not None else network.default_asset
    return keccak(
        DOMAIN_TYPEHASH
        + keccak(token.eip712_name.encode())
        + keccak(token.eip712_version.encode())
        + _word_uint(network.chain_id)
        + _word_address(token.address)
    )


def authorization_digest(
    network: Network, auth: Authorization, asset: Asset | None = None
) -> bytes:
    """The 32-byte EIP-712 digest the payer signs (for ``asset``, default the network's first)."""
    struct_hash = keccak(
        TRANSFER_TYPEHASH
        + _word_address(auth.from_address)
        + _word_address(auth.to_address)
        + _word_uint(auth.value)
        + _word_uint(auth.valid_after)
        + _word_uint(auth.valid_before)
        + auth.nonce
    )
    return keccak(b"\x19\x01" + domain_separator(network, asset) + struct_hash)


def _b64_json(doc: Mapping[str, Any]) -> str:
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return base64.b64encode(text.encode("utf-8")).decode("ascii")


def payment_header(
    *,
    version: int,
    network: Network,
    accepted: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    auth: Authorization,
    signature: bytes,
) -> tuple[str, str]:
    """The header (name, value) that carries the payment back to the server.

    v2 sends ``PAYMENT-SIGNATURE`` and echoes the chosen requirement exactly as
    received (the reference server compares it field by field); v1 sends
    ``X-PAYMENT`` with the legacy network name.
    """
    inner = {"authorization": auth.as_json(), "signature": "0x" + signature.hex()}
    if version == 1:
        doc: dict[str, Any] = {
            "x402Version": 1,
            "scheme": "exact",
            "network": network.v1_name,
            "payload": inner,
        }
        return "X-PAYMENT", _b64_json(doc)
    doc = {"x402Version": 2, "payload": inner, "accepted": dict(accepted)}
    if resource is not None:
        doc["resource"] = dict(resource)
    return "PAYMENT-SIGNATURE", _b64_json(doc)
