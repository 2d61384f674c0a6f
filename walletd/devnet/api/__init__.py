"""A local paid API that behaves like Cluster Protocol, for walletd's tests and demos.

Cluster Protocol is an OpenAI-compatible gateway to Venice models that asks for an x402 v2
payment (USDC on Base, ``exact`` scheme) when a request carries no API key. This package
rebuilds that contract locally so that walletd can be tested end to end without internet:

* ``POST /v1/chat/completions``: a deterministic canned reply (optionally streamed as SSE).
* ``POST /v1/images/generations``: ``n`` small real PNGs, deterministic from the prompt.
* ``GET /v1/models``: a fixed catalogue, free.
* ``GET /_devnet/stats``: the :class:`ApiStats` counters, free and never faulted.

One module a concern; import from the package, which is the public surface:

* :mod:`.settings`: :class:`ApiSettings`, what differs between one API and another.
* :mod:`.fixtures`: the canned content (models, replies, PNGs) and the token definition.
* :mod:`.routes`: the OpenAI-style handlers, with no payment in sight.
* :mod:`.pricing`: what each route costs, for the SDK and the direct paywall.
* :mod:`.paywall`: the x402 SDK middleware and reading its settlement headers.
* :mod:`.direct`: ``/direct/...``, paid by a USDC transfer checked on chain.
* :mod:`.errors`: the one error shape ``{"error": {"message", "type", "code"}}``.
* :mod:`.stats`, :mod:`.faults`: counters and injected misbehaviour for tests.
* :mod:`.gateway`: the outer ASGI layer (faults, keys, payment, counting, error shaping).
* :mod:`.app`: :func:`create_api_app`, which assembles the above.

Note on ordering: the SDK checks payment *before* the handler validates the body, so an
unpaid bad request gets 402, and a paid bad request gets the handler's 400 (or 404). The SDK
does not settle when the handler answers >= 400, so no money moves, but the signed
authorization stays valid on chain until its ``validBefore``.
"""

from __future__ import annotations

from walletd.devnet.api.app import api_faults, api_stats, create_api_app
from walletd.devnet.api.faults import Faults
from walletd.devnet.api.fixtures import (
    MODELS,
    PNG_EDGE_PIXELS,
    PNG_SIGNATURE,
    ModelInfo,
    canned_reply,
    count_tokens,
    render_png,
)
from walletd.devnet.api.routes import CHAT_ROUTE, IMAGES_ROUTE
from walletd.devnet.api.settings import ApiSettings
from walletd.devnet.api.stats import ApiStats, RouteStats

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
