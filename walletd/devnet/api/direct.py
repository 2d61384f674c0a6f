"""Direct-transfer payment for the local paid API: ``/direct/<route>``, paid by a USDC transfer.

Some gateways do not speak x402's signed authorizations; they name a recipient and an
amount and want the client to send the transfer itself, then prove it with the
transaction hash. walletd pays those too, so the devnet serves the same handlers that way
when :attr:`~walletd.devnet.api.settings.ApiSettings.direct_rpc_url` is set, checking each
proof against the chain.
"""

from __future__ import annotations

import asyncio
import base64
import threading
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Receive, Scope, Send

from walletd.devnet.api.errors import json_bytes, send_raw_error
from walletd.devnet.api.pricing import route_prices
from walletd.devnet.api.settings import ApiSettings
from walletd.devnet.api.stats import ApiStats

__all__ = ["DIRECT_PREFIX", "DirectPaid"]

DIRECT_PREFIX = "/direct/"
_TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")


class DirectPaid:
    """``/direct/<route>``: the same handlers, paid by a USDC transfer the client sent itself.

    Without the proof header it answers 402 with the direct shape
    (``{"recipient", "amount", "chainId", "token"}``, base64 JSON in
    ``PAYMENT-REQUIRED``). With it, the hash must name a mined transaction
    (status 1) holding a ``Transfer`` from the transaction's sender to
    ``pay_to`` of exactly the price, emitted by the pinned USDC, and never
    seen before; then the request reaches the handler with the prefix removed.
    """

    def __init__(self, core: ASGIApp, settings: ApiSettings, stats: ApiStats) -> None:
        from web3 import Web3

        from walletd.domain.money import parse_usd
        from walletd.domain.networks import by_caip2

        self._core = core
        self._settings = settings
        self._stats = stats
        self._network = by_caip2(settings.network)
        self._w3 = Web3(Web3.HTTPProvider(settings.direct_rpc_url))
        self._header = settings.direct_proof_header.lower()
        self._prices = {
            path: price.removeprefix("$") for path, price in route_prices(settings).items()
        }
        self._atomic = {path: parse_usd(price) for path, price in self._prices.items()}
        self._seen: set[str] = set()
        self._lock = threading.Lock()

    def demand(self, path: str) -> str:
        """The direct ``PAYMENT-REQUIRED`` value for a priced path."""
        doc = {
            "recipient": self._settings.pay_to,
            "amount": self._prices[path],
            "chainId": self._network.chain_id,
            "token": self._network.usdc,
            "description": f"devnet direct payment for {path}",
        }
        return base64.b64encode(json_bytes(doc)).decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Ask for a transfer, or check the proof and serve."""
        path = "/" + scope["path"].removeprefix(DIRECT_PREFIX)
        route = f"{scope['method']} {scope['path']}"
        if path not in self._prices:
            await send_raw_error(send, 404, "Not found")
            return
        proof = Headers(scope=scope).get(self._header)
        if not proof:
            await self._ask(send, path, "Payment required")
            return
        problem = await asyncio.to_thread(self._check, proof, self._atomic[path])
        if problem:
            await self._ask(send, path, problem)
            return
        self._stats.record_settlement(route, proof.lower())
        await self._core({**scope, "path": path, "raw_path": path.encode()}, receive, send)

    async def _ask(self, send: Send, path: str, message: str) -> None:
        """Answer 402 with the direct demand for ``path`` and why it is asked again."""
        await send_raw_error(send, 402, message, {"PAYMENT-REQUIRED": self.demand(path)})

    def _check(self, proof: str, amount: int) -> str:
        """Why ``proof`` does not pay ``amount`` (empty when it does); claims it when it does."""
        tx_hash = proof.strip().lower()
        if len(tx_hash) != 66 or not tx_hash.startswith("0x"):
            return "proof is not a transaction hash"
        try:
            receipt: Any = self._w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except Exception:  # not mined, unknown, or the node failed: not a proof
            return "transaction not found on chain"
        if int(receipt["status"]) != 1:
            return "transaction reverted"
        if not self._pays(receipt, amount):
            return "transaction does not transfer the price to the recipient"
        with self._lock:
            if tx_hash in self._seen:
                return "transaction already used"
            self._seen.add(tx_hash)
        return ""

    def _pays(self, receipt: Any, amount: int) -> bool:
        """Whether the receipt holds a pinned-USDC ``Transfer`` of ``amount`` to ``pay_to``."""
        sender = str(receipt["from"]).lower()
        for entry in receipt["logs"]:
            topics = [bytes(t) for t in entry["topics"]]
            if (
                str(entry["address"]).lower() == self._network.usdc.lower()
                and len(topics) == 3
                and topics[0] == _TRANSFER_TOPIC
                and "0x" + topics[1][-20:].hex() == sender
                and "0x" + topics[2][-20:].hex() == self._settings.pay_to.lower()
                and int.from_bytes(bytes(entry["data"]), "big") == amount
            ):
                return True
        return False
