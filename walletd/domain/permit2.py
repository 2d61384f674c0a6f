"""Permit2 ``PermitWitnessTransferFrom`` with the x402 witness: the EIP-712 digest and the payload.

For stablecoins without EIP-3009 (``assetTransferMethod: "permit2"``) the payer
signs a Permit2 transfer whose spender is x402's Permit2 proxy; the witness
binds the recipient (``to``) and the earliest time (``validAfter``), and for
``upto`` also the facilitator allowed to settle. The Permit2 and proxy
addresses are walletd's own constants, the same on every EVM chain (CREATE2):
nothing here is taken from a demand.

Constants and type strings agree with the reference x402 SDK
(``x402/mechanisms/evm/constants.py``: ``PERMIT2_ADDRESS``,
``X402_EXACT_PERMIT2_PROXY_ADDRESS``, ``X402_UPTO_PERMIT2_PROXY_ADDRESS``,
``PERMIT2_WITNESS_TYPES``, ``UPTO_PERMIT2_WITNESS_TYPES``); a test compares them,
and another proves the digest equal to eth-account's ``encode_typed_data``.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from eth_hash.auto import keccak

PERMIT2_ADDRESS = "0x000000000022D473030F116dDEE9F6B43aC78BA3"
"""Uniswap's Permit2 (canonical CREATE2 address on every EVM chain)."""
EXACT_PROXY_ADDRESS = "0x402085c248EeA27D92E8b30b2C58ed07f9E20001"
"""x402's exact Permit2 proxy: the spender of every ``exact`` Permit2 payment."""
UPTO_PROXY_ADDRESS = "0x4020A4f3b7b90ccA423B9fabCc0CE57C6C240002"
"""x402's upto Permit2 proxy: the spender of every ``upto`` payment."""

_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,uint256 chainId,address verifyingContract)")
_TOKEN_PERMISSIONS = b"TokenPermissions(address token,uint256 amount)"
_EXACT_WITNESS = b"Witness(address to,uint256 validAfter)"
_UPTO_WITNESS = b"Witness(address to,address facilitator,uint256 validAfter)"
_STUB = (
    b"PermitWitnessTransferFrom(TokenPermissions permitted,address spender,uint256 nonce,"
    b"uint256 deadline,Witness witness)"
)
_TOKEN_PERMISSIONS_TYPEHASH = keccak(_TOKEN_PERMISSIONS)
_EXACT_TYPEHASH = keccak(_STUB + _TOKEN_PERMISSIONS + _EXACT_WITNESS)
_UPTO_TYPEHASH = keccak(_STUB + _TOKEN_PERMISSIONS + _UPTO_WITNESS)
_EXACT_WITNESS_TYPEHASH = keccak(_EXACT_WITNESS)
_UPTO_WITNESS_TYPEHASH = keccak(_UPTO_WITNESS)


@dataclass(frozen=True)
class Permit2Transfer:
    """The signed fields of one Permit2 witness transfer (exact, or upto with a facilitator)."""

    from_address: str
    token: str
    amount: int
    """The permitted amount in token units: the price (exact) or the maximum (upto)."""
    spender: str
    nonce: int
    deadline: int
    to_address: str
    valid_after: int
    facilitator: str | None = None
    """upto only: the one facilitator the proxy lets settle."""

    def as_json(self) -> dict[str, Any]:
        """The x402 wire form of ``permit2Authorization`` (decimal strings)."""
        witness: dict[str, str] = {"to": self.to_address}
        if self.facilitator is not None:
            witness["facilitator"] = self.facilitator
        witness["validAfter"] = str(self.valid_after)
        return {
            "from": self.from_address,
            "permitted": {"token": self.token, "amount": str(self.amount)},
            "spender": self.spender,
            "nonce": str(self.nonce),
            "deadline": str(self.deadline),
            "witness": witness,
        }


def _addr(address: str) -> bytes:
    return bytes.fromhex(address[2:]).rjust(32, b"\0")


def _uint(value: int) -> bytes:
    return value.to_bytes(32, "big")


def domain_separator(chain_id: int) -> bytes:
    """Permit2's EIP-712 domain: name "Permit2", the chain id, Permit2's address (no version)."""
    return keccak(_DOMAIN_TYPEHASH + keccak(b"Permit2") + _uint(chain_id) + _addr(PERMIT2_ADDRESS))


def witness_hash(transfer: Permit2Transfer) -> bytes:
    """The witness struct hash the proxy passes to Permit2."""
    if transfer.facilitator is None:
        return keccak(
            _EXACT_WITNESS_TYPEHASH + _addr(transfer.to_address) + _uint(transfer.valid_after)
        )
    return keccak(
        _UPTO_WITNESS_TYPEHASH
        + _addr(transfer.to_address)
        + _addr(transfer.facilitator)
        + _uint(transfer.valid_after)
    )


def permit2_digest(chain_id: int, transfer: Permit2Transfer) -> bytes:
    """The 32-byte EIP-712 digest the payer signs."""
    typehash = _EXACT_TYPEHASH if transfer.facilitator is None else _UPTO_TYPEHASH
    permitted = keccak(_TOKEN_PERMISSIONS_TYPEHASH + _addr(transfer.token) + _uint(transfer.amount))
    struct_hash = keccak(
        typehash
        + permitted
        + _addr(transfer.spender)
        + _uint(transfer.nonce)
        + _uint(transfer.deadline)
        + witness_hash(transfer)
    )
    return keccak(b"\x19\x01" + domain_separator(chain_id) + struct_hash)


def nonce_slot(nonce: int) -> tuple[int, int]:
    """Permit2's unordered nonce: (word position, bit mask) in ``nonceBitmap(owner, word)``."""
    return nonce >> 8, 1 << (nonce & 0xFF)


def payment_header(
    *,
    accepted: Mapping[str, Any],
    resource: Mapping[str, Any] | None,
    transfer: Permit2Transfer,
    signature: bytes,
) -> tuple[str, str]:
    """The v2 ``PAYMENT-SIGNATURE`` header carrying a Permit2 payment (exact or upto).

    Echoes the chosen requirement exactly as received, as the EIP-3009 header does.
    """
    inner = {"permit2Authorization": transfer.as_json(), "signature": "0x" + signature.hex()}
    doc: dict[str, Any] = {"x402Version": 2, "payload": inner, "accepted": dict(accepted)}
    if resource is not None:
        doc["resource"] = dict(resource)
    text = json.dumps(doc, separators=(",", ":"), ensure_ascii=False)
    return "PAYMENT-SIGNATURE", base64.b64encode(text.encode("utf-8")).decode("ascii")
