"""``ChainSender``: the wallet's own transactions, signed through the ``Signer`` port.

The private key never leaves ``walletd.keys.signer.LocalSigner``: the EIP-1559
transaction's signing hash is computed here and handed to ``sign_hash`` like
any other digest, then the signed envelope is assembled by eth-account.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final, cast

from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_hash.auto import keccak
from web3 import Web3
from web3.exceptions import TimeExhausted

from walletd.chain.abi import USDC_ABI, nonce_bytes
from walletd.chain.reader import Web3ChainReader, chain_errors
from walletd.domain.eip3009 import domain_separator
from walletd.domain.networks import Network
from walletd.errors import ChainError
from walletd.service.ports import ChainReceipt, Signer

CANCEL_TYPEHASH: Final = keccak(b"CancelAuthorization(address authorizer,bytes32 nonce)")
RECEIPT_TIMEOUT_S: Final = 120.0
GAS_HEADROOM_NUM, GAS_HEADROOM_DEN = 5, 4
"""Estimated gas times 5/4: a cancel's cost does not vary, but estimates can be tight."""


def cancel_digest(network: Network, authorizer: str, nonce: str) -> bytes:
    """The EIP-712 digest of ``CancelAuthorization(authorizer, nonce)`` for the pinned USDC."""
    struct_hash = keccak(
        CANCEL_TYPEHASH
        + bytes.fromhex(authorizer.removeprefix("0x")).rjust(32, b"\0")
        + nonce_bytes(nonce)
    )
    return keccak(b"\x19\x01" + domain_separator(network) + struct_hash)


class Web3ChainSender:
    """Sends from the signer's address through the reader's node."""

    def __init__(self, reader: Web3ChainReader) -> None:
        self._reader = reader
        self._w3 = reader.web3

    def cancel_authorization(self, signer: Signer, nonce: str) -> ChainReceipt:
        """Cancel the signer's authorization ``nonce``; the mined receipt, status checked."""
        net = self._reader.network
        sig = signer.sign_hash(cancel_digest(net, signer.address, nonce))
        token = self._w3.eth.contract(address=Web3.to_checksum_address(net.usdc), abi=USDC_ABI)
        fn = token.functions.cancelAuthorization(
            Web3.to_checksum_address(signer.address), nonce_bytes(nonce), sig[64], sig[:32],
            sig[32:64],
        )  # fmt: skip
        with chain_errors("cancelAuthorization"):
            tx = fn.build_transaction(self._fee_fields(signer.address))
            receipt = self._send(signer, cast(dict[str, Any], tx))
        if receipt.status != 1:
            raise ChainError(f"cancelAuthorization {receipt.tx_hash} reverted")
        return receipt

    def _fee_fields(self, sender: str) -> Any:
        address = Web3.to_checksum_address(sender)
        tip = int(self._w3.eth.max_priority_fee)
        base = int(self._w3.eth.get_block("latest").get("baseFeePerGas", 0))
        return {
            "from": address,
            "nonce": self._w3.eth.get_transaction_count(address, "pending"),
            "chainId": self._reader.network.chain_id,
            "maxPriorityFeePerGas": tip,
            "maxFeePerGas": 2 * base + tip,
            "type": 2,
        }

    def _send(self, signer: Signer, tx: dict[str, Any]) -> ChainReceipt:
        tx["gas"] = int(tx["gas"]) * GAS_HEADROOM_NUM // GAS_HEADROOM_DEN
        tx.pop("from", None)
        unsigned = TypedTransaction.from_dict(tx)
        sig = signer.sign_hash(unsigned.hash())
        signed = TypedTransaction.from_dict(
            {
                **tx,
                "v": sig[64] - 27,
                "r": int.from_bytes(sig[:32], "big"),
                "s": int.from_bytes(sig[32:64], "big"),
            }
        )
        tx_hash = self._w3.eth.send_raw_transaction(signed.encode())
        try:
            found = self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
        except TimeExhausted as exc:
            raise ChainError(f"transaction {tx_hash.to_0x_hex()} not mined in time") from exc
        return self._reader.decode_receipt(cast(Mapping[str, Any], found))
