"""The canned content the local paid API serves: its model catalogue, replies and images.

Everything here is deterministic and free of HTTP, so tests can compute the answer a
request will get (``canned_reply``, ``render_png``) and compare it with what came back.

What a "token" is here: a whitespace-separated word (``len(text.split())``). Usage counts are
exact under that definition for the text the server produced, which is all a test of
budgeting or reporting needs.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass
from typing import Any, Literal

__all__ = [
    "MODELS",
    "MODELS_BY_ID",
    "PNG_EDGE_PIXELS",
    "PNG_SIGNATURE",
    "CannedReply",
    "ModelInfo",
    "canned_reply",
    "count_tokens",
    "image_seed",
    "models_listing",
    "render_png",
]


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
MODELS_BY_ID = {model.id: model for model in MODELS}
_CATALOGUE_CREATED = 1_735_689_600  # 2025-01-01, fixed so the listing is deterministic


def models_listing() -> dict[str, Any]:
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
# Chat replies
# ---------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------
# Images
# ---------------------------------------------------------------------------

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
# The PNGs are this small whatever ``size`` asks for: tests check format, count and
# determinism, and megabytes of pixels would only slow them down.
PNG_EDGE_PIXELS = 16


def image_seed(model: str, size: str, prompt: str, index: int) -> bytes:
    """The seed of the ``index``-th image for a request: a SHA-256 of what it asked for."""
    return hashlib.sha256(f"{model}\x00{size}\x00{prompt}\x00{index}".encode()).digest()


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
