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

Both clients are one core, ``_ClusterCore``: the constructor, the request
bodies, the retry loop and the parsing of answers are written there once, as
plans of effects (send, read, close, sleep; see ``walletd.client._effects``).
Each client's methods run a plan with its own ``_perform``, four lines of
blocking or awaited I/O.
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
from typing import Any, Generic, NamedTuple, TypeAlias, TypedDict, TypeVar, Unpack

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
from walletd.client._effects import AsyncClosing, Closing, Plan, arun, check_options, run
from walletd.client._http import DEFAULT_TIMEOUT, open_client
from walletd.client._settings import WalletdSettings
from walletd.client._wallet import AsyncWalletClient, WalletClient

DEFAULT_PROVIDER = "venice"
RETRIED_STATUSES = frozenset({429, 500, 502, 503, 504})
DEFAULT_MAX_RETRY_AFTER = 30.0
"""Longest ``Retry-After`` honoured, in seconds; a longer one is cut to this."""

Messages = str | Sequence[Mapping[str, Any]]
_Outcome = httpx.Response | httpx.TransportError
T = TypeVar("T")


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
    """The first choice's message ("" if it had none)."""
    model: str
    """The model that answered, as the server names it."""
    finish_reason: str = ""
    """Why the answer ended: ``stop``, ``length``..."""
    usage: Mapping[str, int] = field(default_factory=dict)
    """Token counts (``prompt_tokens``, ``completion_tokens``...) as sent."""
    raw: Mapping[str, Any] = field(default_factory=dict)
    """The whole response document."""
    payment: PaymentAttempt | None = None
    """What walletd paid for it (None in API-key mode)."""


@dataclass(frozen=True)
class ImagesResult:
    """Generated images (PNG bytes) and the payment made for them."""

    images: list[bytes]
    payment: PaymentAttempt | None = None
    """What walletd paid for them (None in API-key mode)."""


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


@dataclass(frozen=True)
class ModelInfo:
    """One entry of ``GET /v1/models``."""

    id: str
    """The name to pass as ``model``."""
    type: str
    """``text``, ``image``..."""
    owned_by: str


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


class _Stream:
    """What both chat streams share: the response, what its SSE said, and its payment.

    ``payment`` is known as soon as the stream exists (the headers have come).
    """

    def __init__(self, response: httpx.Response) -> None:
        self._response = response
        self.state = _SseState()

    @property
    def payment(self) -> PaymentAttempt | None:
        """What walletd paid for this stream."""
        return payment_attempt(self._response)

    def _broke(self, exc: httpx.TransportError) -> ClusterConnectionError:
        return ClusterConnectionError(f"stream broke: {exc}")


class ChatStream(_Stream, Closing):
    """An iterator of text deltas; also a context manager that closes the response."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        self._lines = response.iter_lines()

    def __next__(self) -> str:
        while not self.state.done:
            try:
                line = next(self._lines)
            except StopIteration:
                break
            except httpx.TransportError as exc:
                self.close()
                raise self._broke(exc) from exc
            delta = self.state.feed(line)
            if delta is not None:
                return delta
        self.close()
        raise StopIteration

    def close(self) -> None:
        """Close the response (also on early exit)."""
        self._response.close()

    def __iter__(self) -> ChatStream:
        return self


class AsyncChatStream(_Stream, AsyncClosing):
    """:class:`ChatStream` for asyncio (``async for``, ``async with``)."""

    def __init__(self, response: httpx.Response) -> None:
        super().__init__(response)
        self._lines = response.aiter_lines()

    async def __anext__(self) -> str:
        while not self.state.done:
            try:
                line = await anext(self._lines)
            except StopAsyncIteration:
                break
            except httpx.TransportError as exc:
                await self.aclose()
                raise self._broke(exc) from exc
            delta = self.state.feed(line)
            if delta is not None:
                return delta
        await self.aclose()
        raise StopAsyncIteration

    async def aclose(self) -> None:
        """Close the response (also on early exit)."""
        await self._response.aclose()

    def __aiter__(self) -> AsyncChatStream:
        return self


# ---- the clients ------------------------------------------------------------------------


class ChatOptions(TypedDict, total=False):
    """The optional arguments of ``chat`` and ``chat_stream``."""

    max_tokens: int | None
    temperature: float | None
    provider: str | None
    """The backend the API routes to; None: the client's ``provider``."""
    idempotency_key: str | None
    """The logical request's key (default: a new one); the same key never pays twice."""


class ImageOptions(TypedDict, total=False):
    """The optional arguments of ``images`` and ``images_result``."""

    n: int
    """How many images (default 1)."""
    size: str
    """``WIDTHxHEIGHT`` (default ``1024x1024``)."""
    provider: str | None
    idempotency_key: str | None
    """The logical request's key (default: a new one); the same key never pays twice."""


class _Sleep(NamedTuple):
    seconds: float


class _Send(NamedTuple):
    request: httpx.Request


class _Read(NamedTuple):
    response: httpx.Response


class _Close(NamedTuple):
    response: httpx.Response


_Effect = _Sleep | _Send | _Read | _Close
_Plan: TypeAlias = Plan[_Effect, T]

W = TypeVar("W", WalletClient, AsyncWalletClient)
H = TypeVar("H", httpx.Client, httpx.AsyncClient)
Tr = TypeVar("Tr", httpx.BaseTransport, httpx.AsyncBaseTransport)


class _ClusterCore(Generic[W, Tr, H]):
    """The settings, request bodies and plans of both clients; the clients only run them."""

    _http_class: type[H]

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        walletd: WalletdSettings | None = None,
        wallet: W | None = None,
        provider: str = DEFAULT_PROVIDER,
        retry: RetryPolicy | None = None,
        timeout: httpx.Timeout = DEFAULT_TIMEOUT,
        transport: Tr | None = None,
    ) -> None:
        self.root = api_root(base_url)
        self.api_key = api_key
        self.provider = provider
        self.retry = retry or RetryPolicy()
        self.auth = None if api_key else self._auth(walletd, wallet)
        self._http: H = open_client(self._http_class, None, self.auth, timeout, transport)

    def _auth(self, walletd: WalletdSettings | None, wallet: W | None) -> WalletdAuth:
        """The payment flow of payment mode (given the wallet of this client's kind)."""
        raise NotImplementedError

    # ---- plans -----------------------------------------------------------

    def _chat(self, model: str, messages: Messages, options: ChatOptions) -> _Plan[ChatResult]:
        check_options(options, ChatOptions, "chat")
        body = self._chat_body(model, messages, options, stream=False)
        key = options.get("idempotency_key")
        response = yield from self._call("POST", "/chat/completions", body, key=key)
        return _chat_result(response.json(), payment_attempt(response))

    def _chat_stream(
        self, model: str, messages: Messages, options: ChatOptions
    ) -> _Plan[httpx.Response]:
        check_options(options, ChatOptions, "chat_stream")
        body = self._chat_body(model, messages, options, stream=True)
        key = options.get("idempotency_key")
        return (yield from self._call("POST", "/chat/completions", body, stream=True, key=key))

    def _images(self, model: str, prompt: str, options: ImageOptions) -> _Plan[ImagesResult]:
        check_options(options, ImageOptions, "images")
        body = {
            "model": model,
            "prompt": prompt,
            "n": options.get("n", 1),
            "size": options.get("size", "1024x1024"),
            "provider": options.get("provider") or self.provider,
            "response_format": "b64_json",
        }
        key = options.get("idempotency_key")
        response = yield from self._call("POST", "/images/generations", body, key=key)
        return ImagesResult(_images(response.json()), payment_attempt(response))

    def _models(self) -> _Plan[list[ModelInfo]]:
        return _models((yield from self._call("GET", "/models", None)).json())

    def _call(
        self, method: str, path: str, body: Any, *, stream: bool = False, key: str | None = None
    ) -> _Plan[httpx.Response]:
        """Send with retries under one idempotency key; a success response (read unless stream)."""
        key = key or new_idempotency_key()
        attempt = 0
        while True:
            outcome = yield from self._attempt(self._build(method, path, body, key), stream)
            if isinstance(outcome, httpx.Response) and outcome.status_code < 400:
                return outcome
            if not self._retryable(attempt, outcome):
                raise self._failure(outcome)
            yield _Sleep(self.retry.delay(attempt, outcome))
            attempt += 1

    def _attempt(self, request: httpx.Request, stream: bool) -> _Plan[_Outcome]:
        """One attempt; the transport error when no complete answer came.

        Error bodies are always read; a success body only when not streaming.
        """
        try:
            response: httpx.Response = yield _Send(request)
        except httpx.TransportError as exc:
            return exc
        try:
            if not stream or response.status_code >= 400:
                yield _Read(response)
        except httpx.TransportError as exc:
            yield _Close(response)
            return exc
        return response

    # ---- pieces ----------------------------------------------------------

    def _chat_body(
        self, model: str, messages: Messages, options: ChatOptions, *, stream: bool
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": _messages(messages),
            "provider": options.get("provider") or self.provider,
        }
        if stream:
            body["stream"] = True
        if options.get("max_tokens") is not None:
            body["max_tokens"] = options.get("max_tokens")
        if options.get("temperature") is not None:
            body["temperature"] = options.get("temperature")
        return body

    def _build(self, method: str, path: str, body: Any, key: str) -> httpx.Request:
        auth = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        headers = {**auth, IDEMPOTENCY_HEADER: key}
        return self._http.build_request(method, self.root + path, json=body, headers=headers)

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


class ClusterClient(_ClusterCore[WalletClient, httpx.BaseTransport, httpx.Client], Closing):
    """Blocking client of the paid API; see the module docstring.

    ``walletd`` (a :class:`WalletdSettings`) or ``wallet`` (a walletd client of
    your own) pays in payment mode; ``api_key`` switches to API-key mode.
    """

    _http_class = httpx.Client

    def chat(self, model: str, messages: Messages, **options: Unpack[ChatOptions]) -> ChatResult:
        """One chat completion."""
        return run(self._chat(model, messages, options), self._perform)

    def chat_stream(
        self, model: str, messages: Messages, **options: Unpack[ChatOptions]
    ) -> ChatStream:
        """A streamed chat completion: iterate it for text deltas."""
        return ChatStream(run(self._chat_stream(model, messages, options), self._perform))

    def images_result(
        self, model: str, prompt: str, **options: Unpack[ImageOptions]
    ) -> ImagesResult:
        """Generated images with the payment made for them."""
        return run(self._images(model, prompt, options), self._perform)

    def images(self, model: str, prompt: str, **options: Unpack[ImageOptions]) -> list[bytes]:
        """Generated images, as PNG bytes."""
        return self.images_result(model, prompt, **options).images

    def models(self) -> list[ModelInfo]:
        """The model catalogue (free)."""
        return run(self._models(), self._perform)

    def close(self) -> None:
        """Close the HTTP client (the walletd client it may have opened too)."""
        self._http.close()
        if self.auth is not None:
            self.auth.close()

    def _auth(self, walletd: WalletdSettings | None, wallet: WalletClient | None) -> WalletdAuth:
        return WalletdAuth(
            base_url=self.root, walletd=walletd, wallet=wallet, strip_authorization=False
        )

    def _perform(self, effect: _Effect) -> Any:
        if isinstance(effect, _Sleep):
            return time.sleep(effect.seconds)
        if isinstance(effect, _Read):
            return effect.response.read()
        if isinstance(effect, _Close):
            return effect.response.close()
        return self._http.send(effect.request, stream=True)


class AsyncClusterClient(
    _ClusterCore[AsyncWalletClient, httpx.AsyncBaseTransport, httpx.AsyncClient], AsyncClosing
):
    """asyncio client of the paid API; same behaviour as :class:`ClusterClient`."""

    _http_class = httpx.AsyncClient

    async def chat(
        self, model: str, messages: Messages, **options: Unpack[ChatOptions]
    ) -> ChatResult:
        """One chat completion."""
        return await arun(self._chat(model, messages, options), self._perform)

    async def chat_stream(
        self, model: str, messages: Messages, **options: Unpack[ChatOptions]
    ) -> AsyncChatStream:
        """A streamed chat completion: ``async for`` it for text deltas."""
        response = await arun(self._chat_stream(model, messages, options), self._perform)
        return AsyncChatStream(response)

    async def images_result(
        self, model: str, prompt: str, **options: Unpack[ImageOptions]
    ) -> ImagesResult:
        """Generated images with the payment made for them."""
        return await arun(self._images(model, prompt, options), self._perform)

    async def images(self, model: str, prompt: str, **options: Unpack[ImageOptions]) -> list[bytes]:
        """Generated images, as PNG bytes."""
        return (await self.images_result(model, prompt, **options)).images

    async def models(self) -> list[ModelInfo]:
        """The model catalogue (free)."""
        return await arun(self._models(), self._perform)

    async def aclose(self) -> None:
        """Close the HTTP client (and the walletd client it may have opened)."""
        await self._http.aclose()
        if self.auth is not None:
            await self.auth.aclose()

    def _auth(
        self, walletd: WalletdSettings | None, wallet: AsyncWalletClient | None
    ) -> WalletdAuth:
        return WalletdAuth(
            base_url=self.root, walletd=walletd, async_wallet=wallet, strip_authorization=False
        )

    async def _perform(self, effect: _Effect) -> Any:
        if isinstance(effect, _Sleep):
            return await asyncio.sleep(effect.seconds)
        if isinstance(effect, _Read):
            return await effect.response.aread()
        if isinstance(effect, _Close):
            return await effect.response.aclose()
        return await self._http.send(effect.request, stream=True)
