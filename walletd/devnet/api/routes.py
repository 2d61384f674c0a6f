"""The OpenAI-style routes of the local paid API, with no payment and no keys in sight.

* ``POST /v1/chat/completions``: a deterministic canned reply (optionally streamed as SSE).
* ``POST /v1/images/generations``: ``n`` small real PNGs, deterministic from the prompt.
* ``GET /v1/models``: the fixed catalogue.
* ``POST /v1/permit2/chat/completions``: the same chat, priced in ``exact`` through Permit2.
* ``POST /v1/upto/chat/completions``: the same chat, priced in ``upto``: the payer authorizes
  a maximum and is charged for the tokens used (``usage.total_tokens`` times the price per
  token), which the handler tells the x402 middleware through its settlement override.

This module owns the HTTP side only (which bodies are accepted, how answers are laid out);
the content comes from :mod:`~walletd.devnet.api.fixtures`. The app it builds is what the
paid, keyed and direct-transfer paths all finally reach.
"""

from __future__ import annotations

import base64
import hashlib
import time
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field

from walletd.devnet.api.errors import ApiError, install_error_handlers, json_bytes
from walletd.devnet.api.fixtures import (
    MODELS_BY_ID,
    CannedReply,
    ModelInfo,
    canned_reply,
    count_tokens,
    image_seed,
    models_listing,
    render_png,
)

__all__ = [
    "CHAT_PATH",
    "CHAT_ROUTE",
    "IMAGES_PATH",
    "IMAGES_ROUTE",
    "PERMIT2_CHAT_PATH",
    "PERMIT2_CHAT_ROUTE",
    "UPTO_CHAT_PATH",
    "UPTO_CHAT_ROUTE",
    "ChatRequest",
    "ImageRequest",
    "core_app",
]

CHAT_PATH = "/v1/chat/completions"
IMAGES_PATH = "/v1/images/generations"
CHAT_ROUTE = f"POST {CHAT_PATH}"
IMAGES_ROUTE = f"POST {IMAGES_PATH}"
PERMIT2_CHAT_PATH = "/v1/permit2/chat/completions"
PERMIT2_CHAT_ROUTE = f"POST {PERMIT2_CHAT_PATH}"
UPTO_CHAT_PATH = "/v1/upto/chat/completions"
UPTO_CHAT_ROUTE = f"POST {UPTO_CHAT_PATH}"
SETTLEMENT_OVERRIDES_HEADER = "settlement-overrides"
"""The x402 FastAPI middleware's header for a partial (upto) settlement; it strips it."""

_STRICT = ConfigDict(extra="ignore", strict=True)


# ---------------------------------------------------------------------------
# Request bodies
# ---------------------------------------------------------------------------


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


class ImageRequest(BaseModel):
    """The accepted subset of an OpenAI image-generation body."""

    model_config = _STRICT
    model: Annotated[str, Field(min_length=1)]
    prompt: Annotated[str, Field(min_length=1)]
    provider: Literal["venice"] = "venice"
    n: Annotated[int, Field(ge=1, le=4)] = 1
    size: Literal["256x256", "512x512", "1024x1024"] = "1024x1024"
    response_format: Literal["b64_json"] = "b64_json"


def _require_model(model_id: str, kind: Literal["text", "image"]) -> ModelInfo:
    """Look a model up in the catalogue; 404 if unknown, 400 if it is the wrong kind."""
    model = MODELS_BY_ID.get(model_id)
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
    return b"data: " + json_bytes(data) + b"\n\n"


async def chat_completions(body: ChatRequest) -> Response:
    """``POST /v1/chat/completions``."""
    _require_model(body.model, "text")
    prompt = "\n".join(message.text() for message in body.messages)
    reply = canned_reply(body.model, prompt, body.max_tokens)
    if body.stream:
        return StreamingResponse(_sse_events(body, prompt, reply), media_type="text/event-stream")
    return JSONResponse(_chat_body(body, prompt, reply))


# ---------------------------------------------------------------------------
# Images and models
# ---------------------------------------------------------------------------


async def image_generations(body: ImageRequest) -> Response:
    """``POST /v1/images/generations``: ``n`` PNGs, each seeded by prompt, size and index."""
    _require_model(body.model, "image")
    images = []
    for index in range(body.n):
        seed = image_seed(body.model, body.size, body.prompt, index)
        images.append({"b64_json": base64.b64encode(render_png(seed)).decode()})
    return JSONResponse({"created": int(time.time()), "data": images})


async def list_models() -> Response:
    """``GET /v1/models``: the catalogue, free."""
    return JSONResponse(models_listing())


def _upto_handler(atomic_per_token: int) -> Any:
    async def upto_chat_completions(body: ChatRequest) -> Response:
        """``POST /v1/upto/chat/completions``: the chat, charged by the tokens it used."""
        _require_model(body.model, "text")
        prompt = "\n".join(message.text() for message in body.messages)
        reply = canned_reply(body.model, prompt, body.max_tokens)
        doc = _chat_body(body, prompt, reply)
        charge = doc["usage"]["total_tokens"] * atomic_per_token
        response = JSONResponse(doc)
        response.headers[SETTLEMENT_OVERRIDES_HEADER] = json_bytes({"amount": str(charge)}).decode()
        return response

    return upto_chat_completions


def core_app(upto_atomic_per_token: int = 1) -> FastAPI:
    """The handlers, with no payment and no keys: what every path finally reaches.

    ``upto_atomic_per_token``: what the upto route charges per token used, in atomic units.
    """
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    install_error_handlers(app)
    app.post(CHAT_PATH)(chat_completions)
    app.post(PERMIT2_CHAT_PATH)(chat_completions)
    app.post(UPTO_CHAT_PATH)(_upto_handler(upto_atomic_per_token))
    app.post(IMAGES_PATH)(image_generations)
    app.get("/v1/models")(list_models)
    return app
