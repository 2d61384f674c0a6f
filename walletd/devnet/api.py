"""A local paid API that behaves like Cluster Protocol, for walletd's tests and demos.

Cluster Protocol is an OpenAI-compatible gateway to Venice models that asks for an x402 v2
payment (USDC on Base, ``exact`` scheme) when a request carries no API key. This module
rebuilds that contract locally so that walletd can be tested end to end without internet:

* ``POST /v1/chat/completions``: a deterministic canned reply (optionally streamed as SSE).
* ``POST /v1/images/generations``: ``n`` small real PNGs, deterministic from the prompt.
* ``GET /v1/models``: a fixed catalogue, free.
* ``GET /_devnet/stats``: the :class:`ApiStats` counters, free and never faulted.

Payment is enforced by the x402 SDK's own ``PaymentMiddlewareASGI`` backed by a local
facilitator (see :mod:`walletd.devnet.facilitator`), so the wire format is the SDK's, not ours.
Around it sits one small ASGI layer of our own (:class:`_Gateway`) that

1. injects faults that tests ask for (:class:`Faults`),
2. routes requests carrying ``Authorization`` around the payment layer (API-key access),
3. counts requests and settlements (:class:`ApiStats`), and
4. rewrites the SDK's error bodies (``{}`` on a 402, ``{"error": "..."}`` on a 502) into the
   documented shape ``{"error": {"message", "type", "code"}}``.

What a "token" is here: a whitespace-separated word (``len(text.split())``). Usage counts are
exact under that definition for the text the server produced, which is all a test of
budgeting or reporting needs.

Note on ordering: the SDK checks payment *before* the handler validates the body, so an
unpaid bad request gets 402, and a paid bad request gets the handler's 400 (or 404). The SDK
does not settle when the handler answers >= 400, so no money moves, but the signed
authorization stays valid on chain until its ``validBefore``.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import json
import struct
import threading
import time
import zlib
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from x402.http import FacilitatorConfig, HTTPFacilitatorClient, PaymentOption
from x402.http.middleware.fastapi import PaymentMiddlewareASGI
from x402.http.types import RouteConfig
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.server import x402ResourceServer

__all__ = [
    "CHAT_ROUTE",
    "IMAGES_ROUTE",
    "MODELS",
    "PNG_EDGE_PIXELS",
    "PNG_SIGNATURE",
    "ApiSettings",
    "ApiStats",
    "Faults",
    "ModelInfo",
    "RouteStats",
    "api_faults",
    "api_stats",
    "canned_reply",
    "count_tokens",
    "create_api_app",
    "render_png",
]

BASE_NETWORK = "eip155:8453"
CHAT_ROUTE = "POST /v1/chat/completions"
IMAGES_ROUTE = "POST /v1/images/generations"
DEVNET_PREFIX = "/_devnet/"
PAYMENT_HEADERS = ("payment-signature", "x-payment")


# ---------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ApiSettings:
    """Everything that differs between one local paid API and another.

    Prices are the SDK's money strings (``"$0.003"``); the SDK turns them into the atomic
    amount of the network's default asset (USDC, 6 decimals), so ``"$0.003"`` is 3000 units.
    """

    facilitator_url: str
    pay_to: str
    network: str = BASE_NETWORK
    chat_price: str = "$0.003"
    image_price: str = "$0.02"
    api_keys: frozenset[str] = frozenset()
    max_timeout_seconds: int = 300
    direct_rpc_url: str = ""
    """When set, ``/direct/...`` serves the same routes paid by direct transfer (see below)."""
    direct_proof_header: str = "X-Payment-Tx"

    def __post_init__(self) -> None:
        """Refuse settings that could make the SDK talk to a public facilitator."""
        if not self.facilitator_url.startswith(("http://127.0.0.1", "http://localhost")):
            raise ValueError(f"facilitator_url must be a loopback URL: {self.facilitator_url!r}")
        if self.max_timeout_seconds <= 0:
            raise ValueError("max_timeout_seconds must be positive")
        if self.direct_rpc_url and not self.direct_rpc_url.startswith(
            ("http://127.0.0.1", "http://localhost")
        ):
            raise ValueError(f"direct_rpc_url must be a loopback URL: {self.direct_rpc_url!r}")


# ---------------------------------------------------------------------------
# Model catalogue
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class ModelInfo:
    """One entry of the catalogue served at ``GET /v1/models``."""

    id: str
    type: Literal["text", "image"]


# A plausible set of Venice model ids, not an authoritative copy of Venice's current list:
# tests only need a few known text and image ids and one that is unknown.
MODELS: tuple[ModelInfo, ...] = (
    ModelInfo("llama-3.3-70b", "text"),
    ModelInfo("llama-3.2-3b", "text"),
    ModelInfo("qwen3-235b", "text"),
    ModelInfo("mistral-31-24b", "text"),
    ModelInfo("venice-uncensored", "text"),
    ModelInfo("venice-sd35", "image"),
    ModelInfo("hidream", "image"),
    ModelInfo("flux-dev", "image"),
)
_MODELS_BY_ID = {model.id: model for model in MODELS}
_CATALOGUE_CREATED = 1_735_689_600  # 2025-01-01, fixed so the listing is deterministic


def _models_listing() -> dict[str, Any]:
    """The OpenAI-style list object for ``GET /v1/models``."""
    return {
        "object": "list",
        "data": [
            {
                "id": model.id,
                "object": "model",
                "created": _CATALOGUE_CREATED,
                "owned_by": "venice.ai",
                "type": model.type,
            }
            for model in MODELS
        ],
    }


# ---------------------------------------------------------------------------
# Errors in the documented shape
# ---------------------------------------------------------------------------

_ERROR_DEFAULTS: dict[int, tuple[str, str, str]] = {
    400: ("invalid_request_error", "invalid_request", "Invalid request"),
    401: ("authentication_error", "invalid_api_key", "Invalid API key"),
    402: ("payment_required", "payment_required", "Payment required"),
    404: ("not_found_error", "not_found", "Not found"),
    405: ("invalid_request_error", "method_not_allowed", "Method not allowed"),
    429: ("rate_limit_error", "rate_limit_exceeded", "Too many requests"),
    500: ("server_error", "internal_error", "Internal server error"),
    502: ("server_error", "bad_gateway", "Bad gateway"),
    503: ("server_error", "service_unavailable", "Service unavailable"),
}


class ApiError(Exception):
    """An error a handler raises to answer in the documented error shape."""

    def __init__(self, status: int, message: str, type_: str, code: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code


def _error_dict(
    status: int, message: str | None = None, code: str | None = None, type_: str | None = None
) -> dict[str, Any]:
    """``{"error": {"message", "type", "code"}}``, defaults filled in from the status."""
    default_type, default_code, default_message = _ERROR_DEFAULTS.get(
        status, ("server_error" if status >= 500 else "invalid_request_error", "error", "Error")
    )
    error = {
        "message": message or default_message,
        "type": type_ or default_type,
        "code": code or default_code,
    }
    return {"error": error}


def error_body(status: int, message: str | None = None, code: str | None = None) -> bytes:
    """The documented error shape for a status, as response bytes."""
    return _json_bytes(_error_dict(status, message, code))


def _json_bytes(data: Any) -> bytes:
    """Compact JSON, the encoding every body of this module uses."""
    return json.dumps(data, separators=(",", ":")).encode()


def _error_response(status: int, message: str, code: str, type_: str | None = None) -> Response:
    """A Starlette response in the error shape (used by the exception handlers)."""
    return JSONResponse(_error_dict(status, message, code, type_), status_code=status)


async def _on_api_error(_: Request, exc: Exception) -> Response:
    """Render an :class:`ApiError` raised by a handler."""
    assert isinstance(exc, ApiError)
    return _error_response(exc.status, exc.message, exc.code, exc.type)


async def _on_validation_error(_: Request, exc: Exception) -> Response:
    """Turn FastAPI's 422 into the gateway's 400 ``invalid_request_error``.

    The code names the offending top-level field (``invalid_n``, ``invalid_messages``) so a
    test can tell which check fired without parsing the message.
    """
    assert isinstance(exc, RequestValidationError)
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid body", "type": "invalid"}
    loc = [str(part) for part in first.get("loc", ()) if part != "body"]
    if first.get("type") == "json_invalid":
        code = "invalid_json"
    else:
        code = f"invalid_{loc[0]}" if loc else "invalid_body"
    where = ".".join(loc) or "body"
    return _error_response(400, f"{where}: {first.get('msg', 'invalid')}", code)


async def _on_http_exception(request: Request, exc: Exception) -> Response:
    """Shape Starlette's own 404/405 (unknown path, wrong method)."""
    assert isinstance(exc, StarletteHTTPException)
    _, code, message = _ERROR_DEFAULTS.get(exc.status_code, ("", "error", str(exc.detail)))
    return _error_response(exc.status_code, message, code)


async def _on_unexpected(_: Request, exc: Exception) -> Response:
    """Shape an unhandled handler error as a 500 (Starlette still logs and re-raises it)."""
    return _error_response(500, f"internal error: {type(exc).__name__}", "internal_error")


def _install_error_handlers(app: FastAPI) -> None:
    """Make every error a FastAPI app produces use the documented shape."""
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_exception)
    app.add_exception_handler(Exception, _on_unexpected)


def _require_model(model_id: str, kind: Literal["text", "image"]) -> ModelInfo:
    """Look a model up in the catalogue; 404 if unknown, 400 if it is the wrong kind."""
    model = _MODELS_BY_ID.get(model_id)
    if model is None:
        message = f"The model `{model_id}` does not exist"
        raise ApiError(404, message, "invalid_request_error", "model_not_found")
    if model.type != kind:
        raise ApiError(
            400,
            f"The model `{model_id}` is an {model.type} model, not a {kind} model",
            "invalid_request_error",
            "model_type_mismatch",
        )
    return model


# ---------------------------------------------------------------------------
# Chat completions
# ---------------------------------------------------------------------------

_STRICT = ConfigDict(extra="ignore", strict=True)


class TextPart(BaseModel):
    """A text content part (``{"type": "text", "text": ...}``), as OpenAI clients send."""

    model_config = _STRICT
    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    """One chat message; content is a string or a list of text parts."""

    model_config = _STRICT
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart]

    def text(self) -> str:
        """The message's text, parts joined by a space."""
        if isinstance(self.content, str):
            return self.content
        return " ".join(part.text for part in self.content)


class ChatRequest(BaseModel):
    """The accepted subset of an OpenAI chat-completions body (unknown keys are ignored)."""

    model_config = _STRICT
    model: Annotated[str, Field(min_length=1)]
    provider: Literal["venice"] = "venice"
    messages: Annotated[list[ChatMessage], Field(min_length=1)]
    stream: bool = False
    max_tokens: Annotated[int | None, Field(ge=1, le=4096)] = None
    temperature: Annotated[float | None, Field(ge=0, le=2)] = None


def count_tokens(text: str) -> int:
    """Tokens as this server defines them: whitespace-separated words."""
    return len(text.split())


@dataclass(frozen=True)
class CannedReply:
    """The words of a reply and why it ended (``stop`` or ``length``)."""

    words: tuple[str, ...]
    finish_reason: Literal["stop", "length"]

    @property
    def text(self) -> str:
        """The reply text; ``count_tokens(text) == len(words)`` by construction."""
        return " ".join(self.words)


_FILLER = (
    "the", "local", "venice", "gateway", "answers", "with", "a", "canned", "reply", "so",
    "tests", "can", "check", "usage", "and", "payment", "flows", "on", "devnet", "without",
    "any", "real", "model", "today",
)  # fmt: skip
_ECHO_WORDS = 6
_MIN_REPLY_WORDS = 12
_MAX_REPLY_WORDS = 24


def canned_reply(model: str, prompt: str, max_tokens: int | None) -> CannedReply:
    """A deterministic reply of 12-24 words derived from the model and prompt.

    It echoes the prompt's last words so a human can see which request it answers, then
    fills with words picked by a SHA-256 of the prompt. ``max_tokens`` truncates it, and
    the finish reason then says ``length`` as OpenAI does.
    """
    digest = hashlib.sha256(f"{model}\x00{prompt}".encode()).digest()
    natural = _MIN_REPLY_WORDS + digest[0] % (_MAX_REPLY_WORDS - _MIN_REPLY_WORDS + 1)
    echo = prompt.split()[-_ECHO_WORDS:]
    words = ["Devnet", "reply", "to:", *echo, "--", *(_FILLER[b % len(_FILLER)] for b in digest)]
    if max_tokens is not None and max_tokens < natural:
        return CannedReply(tuple(words[:max_tokens]), "length")
    return CannedReply(tuple(words[:natural]), "stop")


def _usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    """The OpenAI usage object."""
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def _completion_id(model: str, prompt: str) -> str:
    """A stable id for a (model, prompt) pair."""
    return "chatcmpl-" + hashlib.sha256(f"id\x00{model}\x00{prompt}".encode()).hexdigest()[:24]


def _chat_body(request: ChatRequest, prompt: str, reply: CannedReply) -> dict[str, Any]:
    """The non-streamed ``chat.completion`` object."""
    return {
        "id": _completion_id(request.model, prompt),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": request.model,
        "provider": request.provider,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": reply.text},
                "finish_reason": reply.finish_reason,
            }
        ],
        "usage": _usage(count_tokens(prompt), len(reply.words)),
    }


def _sse_events(request: ChatRequest, prompt: str, reply: CannedReply) -> Iterator[bytes]:
    """The ``chat.completion.chunk`` events of a streamed reply, ending in ``[DONE]``.

    A role chunk, one chunk per word (the deltas concatenate to the non-streamed text), a
    finish chunk, then a usage chunk with empty ``choices`` as OpenAI's ``include_usage``.
    """
    base = {
        "id": _completion_id(request.model, prompt),
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": request.model,
    }
    deltas: list[tuple[dict[str, str], str | None]] = [({"role": "assistant", "content": ""}, None)]
    deltas += [({"content": w if i == 0 else " " + w}, None) for i, w in enumerate(reply.words)]
    deltas.append(({}, reply.finish_reason))
    for delta, finish in deltas:
        choice = {"index": 0, "delta": delta, "finish_reason": finish}
        yield _sse({**base, "choices": [choice]})
    yield _sse({**base, "choices": [], "usage": _usage(count_tokens(prompt), len(reply.words))})
    yield b"data: [DONE]\n\n"


def _sse(data: dict[str, Any]) -> bytes:
    """One SSE ``data:`` event."""
    return b"data: " + _json_bytes(data) + b"\n\n"


async def chat_completions(body: ChatRequest) -> Response:
    """``POST /v1/chat/completions``."""
    _require_model(body.model, "text")
    prompt = "\n".join(message.text() for message in body.messages)
    reply = canned_reply(body.model, prompt, body.max_tokens)
    if body.stream:
        return StreamingResponse(_sse_events(body, prompt, reply), media_type="text/event-stream")
    return JSONResponse(_chat_body(body, prompt, reply))


# ---------------------------------------------------------------------------
# Image generations
# ---------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNGs are this small whatever ``size`` asks for: tests check format, count and
# determinism, and megabytes of pixels would only slow them down.
PNG_EDGE_PIXELS = 16


class ImageRequest(BaseModel):
    """The accepted subset of an OpenAI image-generation body."""

    model_config = _STRICT
    model: Annotated[str, Field(min_length=1)]
    prompt: Annotated[str, Field(min_length=1)]
    provider: Literal["venice"] = "venice"
    n: Annotated[int, Field(ge=1, le=4)] = 1
    size: Literal["256x256", "512x512", "1024x1024"] = "1024x1024"
    response_format: Literal["b64_json"] = "b64_json"


def _png_chunk(tag: bytes, data: bytes) -> bytes:
    """A PNG chunk: length, tag, data, CRC-32 over tag and data."""
    crc = zlib.crc32(tag + data) & 0xFFFFFFFF
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", crc)


def _pixel_row(seed: bytes, y: int, edge: int) -> bytes:
    """One RGB row: a horizontal blend of two seed colours, shifted per row."""
    row = bytearray()
    for x in range(edge):
        for c in range(3):
            blend = (seed[c] * (edge - 1 - x) + seed[3 + c] * x) // (edge - 1)
            row.append((blend + y * seed[6 + c] // edge) % 256)
    return bytes(row)


def render_png(seed: bytes, edge: int = PNG_EDGE_PIXELS) -> bytes:
    """A valid ``edge`` x ``edge`` 8-bit RGB PNG whose pixels derive from ``seed`` (>= 9 bytes)."""
    raw = b"".join(b"\x00" + _pixel_row(seed, y, edge) for y in range(edge))
    header = struct.pack(">IIBBBBB", edge, edge, 8, 2, 0, 0, 0)
    return (
        PNG_SIGNATURE
        + _png_chunk(b"IHDR", header)
        + _png_chunk(b"IDAT", zlib.compress(raw, 9))
        + _png_chunk(b"IEND", b"")
    )


async def image_generations(body: ImageRequest) -> Response:
    """``POST /v1/images/generations``: ``n`` PNGs, each seeded by prompt, size and index."""
    _require_model(body.model, "image")
    images = []
    for index in range(body.n):
        seed = hashlib.sha256(f"{body.model}\x00{body.size}\x00{body.prompt}\x00{index}".encode())
        images.append({"b64_json": base64.b64encode(render_png(seed.digest())).decode()})
    return JSONResponse({"created": int(time.time()), "data": images})


# ---------------------------------------------------------------------------
# Stats
# ---------------------------------------------------------------------------


@dataclass
class RouteStats:
    """Counters for one ``"METHOD /path"``."""

    requests: int = 0
    with_payment_header: int = 0
    without_payment_header: int = 0
    with_api_key: int = 0
    paid: int = 0
    payment_required: int = 0
    statuses: dict[int, int] = field(default_factory=dict)


class ApiStats:
    """What the API saw, for tests to assert on (thread-safe; the server runs in a thread).

    ``paid`` counts responses that carried a successful ``PAYMENT-RESPONSE``, i.e. the
    facilitator settled on chain; ``payment_required`` counts 402 answers.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._routes: dict[str, RouteStats] = {}
        self._transactions: list[str] = []

    def record_request(self, route: str, *, has_payment: bool, has_api_key: bool) -> None:
        """Count one incoming request."""
        with self._lock:
            stats = self._routes.setdefault(route, RouteStats())
            stats.requests += 1
            stats.with_payment_header += has_payment
            stats.without_payment_header += not has_payment
            stats.with_api_key += has_api_key

    def record_settlement(self, route: str, transaction: str) -> None:
        """Count one successful settlement and keep its transaction hash."""
        with self._lock:
            self._routes.setdefault(route, RouteStats()).paid += 1
            self._transactions.append(transaction)

    def record_status(self, route: str, status: int) -> None:
        """Count the status actually sent to the client."""
        with self._lock:
            stats = self._routes.setdefault(route, RouteStats())
            stats.statuses[status] = stats.statuses.get(status, 0) + 1
            stats.payment_required += status == 402

    def route(self, route: str) -> RouteStats:
        """A copy of one route's counters (zeros if never seen)."""
        with self._lock:
            stats = self._routes.get(route, RouteStats())
            return RouteStats(**{**stats.__dict__, "statuses": dict(stats.statuses)})

    @property
    def transactions(self) -> list[str]:
        """Settlement transaction hashes, oldest first."""
        with self._lock:
            return list(self._transactions)

    @property
    def paid(self) -> int:
        """Settled requests over all routes."""
        with self._lock:
            return sum(stats.paid for stats in self._routes.values())

    @property
    def payment_required(self) -> int:
        """402 answers over all routes."""
        with self._lock:
            return sum(stats.payment_required for stats in self._routes.values())

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready copy, as served at ``GET /_devnet/stats``."""
        with self._lock:
            routes = {
                name: {**stats.__dict__, "statuses": {str(k): v for k, v in stats.statuses.items()}}
                for name, stats in self._routes.items()
            }
            return {"routes": routes, "transactions": list(self._transactions)}

    def reset(self) -> None:
        """Forget everything (between tests)."""
        with self._lock:
            self._routes.clear()
            self._transactions.clear()


# ---------------------------------------------------------------------------
# Fault injection
# ---------------------------------------------------------------------------

DROP: Literal["drop"] = "drop"


@dataclass
class Faults:
    """Misbehaviour a test can switch on; the API reads it per request. Reset between tests.

    * ``status_before_payment``: answer this status (e.g. 429 or 503) to the next
      ``status_before_payment_times`` requests (any path but ``/_devnet/``) before anything (no
      key check, no payment check); ``retry_after_seconds`` adds a ``Retry-After`` header.
    * ``fail_after_settle_status``: once, after a payment has been settled on chain, answer
      this status instead of the handler's response. The ``PAYMENT-RESPONSE`` header is
      withheld, so the client cannot tell from the answer that it paid.
    * ``drop_connection_after_settle``: once, after a settlement, send a 200 status line and
      headers (without ``PAYMENT-RESPONSE``) and close the connection without a body.
    * ``answer_delay_seconds``: wait this long before handling every request (any path but
      ``/_devnet/``), as a slow or stuck upstream would; nothing is paid while waiting.
    """

    status_before_payment: int | None = None
    status_before_payment_times: int = 1
    retry_after_seconds: int | None = None
    fail_after_settle_status: int | None = None
    drop_connection_after_settle: bool = False
    answer_delay_seconds: float = 0.0
    _lock: threading.Lock = field(
        default_factory=threading.Lock, init=False, repr=False, compare=False
    )

    def take_status_before_payment(self) -> tuple[int, int | None] | None:
        """Consume one injected pre-payment status: ``(status, retry_after)`` or None."""
        with self._lock:
            status = self.status_before_payment
            if status is None or self.status_before_payment_times <= 0:
                return None
            self.status_before_payment_times -= 1
            if self.status_before_payment_times == 0:
                self.status_before_payment = None
            return status, self.retry_after_seconds

    def take_after_settle(self) -> int | Literal["drop"] | None:
        """Consume the one-shot post-settlement fault: a status, ``"drop"``, or None."""
        with self._lock:
            if self.drop_connection_after_settle:
                self.drop_connection_after_settle = False
                return DROP
            status, self.fail_after_settle_status = self.fail_after_settle_status, None
            return status

    def reset(self) -> None:
        """Switch every fault off."""
        with self._lock:
            self.status_before_payment = None
            self.status_before_payment_times = 1
            self.retry_after_seconds = None
            self.fail_after_settle_status = None
            self.drop_connection_after_settle = False
            self.answer_delay_seconds = 0.0


class ConnectionDroppedError(Exception):
    """Raised to make uvicorn close a connection mid-response (the drop fault)."""


# ---------------------------------------------------------------------------
# The outer ASGI layer
# ---------------------------------------------------------------------------


def _decode_header_json(value: str | None) -> dict[str, Any] | None:
    """Decode an x402 base64-JSON header; None if absent or not a JSON object."""
    if value is None:
        return None
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _payment_reason(headers: Headers) -> str | None:
    """The SDK's reason for a payment failure, from PAYMENT-REQUIRED or PAYMENT-RESPONSE."""
    required = _decode_header_json(headers.get("payment-required")) or {}
    response = _decode_header_json(headers.get("payment-response")) or {}
    reason = required.get("error") or response.get("errorReason")
    return str(reason) if reason else None


def _shaped_error(status: int, headers: Headers, body: bytes) -> bytes | None:
    """The error-shaped replacement for an SDK error body, or None if already shaped."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return None
    legacy = data.get("error") if isinstance(data, dict) else None
    message = _payment_reason(headers) or (legacy if isinstance(legacy, str) else None)
    return error_body(status, message)


def _with_body_headers(
    raw: Iterable[tuple[bytes, bytes]], length: int
) -> list[tuple[bytes, bytes]]:
    """Raw headers with content-length replaced for a rewritten body."""
    kept = [(k, v) for k, v in raw if k.lower() != b"content-length"]
    return [*kept, (b"content-length", str(length).encode())]


async def _send_raw_error(
    send: Send, status: int, message: str | None = None, extra: dict[str, str] | None = None
) -> None:
    """Send a complete error-shaped JSON response straight onto an ASGI ``send``."""
    body = error_body(status, message)
    headers = [(b"content-type", b"application/json")]
    headers += [(k.lower().encode(), v.encode()) for k, v in (extra or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


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
        settlement = _decode_header_json(headers.get("payment-response"))
        if status < 400 and settlement is not None and settlement.get("success") is True:
            self._stats.record_settlement(self._route, str(settlement.get("transaction", "")))
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
        shaped = _shaped_error(start["status"], Headers(raw=start["headers"]), body)
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
        await _send_raw_error(self._send, action, "devnet fault injected after settlement")


class _Gateway:
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
            await _send_raw_error(send, status, "devnet fault injected before payment", extra)
        elif self._direct is not None and scope["path"].startswith(DIRECT_PREFIX):
            await self._direct(scope, receive, send)
        elif authorization is None:
            await self._paid(scope, receive, send)
        elif self._key_is_valid(authorization):
            await self._free(scope, receive, send)
        else:
            await _send_raw_error(send, 401, "Invalid API key")

    def _key_is_valid(self, authorization: str) -> bool:
        """``Bearer <key>`` with a configured key (constant-time compare)."""
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            return False
        return any(hmac.compare_digest(token.encode(), key.encode()) for key in self._api_keys)


# ---------------------------------------------------------------------------
# Direct-transfer mode
# ---------------------------------------------------------------------------

DIRECT_PREFIX = "/direct/"
_DIRECT_PRICED = {"/v1/chat/completions": "chat_price", "/v1/images/generations": "image_price"}
_TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")


class _DirectPaid:
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
            path: getattr(settings, attr).removeprefix("$") for path, attr in _DIRECT_PRICED.items()
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
        return base64.b64encode(_json_bytes(doc)).decode()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Ask for a transfer, or check the proof and serve."""
        import asyncio

        path = "/" + scope["path"].removeprefix(DIRECT_PREFIX)
        route = f"{scope['method']} {scope['path']}"
        if path not in self._prices:
            await _send_raw_error(send, 404, "Not found")
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
        await _send_raw_error(send, 402, message, {"PAYMENT-REQUIRED": self.demand(path)})

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


# ---------------------------------------------------------------------------
# App factory
# ---------------------------------------------------------------------------


def _payment_routes(settings: ApiSettings) -> dict[str, RouteConfig]:
    """The SDK route table: which ``METHOD /path`` costs what."""

    def option(price: str) -> PaymentOption:
        return PaymentOption(
            scheme="exact",
            pay_to=settings.pay_to,
            price=price,
            network=settings.network,
            max_timeout_seconds=settings.max_timeout_seconds,
        )

    return {
        CHAT_ROUTE: RouteConfig(
            accepts=[option(settings.chat_price)],
            description="Chat completion (Venice via Cluster Protocol, devnet)",
            mime_type="application/json",
        ),
        IMAGES_ROUTE: RouteConfig(
            accepts=[option(settings.image_price)],
            description="Image generation (Venice via Cluster Protocol, devnet)",
            mime_type="application/json",
        ),
    }


def _core_app() -> FastAPI:
    """The handlers, with no payment and no keys: what both paths finally reach."""
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    _install_error_handlers(app)
    app.post("/v1/chat/completions")(chat_completions)
    app.post("/v1/images/generations")(image_generations)

    @app.get("/v1/models")
    async def list_models() -> Response:
        return JSONResponse(_models_listing())

    return app


def create_api_app(settings: ApiSettings) -> FastAPI:
    """Build the paid API. Its :class:`ApiStats` and :class:`Faults` are on ``app.state``.

    Building it calls the facilitator's ``/supported`` (the SDK middleware does so on
    creation), so start the facilitator first.
    """
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=settings.facilitator_url))
    resource_server = x402ResourceServer(facilitator)
    # The SDK's scheme class is unannotated and its payment_flows attribute does not match
    # the SDK's own protocol under mypy; it is the documented object to register.
    scheme: Any = ExactEvmServerScheme()  # type: ignore[no-untyped-call]
    resource_server.register(settings.network, scheme)
    core = _core_app()
    paid = PaymentMiddlewareASGI(core, routes=_payment_routes(settings), server=resource_server)

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await facilitator.aclose()  # the SDK opens an AsyncClient lazily and never closes it

    stats, faults = ApiStats(), Faults()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.stats, app.state.faults, app.state.settings = stats, faults, settings
    _install_error_handlers(app)

    @app.get("/_devnet/stats")
    async def devnet_stats() -> Response:
        return JSONResponse(stats.snapshot())

    direct = _DirectPaid(core, settings, stats) if settings.direct_rpc_url else None
    app.add_middleware(
        _Gateway, free=core, paid=paid, api_keys=settings.api_keys, stats=stats, faults=faults,
        direct=direct,
    )  # fmt: skip
    return app


def api_stats(app: FastAPI) -> ApiStats:
    """The typed :class:`ApiStats` of an app built by :func:`create_api_app`."""
    stats = app.state.stats
    assert isinstance(stats, ApiStats)
    return stats


def api_faults(app: FastAPI) -> Faults:
    """The typed :class:`Faults` of an app built by :func:`create_api_app`."""
    faults = app.state.faults
    assert isinstance(faults, Faults)
    return faults
