"""ClusterClient / AsyncClusterClient: a thin client of the documented paid API.

The API is Cluster Protocol's OpenAI-compatible surface (``/v1/chat/completions``,
``/v1/images/generations``, ``/v1/models``). Two modes:

* payment mode (default): requests go through :class:`WalletdAuth`, so each
  paid request is paid by walletd, exactly once per logical request;
* API-key mode (``api_key=...``): ``Authorization: Bearer`` and no payment, no
  walletd at all.

Retries: 429 and 5xx (and a connection that failed before a complete answer)
are retried with exponential backoff that honours ``Retry-After`` (capped).
Every attempt of one call carries the same ``Idempotency-Key``, so walletd hands
back the same signed authorization and a retried request never pays twice. A
stream that breaks after its first byte is not retried (it would duplicate
output); the error is raised instead.
"""

from __future__ import annotations

import asyncio
import base64
import email.utils
import json
import random
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import httpx

from walletd.client._api_errors import (
    ClusterConnectionError,
    ClusterError,
    PaymentRejectedError,
    error_class_for_status,
)
from walletd.client._auth import (
    IDEMPOTENCY_HEADER,
    PaymentAttempt,
    WalletdAuth,
    new_idempotency_key,
    payment_attempt,
    payment_refusal_reason,
)
from walletd.client._http import DEFAULT_TIMEOUT, async_http_client, http_client
from walletd.client._wallet import AsyncWalletClient, PathArg, WalletClient

DEFAULT_PROVIDER = "venice"
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_RETRY_AFTER = 30.0
"""Longest ``Retry-After`` honoured, in seconds; a longer one is cut to this."""

Messages = str | Sequence[Mapping[str, Any]]
_Outcome = httpx.Response | httpx.TransportError


def api_root(base_url: str) -> str:
    """The ``.../v1`` root of the API, whether or not ``base_url`` already ends in it."""
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


def _messages(messages: Messages) -> list[dict[str, Any]]:
    """A prompt string as one user message; a message list as is."""
    if isinstance(messages, str):
        return [{"role": "user", "content": messages}]
    return [dict(m) for m in messages]


# ---- results ------------------------------------------------------------------


@dataclass(frozen=True)
class ChatResult:
    """A chat completion: the text and the facts around it."""

    text: str
    model: str
    finish_reason: str
    usage: Mapping[str, int]
    raw: Mapping[str, Any]
    payment: PaymentAttempt | None = None


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``GET /v1/models``."""

    id: str
    type: str
    owned_by: str


@dataclass(frozen=True)
class ImagesResult:
    """Generated images (PNG bytes) and the payment made for them."""

    images: list[bytes]
    payment: PaymentAttempt | None = None


def _chat_result(data: Mapping[str, Any], payment: PaymentAttempt | None) -> ChatResult:
    choice = (data.get("choices") or [{}])[0]
    return ChatResult(
        text=str((choice.get("message") or {}).get("content") or ""),
        model=str(data.get("model", "")),
        finish_reason=str(choice.get("finish_reason") or ""),
        usage=dict(data.get("usage") or {}),
        raw=data,
        payment=payment,
    )


def _images(data: Mapping[str, Any]) -> list[bytes]:
    return [base64.b64decode(item["b64_json"]) for item in data.get("data", [])]


def _models(data: Mapping[str, Any]) -> list[ModelInfo]:
    return [
        ModelInfo(str(m.get("id", "")), str(m.get("type", "")), str(m.get("owned_by", "")))
        for m in data.get("data", [])
    ]


# ---- errors and retry timing ------------------------------------------------------


def _error_fields(response: httpx.Response) -> dict[str, str]:
    """``message``/``code``/``type`` of the documented error body (tolerant of others)."""
    try:
        doc = json.loads(response.content)
    except ValueError:
        doc = None
    error = doc.get("error") if isinstance(doc, dict) else None
    if isinstance(error, dict):
        return {k: str(error.get(k) or "") for k in ("message", "code", "type")}
    text = error if isinstance(error, str) else response.reason_phrase
    return {"message": text or f"HTTP {response.status_code}", "code": "", "type": ""}


def error_from_response(response: httpx.Response) -> ClusterError:
    """The typed error for a read error response.

    When walletd paid for the request, the error carries the payment's id
    (``details["payment_id"]``, and ``reused``): whatever the status, the
    authorization is out there until the ledger shows it settled or released.
    """
    fields = _error_fields(response)
    details = {"status": str(response.status_code), "code": fields["code"], "type": fields["type"]}
    attempt = payment_attempt(response)
    paid = ""
    if attempt is not None:
        details |= {
            "payment_id": attempt.receipt.payment_id,
            "reused": str(attempt.receipt.reused).lower(),
        }
        paid = f" (payment {attempt.receipt.payment_id} is outstanding)"
    if response.status_code == 402 and attempt is not None:
        reason = payment_refusal_reason(response) or fields["message"]
        details["payment_reason"] = reason
        message = f"the server refused payment {attempt.receipt.payment_id}: {reason}"
        return PaymentRejectedError(message, details)
    cls = error_class_for_status(response.status_code)
    return cls(f"HTTP {response.status_code}: {fields['message']}{paid}", details)


def _retry_after(response: httpx.Response | None) -> float | None:
    """Seconds asked by ``Retry-After`` (delta or HTTP date), or None."""
    value = response.headers.get("Retry-After", "").strip() if response is not None else ""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(when.timestamp() - time.time(), 0.0)


@dataclass(frozen=True)
class RetryPolicy:
    """How many retries and how long between them."""

    max_retries: int = 3
    backoff: float = 0.5
    max_backoff: float = 8.0
    max_retry_after: float = DEFAULT_MAX_RETRY_AFTER

    def delay(self, attempt: int, outcome: httpx.Response | Exception) -> float:
        """``Retry-After`` (capped) if the server sent one, else jittered exponential backoff."""
        asked = _retry_after(outcome if isinstance(outcome, httpx.Response) else None)
        if asked is not None:
            return min(asked, self.max_retry_after)
        base: float = min(self.backoff * 2.0**attempt, self.max_backoff)
        return base * (1 - 0.25 * random.random())  # noqa: S311 - jitter, not crypto


# ---- SSE ------------------------------------------------------------------------------


@dataclass
class _SseState:
    """What a chat stream has said so far besides its text."""

    done: bool = False
    finish_reason: str = ""
    usage: dict[str, int] = field(default_factory=dict)

    def feed(self, line: str) -> str | None:
        """The text delta of one SSE line, if it carries one."""
        if not line.startswith("data:"):
            return None
        data = line[5:].strip()
        if data == "[DONE]":
            self.done = True
            return None
        chunk = json.loads(data)
        if isinstance(chunk.get("error"), dict):
            error = chunk["error"]
            details = {"status": "0", "code": str(error.get("code", "")), "type": "stream_error"}
            raise ClusterError(f"error in stream: {error.get('message', '')}", details)
        self.usage = dict(chunk.get("usage") or self.usage)
        for choice in chunk.get("choices") or []:
            self.finish_reason = choice.get("finish_reason") or self.finish_reason
            content = (choice.get("delta") or {}).get("content")
            if content:
                return str(content)
        return None


class ChatStream:
    """An iterator of text deltas; also a context manager that closes the response.

    ``payment`` is known as soon as the stream exists (the headers have come).
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._lines = response.iter_lines()
        self.state = _SseState()

    @property
    def payment(self) -> PaymentAttempt | None:
        """What walletd paid for this stream."""
        return payment_attempt(self._response)

    def __iter__(self) -> ChatStream:
        return self

    def __next__(self) -> str:
        while not self.state.done:
            try:
                line = next(self._lines)
            except StopIteration:
                break
            except httpx.TransportError as exc:
                self.close()
                raise ClusterConnectionError(f"stream broke: {exc}") from exc
            delta = self.state.feed(line)
            if delta is not None:
                return delta
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Close the response (also on early exit)."""
        self._response.close()

    def __enter__(self) -> ChatStream:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncChatStream:
    """:class:`ChatStream` for asyncio (``async for``, ``async with``)."""

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self._lines = response.aiter_lines()
        self.state = _SseState()

    @property
    def payment(self) -> PaymentAttempt | None:
        """What walletd paid for this stream."""
        return payment_attempt(self._response)

    def __aiter__(self) -> AsyncChatStream:
        return self

    async def __anext__(self) -> str:
        while not self.state.done:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                break
            except httpx.TransportError as exc:
                await self.aclose()
                raise ClusterConnectionError(f"stream broke: {exc}") from exc
            delta = self.state.feed(line)
            if delta is not None:
                return delta
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the response (also on early exit)."""
        await self._response.aclose()

    async def __aenter__(self) -> AsyncChatStream:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


# ---- the clients ------------------------------------------------------------------------


class _ClusterBase:
    """Request bodies and settings shared by the sync and async clients."""

    def __init__(
        self, base_url: str, api_key: str | None, provider: str, retry: RetryPolicy
    ) -> None:
        self.root = api_root(base_url)
        self.api_key = api_key
        self.provider = provider
        self.retry = retry

    def _headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def _chat_body(
        self,
        model: str,
        messages: Messages,
        max_tokens: int | None,
        temperature: float | None,
        provider: str | None,
        stream: bool,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": _messages(messages),
            "provider": provider or self.provider,
        }
        if stream:
            body["stream"] = True
        if max_tokens is not None:
            body["max_tokens"] = max_tokens
        if temperature is not None:
            body["temperature"] = temperature
        return body

    def _image_body(
        self, model: str, prompt: str, n: int, size: str, provider: str | None
    ) -> dict[str, Any]:
        return {
            "model": model,
            "prompt": prompt,
            "n": n,
            "size": size,
            "provider": provider or self.provider,
            "response_format": "b64_json",
        }

    def _build(
        self, http: httpx.Client | httpx.AsyncClient, method: str, path: str, body: Any, key: str
    ) -> httpx.Request:
        headers = {**self._headers(), IDEMPOTENCY_HEADER: key}
        return http.build_request(method, self.root + path, json=body, headers=headers)

    def _retryable(self, attempt: int, outcome: _Outcome) -> bool:
        """Whether another attempt is allowed after this outcome."""
        if attempt >= self.retry.max_retries:
            return False
        if isinstance(outcome, httpx.TransportError):
            return True
        return outcome.status_code in RETRIED_STATUSES

    def _failure(self, outcome: _Outcome) -> ClusterError:
        """The error to raise when no more attempts are allowed."""
        if isinstance(outcome, httpx.Response):
            return error_from_response(outcome)
        return ClusterConnectionError(
            f"no complete answer from {self.root}: {type(outcome).__name__}: {outcome}"
        )


class ClusterClient(_ClusterBase):
    """Blocking client of the paid API; see the module docstring."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        prepay: bool = False,
        wallet: WalletClient | None = None,
        socket: PathArg | None = None,
        token: str | None = None,
        token_file: PathArg | None = None,
        labels: Mapping[str, str] | None = None,
        provider: str = DEFAULT_PROVIDER,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, provider, retry or RetryPolicy())
        if api_key:
            self.auth: WalletdAuth | None = None
            self._http = httpx.Client(timeout=timeout, transport=transport, follow_redirects=False)
        else:
            self.auth = WalletdAuth(
                base_url=self.root,
                prepay=prepay,
                wallet=wallet,
                socket=socket,
                token=token,
                token_file=token_file,
                labels=labels,
                strip_authorization=False,
            )
            self._http = http_client(auth=self.auth, timeout=timeout, transport=transport)

    def chat(
        self,
        model: str,
        messages: Messages,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        provider: str | None = None,
    ) -> ChatResult:
        """One chat completion."""
        body = self._chat_body(model, messages, max_tokens, temperature, provider, False)
        response = self._call("POST", "/chat/completions", body)
        return _chat_result(response.json(), payment_attempt(response))

    def chat_stream(
        self,
        model: str,
        messages: Messages,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        provider: str | None = None,
    ) -> ChatStream:
        """A streamed chat completion: iterate it for text deltas."""
        body = self._chat_body(model, messages, max_tokens, temperature, provider, True)
        return ChatStream(self._call("POST", "/chat/completions", body, stream=True))

    def images_result(
        self,
        model: str,
        prompt: str,
        *,
        n: int = 1,
        size: str = "1024x1024",
        provider: str | None = None,
    ) -> ImagesResult:
        """Generated images with the payment made for them."""
        body = self._image_body(model, prompt, n, size, provider)
        response = self._call("POST", "/images/generations", body)
        return ImagesResult(_images(response.json()), payment_attempt(response))

    def images(
        self,
        model: str,
        prompt: str,
        *,
        n: int = 1,
        size: str = "1024x1024",
        provider: str | None = None,
    ) -> list[bytes]:
        """Generated images, as PNG bytes."""
        return self.images_result(model, prompt, n=n, size=size, provider=provider).images

    def models(self) -> list[ModelInfo]:
        """The model catalogue (free)."""
        return _models(self._call("GET", "/models", None).json())

    def _call(self, method: str, path: str, body: Any, *, stream: bool = False) -> httpx.Response:
        """Send with retries under one idempotency key; a success response (read unless stream)."""
        key = new_idempotency_key()
        attempt = 0
        while True:
            outcome = self._attempt(self._build(self._http, method, path, body, key), stream)
            if isinstance(outcome, httpx.Response) and outcome.status_code < 400:
                return outcome
            if not self._retryable(attempt, outcome):
                raise self._failure(outcome)
            time.sleep(self.retry.delay(attempt, outcome))
            attempt += 1

    def _attempt(self, request: httpx.Request, stream: bool) -> _Outcome:
        """One attempt; the transport error when no complete answer came.

        Error bodies are always read; a success body only when not streaming.
        """
        try:
            response = self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            return exc
        try:
            if not stream or response.status_code >= 400:
                response.read()
        except httpx.TransportError as exc:
            response.close()
            return exc
        return response

    def close(self) -> None:
        """Close the HTTP client (the walletd client it may have opened too)."""
        self._http.close()
        if self.auth is not None:
            self.auth.close()

    def __enter__(self) -> ClusterClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class AsyncClusterClient(_ClusterBase):
    """asyncio client of the paid API; same behaviour as :class:`ClusterClient`."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        prepay: bool = False,
        wallet: AsyncWalletClient | None = None,
        socket: PathArg | None = None,
        token: str | None = None,
        token_file: PathArg | None = None,
        labels: Mapping[str, str] | None = None,
        provider: str = DEFAULT_PROVIDER,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        super().__init__(base_url, api_key, provider, retry or RetryPolicy())
        if api_key:
            self.auth: WalletdAuth | None = None
            self._http = httpx.AsyncClient(
                timeout=timeout, transport=transport, follow_redirects=False
            )
        else:
            self.auth = WalletdAuth(
                base_url=self.root,
                prepay=prepay,
                async_wallet=wallet,
                socket=socket,
                token=token,
                token_file=token_file,
                labels=labels,
                strip_authorization=False,
            )
            self._http = async_http_client(auth=self.auth, timeout=timeout, transport=transport)

    async def chat(
        self,
        model: str,
        messages: Messages,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        provider: str | None = None,
    ) -> ChatResult:
        """One chat completion."""
        body = self._chat_body(model, messages, max_tokens, temperature, provider, False)
        response = await self._call("POST", "/chat/completions", body)
        return _chat_result(response.json(), payment_attempt(response))

    async def chat_stream(
        self,
        model: str,
        messages: Messages,
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        provider: str | None = None,
    ) -> AsyncChatStream:
        """A streamed chat completion: ``async for`` it for text deltas."""
        body = self._chat_body(model, messages, max_tokens, temperature, provider, True)
        return AsyncChatStream(await self._call("POST", "/chat/completions", body, stream=True))

    async def images(
        self,
        model: str,
        prompt: str,
        *,
        n: int = 1,
        size: str = "1024x1024",
        provider: str | None = None,
    ) -> list[bytes]:
        """Generated images, as PNG bytes."""
        body = self._image_body(model, prompt, n, size, provider)
        return _images((await self._call("POST", "/images/generations", body)).json())

    async def models(self) -> list[ModelInfo]:
        """The model catalogue (free)."""
        return _models((await self._call("GET", "/models", None)).json())

    async def _call(
        self, method: str, path: str, body: Any, *, stream: bool = False
    ) -> httpx.Response:
        """See :meth:`ClusterClient._call`."""
        key = new_idempotency_key()
        attempt = 0
        while True:
            outcome = await self._attempt(self._build(self._http, method, path, body, key), stream)
            if isinstance(outcome, httpx.Response) and outcome.status_code < 400:
                return outcome
            if not self._retryable(attempt, outcome):
                raise self._failure(outcome)
            await asyncio.sleep(self.retry.delay(attempt, outcome))
            attempt += 1

    async def _attempt(self, request: httpx.Request, stream: bool) -> _Outcome:
        """See :meth:`ClusterClient._attempt`."""
        try:
            response = await self._http.send(request, stream=True)
        except httpx.TransportError as exc:
            return exc
        try:
            if not stream or response.status_code >= 400:
                await response.aread()
        except httpx.TransportError as exc:
            await response.aclose()
            return exc
        return response

    async def aclose(self) -> None:
        """Close the HTTP client (and the walletd client it may have opened)."""
        await self._http.aclose()
        if self.auth is not None:
            await self.auth.aclose()

    async def __aenter__(self) -> AsyncClusterClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()
