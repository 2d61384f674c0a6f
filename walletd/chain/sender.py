"""``ChainSender`` and ``TransferChain``: the wallet's own transactions, signed through ``Signer``.

The private key never leaves ``walletd.keys.signer.LocalSigner``: the EIP-1559
transaction's signing hash is computed here and handed to ``sign_hash`` like
any other digest, then the signed envelope is assembled by eth-account.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from contextlib import AbstractContextManager
from typing import Any, Final, cast

from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_hash.auto import keccak
from eth_typing import HexStr
from web3 import Web3
from web3.exceptions import MethodUnavailable, RequestTimedOut, TimeExhausted, Web3RPCError

from walletd.chain.abi import ERC20_ABI, USDC_ABI, address_topic, nonce_bytes
from walletd.chain.nonces import allocator_for
from walletd.chain.reader import Web3ChainReader, chain_errors
from walletd.config import DEFAULT_MAX_FEE_PER_GAS_WEI
from walletd.domain.eip3009 import domain_separator
from walletd.domain.networks import Asset, Network
from walletd.domain.permit2 import PERMIT2_ADDRESS
from walletd.errors import ChainError, FeeTooHighError
from walletd.service.ports import (
    BROADCAST_REJECTED,
    BROADCAST_SENT,
    BROADCAST_UNKNOWN,
    Broadcast,
    ChainReceipt,
    Fees,
    NonceSlot,
    SignedTransaction,
    Signer,
)

CANCEL_TYPEHASH: Final = keccak(b"CancelAuthorization(address authorizer,bytes32 nonce)")
RECEIPT_TIMEOUT_S: Final = 120.0
GAS_HEADROOM_NUM, GAS_HEADROOM_DEN = 5, 4
"""Estimated gas times 5/4: a cancel's cost does not vary, but estimates can be tight."""


def cancel_digest(
    network: Network, authorizer: str, nonce: str, asset: Asset | None = None
) -> bytes:
    """The EIP-712 digest of ``CancelAuthorization(authorizer, nonce)`` for a pinned token."""
    struct_hash = keccak(
        CANCEL_TYPEHASH
        + bytes.fromhex(authorizer.removeprefix("0x")).rjust(32, b"\0")
        + nonce_bytes(nonce)
    )
    return keccak(b"\x19\x01" + domain_separator(network, asset) + struct_hash)


def capped_fees(base: int, tip: int, cap: int, jitter: int = 0) -> Fees:
    """``maxFeePerGas = 2 * base + tip + jitter``, never above ``cap`` (wei per gas).

    The base fee and tip come from the node, which walletd does not trust to be
    sane: when base + tip alone is above the cap, nothing is signed
    (FeeTooHighError). Otherwise a fee ceiling above the cap is lowered to the
    cap, less part of the jitter (so signed transactions stay unique), and never
    under base + tip.
    """
    needed = base + tip
    if needed > cap:
        raise FeeTooHighError(
            f"the chain asks {needed} wei per gas (base fee {base} + tip {tip}), above "
            f"[chain] max_fee_per_gas_wei = {cap}; nothing was signed",
            {"needed": str(needed), "cap": str(cap), "base_fee": str(base), "tip": str(tip)},
        )
    ceiling = 2 * base + tip + jitter
    if ceiling > cap:
        ceiling = cap - (jitter % (cap - needed + 1))
    return Fees(max_fee_per_gas=ceiling, max_priority_fee_per_gas=tip)


def sign_envelope(signer: Signer, tx: Mapping[str, Any]) -> bytes:
    """The signed EIP-1559 envelope of ``tx``; the key signs only the transaction's hash."""
    unsigned = TypedTransaction.from_dict(dict(tx))
    sig = signer.sign_hash(unsigned.hash())
    signed = TypedTransaction.from_dict(
        {
            **tx,
            "v": sig[64] - 27,
            "r": int.from_bytes(sig[:32], "big"),
            "s": int.from_bytes(sig[32:64], "big"),
        }
    )
    return bytes(signed.encode())


class Web3ChainSender:
    """Sends from the signer's address through the reader's node.

    ``max_fee_per_gas`` (wei) caps the fee the node may make it pay (``capped_fees``).
    """

    def __init__(
        self, reader: Web3ChainReader, max_fee_per_gas: int = DEFAULT_MAX_FEE_PER_GAS_WEI
    ) -> None:
        self._reader = reader
        self._w3 = reader.web3
        self._max_fee_per_gas = max_fee_per_gas

    def cancel_authorization(self, signer: Signer, nonce: str, token: str = "") -> ChainReceipt:
        """Cancel the signer's authorization ``nonce`` at the pinned ``token`` ("" the default).

        Returns the mined receipt, status checked. Raises ChainError for a token not pinned.
        """
        net = self._reader.network
        asset = net.asset(token) if token else net.default_asset
        if asset is None:
            raise ChainError(f"{token} is not a pinned stablecoin on {net.caip2}")
        sig = signer.sign_hash(cancel_digest(net, signer.address, nonce, asset))
        contract = self._w3.eth.contract(
            address=Web3.to_checksum_address(asset.address), abi=USDC_ABI
        )
        fn = contract.functions.cancelAuthorization(
            Web3.to_checksum_address(signer.address), nonce_bytes(nonce), sig[64], sig[:32],
            sig[32:64],
        )  # fmt: skip
        return self._transact(signer, fn, "cancelAuthorization")

    def approve_permit2(self, signer: Signer, token: str, cap: int) -> ChainReceipt:
        """Let Permit2 move up to ``cap`` token units of the signer's ``token``: ERC-20 approve.

        The one-time allowance every Permit2 payment needs; an operator action
        (``walletd chain approve-permit2``), never part of a Pay. ``token`` must
        be a pinned stablecoin of the node's network, whose on-chain decimals
        agree with the table. Returns the mined receipt, status checked.
        """
        net = self._reader.network
        asset = net.asset(token)
        if asset is None:
            raise ChainError(f"{token} is not a pinned stablecoin on {net.caip2}")
        contract = self._w3.eth.contract(
            address=Web3.to_checksum_address(asset.address), abi=ERC20_ABI
        )
        with chain_errors("decimals"):
            decimals = int(contract.functions.decimals().call())
        if decimals != asset.decimals:
            raise ChainError(
                f"{asset.symbol} at {asset.address} reports {decimals} decimals, the table "
                f"pins {asset.decimals}: nothing was approved"
            )
        fn = contract.functions.approve(Web3.to_checksum_address(PERMIT2_ADDRESS), cap)
        return self._transact(signer, fn, "approve")

    def _transact(self, signer: Signer, fn: Any, name: str) -> ChainReceipt:
        """Send the contract call ``fn`` from the signer; the mined receipt, status checked.

        The fees are checked (FeeTooHighError) before anything is signed.
        """
        fields = self._fee_fields(signer.address)
        with chain_errors(name):
            tx = fn.build_transaction(fields)
            receipt = self._send(signer, cast(dict[str, Any], tx))
        if receipt.status != 1:
            raise ChainError(f"{name} {receipt.tx_hash} reverted")
        return receipt

    def _fee_fields(self, sender: str) -> Any:
        address = Web3.to_checksum_address(sender)
        with chain_errors("fees"):
            tip = int(self._w3.eth.max_priority_fee)
            base = int(self._w3.eth.get_block("latest").get("baseFeePerGas", 0))
            nonce = self._w3.eth.get_transaction_count(address, "pending")
        fees = capped_fees(base, tip, self._max_fee_per_gas)
        return {
            "from": address,
            "nonce": nonce,
            "chainId": self._reader.network.chain_id,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
            "maxFeePerGas": fees.max_fee_per_gas,
            "type": 2,
        }

    def _send(self, signer: Signer, tx: dict[str, Any]) -> ChainReceipt:
        tx["gas"] = int(tx["gas"]) * GAS_HEADROOM_NUM // GAS_HEADROOM_DEN
        tx.pop("from", None)
        tx_hash = self._w3.eth.send_raw_transaction(sign_envelope(signer, tx))
        try:
            found = self._w3.eth.wait_for_transaction_receipt(tx_hash, timeout=RECEIPT_TIMEOUT_S)
        except TimeExhausted as exc:
            raise ChainError(f"transaction {tx_hash.to_0x_hex()} not mined in time") from exc
        return self._reader.decode_receipt(cast(Mapping[str, Any], found))


# ------------------------------------------------------------- direct transfers

TRANSFER_SELECTOR: Final = keccak(b"transfer(address,uint256)")[:4]
TRANSFER_GAS: Final = 100_000
"""Gas limit of a direct USDC transfer (Base USDC uses about 40-65k).

Fixed rather than estimated: estimating a transfer that would revert fails,
and walletd wants such a transfer mined and recorded like any other outcome
rather than refused on the node's guess.
"""
FEE_JITTER_WEI: Final = 2**20
_ALREADY_KNOWN: Final = ("already known", "known transaction", "alreadyknown", "already imported")
"""Node answers that mean "I have this very transaction": it was sent."""


def transfer_calldata(recipient: str, amount: int) -> bytes:
    """ABI-encoded ``transfer(address,uint256)``: selector, left-padded address, uint256."""
    return TRANSFER_SELECTOR + address_topic(recipient) + amount.to_bytes(32, "big")


def classify_send_error(exc: Exception) -> Broadcast:
    """Tell "the node refused this transaction" from "we do not know what happened".

    Only a JSON-RPC error answer is a refusal (the transaction is not in that
    node's pool); a timeout or a broken connection is unknown, because the node
    may have taken it before the answer was lost.
    """
    text = str(exc)[:300]
    if any(known in text.lower() for known in _ALREADY_KNOWN):
        return Broadcast(BROADCAST_SENT, text)
    if isinstance(exc, RequestTimedOut | MethodUnavailable) or not isinstance(exc, Web3RPCError):
        return Broadcast(BROADCAST_UNKNOWN, text)
    response = exc.rpc_response
    if response is not None and response.get("error"):
        return Broadcast(BROADCAST_REJECTED, text)
    return Broadcast(BROADCAST_UNKNOWN, text)


class Web3TransferSender:
    """``TransferChain`` over web3: direct USDC transfers from the signer's address.

    Nonces come from the process-wide allocator of (chain, address), so every
    sender made for the same key shares one sequence. ``max_fee_per_gas`` (wei)
    caps the fee the node may make it pay (``capped_fees``).
    """

    def __init__(
        self, reader: Web3ChainReader, max_fee_per_gas: int = DEFAULT_MAX_FEE_PER_GAS_WEI
    ) -> None:
        self._reader = reader
        self._w3 = reader.web3
        self._max_fee_per_gas = max_fee_per_gas

    @property
    def network(self) -> Network:
        """The pinned network the node serves."""
        return self._reader.network

    def fees(self) -> Fees:
        """``maxFeePerGas = 2 * baseFee + tip + jitter``.

        Twice the base fee survives a few full blocks of base-fee growth. The
        jitter (under 2**20 wei, nothing next to any real fee; the cap is not
        what is paid) makes each signed transfer unique: after the node refused
        one, the next payment with the same nonce, recipient and amount would
        otherwise be the very same transaction, with the failed row's hash.

        Raises FeeTooHighError when the node asks more than ``max_fee_per_gas``.
        """
        with chain_errors("fees"):
            tip = int(self._w3.eth.max_priority_fee)
            base = int(self._w3.eth.get_block("latest").get("baseFeePerGas", 0))
        jitter = 1 + secrets.randbelow(FEE_JITTER_WEI)
        return capped_fees(base, tip, self._max_fee_per_gas, jitter)

    def hold_nonce(self, address: str) -> AbstractContextManager[NonceSlot]:
        """Hold the address's nonce sequence; the floor is the node's pending count."""
        checksummed = Web3.to_checksum_address(address)

        def pending() -> int:
            with chain_errors("eth_getTransactionCount"):
                return int(self._w3.eth.get_transaction_count(checksummed, "pending"))

        return allocator_for(self.network.chain_id, address).hold(pending)

    def sign_transfer(
        self, signer: Signer, fees: Fees, nonce: int, recipient: str, amount: int
    ) -> SignedTransaction:
        """Sign ``USDC.transfer(recipient, amount)``; the hash is known before broadcast."""
        tx = {
            "type": 2,
            "chainId": self.network.chain_id,
            "nonce": nonce,
            "to": Web3.to_checksum_address(self.network.usdc),
            "value": 0,
            "data": transfer_calldata(recipient, amount),
            "gas": TRANSFER_GAS,
            "maxFeePerGas": fees.max_fee_per_gas,
            "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
        }
        raw = sign_envelope(signer, tx)
        return SignedTransaction("0x" + keccak(raw).hex(), "0x" + raw.hex(), nonce)

    def broadcast(self, raw: str) -> Broadcast:
        """``eth_sendRawTransaction``, its outcome classified (see ``classify_send_error``)."""
        try:
            self._w3.eth.send_raw_transaction(HexStr(raw))
        except Exception as exc:  # every failure is classified, none may escape
            return classify_send_error(exc)
        return Broadcast(BROADCAST_SENT)

    def wait_for_receipt(self, tx_hash: str, timeout_s: float) -> ChainReceipt | None:
        """The decoded receipt once mined, or None when ``timeout_s`` passed first."""
        with chain_errors("eth_getTransactionReceipt"):
            try:
                found = self._w3.eth.wait_for_transaction_receipt(
                    HexStr(tx_hash), timeout=timeout_s, poll_latency=0.05
                )
            except TimeExhausted:
                return None
            return self._reader.decode_receipt(cast(Mapping[str, Any], found))

    def receipt(self, tx_hash: str) -> ChainReceipt | None:
        """The mined receipt of ``tx_hash``, or None."""
        return self._reader.receipt(tx_hash)

    def transaction_count(self, address: str) -> int:
        """Transactions of ``address`` mined so far."""
        return self._reader.transaction_count(address)
