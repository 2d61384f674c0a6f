"""The outermost ASGI layer of the local paid API: one request's path through it.

In order, it

1. injects faults that tests ask for (:class:`~walletd.devnet.api.faults.Faults`),
2. routes requests carrying ``Authorization`` around the payment layer (API-key access),
   and ``/direct/...`` to the direct-transfer paywall,
3. counts requests and settlements (:class:`~walletd.devnet.api.stats.ApiStats`), and
4. rewrites the SDK's error bodies into the documented error shape.

It is the only layer that sees every answer as the client gets it, which is why counting
and error shaping live here rather than in the handlers.
"""

from __future__ import annotations

import asyncio
import hmac
from collections.abc import Iterable
from typing import Literal

from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from walletd.devnet.api.direct import DIRECT_PREFIX
from walletd.devnet.api.errors import send_raw_error
from walletd.devnet.api.faults import ConnectionDroppedError, Faults
from walletd.devnet.api.paywall import PAYMENT_HEADERS, settled_transaction, shaped_error
from walletd.devnet.api.stats import ApiStats

__all__ = ["DEVNET_PREFIX", "Gateway"]

DEVNET_PREFIX = "/_devnet/"


def _with_body_headers(
    raw: Iterable[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    """Raw headers with content-length replaced for a rewritten body."""
    kept = [(k, v) for k, v in raw if k.lower() != b"content-length"]
    return [*kept, (b"content-length", str(length).encode())]


class _ResponseObserver:
    """Wraps ``send`` for one request: counts, applies post-settlement faults, shapes errors.

    Modes: ``pass`` forwards messages as they come (so keyed SSE really streams),
    ``buffer`` collects a JSON error body to rewrite it, ``swallow`` discards the inner
    response because a fault replaces it (see :meth:`finish`).
    """

    def __init__(self, route: str, send: Send, stats: ApiStats, faults: Faults) -> None:
        self._route = route
        self._send = send
        self._stats = stats
        self._faults = faults
        self._mode: Literal["pass", "buffer", "swallow"] = "pass"
        self._start: Message | None = None
        self._body = bytearray()
        self._after_settle: int | Literal["drop"] | None = None

    async def send(self, message: Message) -> None:
        """The ``send`` handed to the inner app."""
        if message["type"] == "http.response.start":
            await self._on_start(message)
        elif message["type"] != "http.response.body" or self._mode == "pass":
            await self._send(message)
        elif self._mode == "buffer":
            self._body += message.get("body", b"")
            if not message.get("more_body", False):
                await self._flush_rewritten()

    async def _on_start(self, message: Message) -> None:
        """Inspect the status line and headers and choose a mode."""
        status: int = message["status"]
        headers = Headers(raw=message["headers"])
        transaction = settled_transaction(headers) if status < 400 else None
        if transaction is not None:
            self._stats.record_settlement(self._route, transaction)
            self._after_settle = self._faults.take_after_settle()
            if self._after_settle is not None:
                self._mode = "swallow"
                return
        if status >= 400 and headers.get("content-type", "").startswith("application/json"):
            self._mode, self._start = "buffer", message
            return
        await self._send_start(message)

    async def _send_start(self, message: Message) -> None:
        """Forward a status line, counting the status the client really gets."""
        self._stats.record_status(self._route, message["status"])
        await self._send(message)

    async def _flush_rewritten(self) -> None:
        """Send a buffered error response, its body rewritten into the documented shape."""
        assert self._start is not None
        start, body = self._start, bytes(self._body)
        shaped = shaped_error(start["status"], Headers(raw=start["headers"]), body)
        if shaped is not None:
            start = {**start, "headers": _with_body_headers(start["headers"], len(shaped))}
            body = shaped
        await self._send_start(start)
        await self._send({"type": "http.response.body", "body": body})

    async def finish(self) -> None:
        """After the inner app returned: emit the fault response that replaced its answer."""
        action = self._after_settle
        if action is None:
            return
        if not isinstance(action, int):
            headers = [(b"content-type", b"application/json"), (b"content-length", b"4096")]
            start = {"type": "http.response.start", "status": 200, "headers": headers}
            await self._send_start(start)
            raise ConnectionDroppedError("devnet fault: connection dropped after settlement")
        self._stats.record_status(self._route, action)
        await send_raw_error(self._send, action, "devnet fault injected after settlement")


class Gateway:
    """The outermost layer: faults first, then API keys around payment, then payment.

    ``/_devnet/*`` goes to the outer app itself (stats), untouched. A request carrying an
    ``Authorization`` header is an API-key request: served by the unpaid app if the bearer
    key is configured, refused 401 otherwise; it never reaches the payment layer. Every
    other request goes through the SDK's payment middleware.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        free: ASGIApp,
        paid: ASGIApp,
        api_keys: frozenset[str],
        stats: ApiStats,
        faults: Faults,
        direct: ASGIApp | None = None,
    ) -> None:
        self.app = app
        self._free = free
        self._paid = paid
        self._direct = direct
        self._api_keys = api_keys
        self._stats = stats
        self._faults = faults

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Route one ASGI call."""
        if scope["type"] != "http" or scope["path"].startswith(DEVNET_PREFIX):
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        route = f"{scope['method']} {scope['path']}"
        self._stats.record_request(
            route,
            has_payment=any(name in headers for name in PAYMENT_HEADERS),
            has_api_key="authorization" in headers,
        )
        observer = _ResponseObserver(route, send, self._stats, self._faults)
        await self._dispatch(scope, receive, observer.send, headers.get("authorization"))
        await observer.finish()

    async def _dispatch(
        self, scope: Scope, receive: Receive, send: Send, authorization: str | None
    ) -> None:
        """Pick the fault, key or payment path for one request."""
        if self._faults.answer_delay_seconds > 0:
            await asyncio.sleep(self._faults.answer_delay_seconds)
        injected = self._faults.take_status_before_payment()
        if injected is not None:
            status, retry_after = injected
            extra = {"Retry-After": str(retry_after)} if retry_after is not None else None
            await send_raw_error(send, status, "devnet fault injected before payment", extra)
        elif self._direct is not None and scope["path"].startswith(DIRECT_PREFIX):
            await self._direct(scope, receive, send)
        elif authorization is None:
            await self._paid(scope, receive, send)
        elif self._key_is_valid(authorization):
            await self._free(scope, receive, send)
        else:
            await send_raw_error(send, 401, "Invalid API key")

    def _key_is_valid(self, authorization: str) -> bool:
        """``Bearer <key>`` with a configured key (constant-time compare)."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return any(hmac.compare_digest(token.encode(), key.encode()) for key in self._api_keys)
