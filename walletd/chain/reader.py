"""``ChainReader`` over web3 and one JSON-RPC URL.

Logs are decoded by hand from the fixed ERC-20 / EIP-3009 event layouts, and
only logs emitted by the pinned USDC address are kept: a look-alike token that
emits the same events must never confirm a payment.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, Final, cast

import requests
from eth_typing import BlockNumber, ChecksumAddress, HexStr
from web3 import Web3
from web3.exceptions import TransactionNotFound, Web3Exception
from web3.providers.rpc.utils import ExceptionRetryConfiguration
from web3.types import FilterParams

from walletd.chain.abi import (
    AUTHORIZATION_CANCELED_TOPIC,
    AUTHORIZATION_USED_TOPIC,
    PERMIT2_ABI,
    TRANSFER_TOPIC,
    USDC_ABI,
    address_topic,
    nonce_bytes,
)
from walletd.domain.networks import KNOWN_NETWORKS, USD_DECIMALS, Network
from walletd.domain.permit2 import PERMIT2_ADDRESS, nonce_slot
from walletd.errors import ChainError
from walletd.service.ports import AuthorizationEvent, ChainReceipt, TokenTransfer

RPC_TIMEOUT_S: Final = 10
LOG_CHUNK_BLOCKS: Final = 5_000
"""Blocks per eth_getLogs call; public RPCs commonly cap a query near 10,000."""
LOG_MAX_CHUNKS: Final = 200
"""Bound on a backward log search (about 23 days of Base blocks)."""


@contextmanager
def chain_errors(what: str) -> Iterator[None]:
    """Turn anything the node or the transport raises into ChainError (fail closed)."""
    try:
        yield
    except ChainError:
        raise
    except (Web3Exception, OSError, ValueError, KeyError, TypeError) as exc:
        raise ChainError(f"chain RPC failed ({what}): {type(exc).__name__}: {exc}"[:300]) from exc


RPC_RETRY: Final = ExceptionRetryConfiguration(
    errors=(requests.ConnectionError, requests.HTTPError), retries=3, backoff_factor=0.125
)
"""Retry a call whose connection failed, never one the node left unanswered.

web3's default also retries read timeouts, five times: a node that accepts
connections but does not answer would hold a Pay (and the nonce sequence) for
about a minute per call instead of ``RPC_TIMEOUT_S``.
"""
RPC_CONNECT_TIMEOUT_S: Final = 3


def connect(rpc_url: str) -> Web3:
    """A web3 client for ``rpc_url``; raises ChainError when it is empty."""
    if not rpc_url:
        raise ChainError("no chain RPC configured (set [chain] rpc_url or pass --rpc-url)")
    provider = Web3.HTTPProvider(
        rpc_url,
        request_kwargs={"timeout": (RPC_CONNECT_TIMEOUT_S, RPC_TIMEOUT_S)},
        exception_retry_configuration=RPC_RETRY,
    )
    return Web3(provider)


def network_of(w3: Web3, enabled: Sequence[str]) -> Network:
    """The enabled pinned network whose chain id the node reports."""
    with chain_errors("eth_chainId"):
        chain_id = int(w3.eth.chain_id)
    for net in KNOWN_NETWORKS:
        if net.chain_id == chain_id and net.caip2 in enabled:
            return net
    raise ChainError(f"the RPC serves chain id {chain_id}, which is not an enabled network")


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex()


def _topic_address(topic: Any) -> str:
    return str(Web3.to_checksum_address("0x" + bytes(topic)[-20:].hex()))


class Web3ChainReader:
    """Reads receipts, EIP-3009 state and balances of one network's pinned USDC."""

    def __init__(self, w3: Web3, network: Network) -> None:
        self._w3 = w3
        self._network = network
        self._usdc: ChecksumAddress = Web3.to_checksum_address(network.usdc)
        self._token = w3.eth.contract(address=self._usdc, abi=USDC_ABI)
        self._tokens = {Web3.to_checksum_address(a.address) for a in network.assets}
        """Every pinned stablecoin of the network: the receipts' logs walletd reads."""

    @classmethod
    def open(cls, rpc_url: str, enabled: Sequence[str]) -> Web3ChainReader:
        """Connect and bind to the node's network; raises ChainError."""
        w3 = connect(rpc_url)
        return cls(w3, network_of(w3, enabled))

    @property
    def network(self) -> Network:
        """The pinned network the node serves."""
        return self._network

    @property
    def web3(self) -> Web3:
        """The client, for the sender that shares this connection."""
        return self._w3

    def receipt(self, tx_hash: str) -> ChainReceipt | None:
        """The decoded receipt, or None when the node has none (unknown or not mined)."""
        try:
            raw = bytes.fromhex(tx_hash.removeprefix("0x"))
        except ValueError:
            return None
        if len(raw) != 32:
            return None
        with chain_errors("eth_getTransactionReceipt"):
            try:
                found = self._w3.eth.get_transaction_receipt(HexStr(_hex(raw)))
            except TransactionNotFound:
                return None
            return self.decode_receipt(cast(Mapping[str, Any], found))

    def decode_receipt(self, found: Mapping[str, Any]) -> ChainReceipt:
        """Keep only the pinned stablecoins' Transfer / Authorization* logs of a receipt."""
        transfers: list[TokenTransfer] = []
        used: list[AuthorizationEvent] = []
        canceled: list[AuthorizationEvent] = []
        for log in found["logs"]:
            topics = [bytes(t) for t in log["topics"]]
            token = Web3.to_checksum_address(log["address"])
            if token not in self._tokens or not topics:
                continue
            if topics[0] == TRANSFER_TOPIC and len(topics) == 3:
                value = int.from_bytes(bytes(log["data"]), "big")
                transfers.append(
                    TokenTransfer(
                        token, _topic_address(topics[1]), _topic_address(topics[2]), value
                    )
                )
            elif topics[0] in (AUTHORIZATION_USED_TOPIC, AUTHORIZATION_CANCELED_TOPIC):
                if len(topics) != 3:
                    continue
                event = AuthorizationEvent(token, _topic_address(topics[1]), _hex(topics[2]))
                (used if topics[0] == AUTHORIZATION_USED_TOPIC else canceled).append(event)
        return ChainReceipt(
            tx_hash=_hex(found["transactionHash"]),
            status=int(found["status"]),
            block_number=int(found["blockNumber"]),
            transfers=tuple(transfers),
            authorizations_used=tuple(used),
            authorizations_canceled=tuple(canceled),
        )

    def _contract(self, token: str) -> Any:
        if not token or token.lower() == self._usdc.lower():
            return self._token
        return self._w3.eth.contract(address=Web3.to_checksum_address(token), abi=USDC_ABI)

    def authorization_state(self, wallet: str, nonce: str, token: str = "") -> bool:
        """True when the nonce is used or cancelled (EIP-3009 does not tell which).

        ``token``: the EIP-3009 token asked (default: the network's first stablecoin).
        """
        with chain_errors("authorizationState"):
            fn = self._contract(token).functions.authorizationState(
                Web3.to_checksum_address(wallet), nonce_bytes(nonce)
            )
            return bool(fn.call())

    def permit2_nonce_used(self, wallet: str, nonce: str) -> bool:
        """True when Permit2's bitmap marks the wallet's permit nonce used (or invalidated)."""
        word, bit = nonce_slot(int(nonce, 16))
        with chain_errors("nonceBitmap"):
            permit2 = self._w3.eth.contract(
                address=Web3.to_checksum_address(PERMIT2_ADDRESS), abi=PERMIT2_ABI
            )
            bitmap = permit2.functions.nonceBitmap(Web3.to_checksum_address(wallet), word).call()
        return bool(int(bitmap) & bit)

    def find_authorization_used(
        self, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        """The transaction that used the authorization, searched backwards from the head."""
        return self._find_log(AUTHORIZATION_USED_TOPIC, wallet, nonce, not_before, token)

    def find_authorization_canceled(
        self, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        """The transaction that cancelled the authorization, searched backwards."""
        return self._find_log(AUTHORIZATION_CANCELED_TOPIC, wallet, nonce, not_before, token)

    def _find_log(
        self, topic: bytes, wallet: str, nonce: str, not_before: int, token: str = ""
    ) -> str | None:
        address = Web3.to_checksum_address(token) if token else self._usdc
        topics = [_hex(topic), _hex(address_topic(wallet)), _hex(nonce_bytes(nonce))]
        with chain_errors("eth_getLogs"):
            to_block = int(self._w3.eth.block_number)
            for _ in range(LOG_MAX_CHUNKS):
                from_block = max(0, to_block - LOG_CHUNK_BLOCKS + 1)
                params: FilterParams = {
                    "address": address,
                    "fromBlock": BlockNumber(from_block),
                    "toBlock": BlockNumber(to_block),
                    "topics": cast(Any, topics),
                }
                logs = self._w3.eth.get_logs(params)
                if logs:
                    return _hex(logs[0]["transactionHash"])
                if from_block == 0 or self._timestamp(from_block) < not_before:
                    return None
                to_block = from_block - 1
        return None

    def _timestamp(self, block: int) -> int:
        return int(self._w3.eth.get_block(BlockNumber(block))["timestamp"])

    def usdc_balance(self, address: str) -> int:
        """The network's first stablecoin held by ``address``, in USD atomic units.

        6 decimals whatever the token's (an 18-decimal balance is rounded down),
        so funds checks and the low-balance warning compare like with like.
        """
        with chain_errors("balanceOf"):
            fn = self._token.functions.balanceOf(Web3.to_checksum_address(address))
            raw = int(fn.call())
        shift = self._network.default_asset.decimals - USD_DECIMALS
        scale: int = 10 ** abs(shift)
        return raw // scale if shift > 0 else raw * scale

    def eth_balance(self, address: str) -> int:
        """Wei held by ``address``."""
        with chain_errors("eth_getBalance"):
            return int(self._w3.eth.get_balance(Web3.to_checksum_address(address)))

    def block_timestamp(self) -> int:
        """The latest block's timestamp."""
        with chain_errors("eth_getBlockByNumber"):
            return int(self._w3.eth.get_block("latest")["timestamp"])

    def transaction_count(self, address: str) -> int:
        """Transactions of ``address`` in the latest block: its next unused account nonce."""
        with chain_errors("eth_getTransactionCount"):
            return int(self._w3.eth.get_transaction_count(Web3.to_checksum_address(address)))
