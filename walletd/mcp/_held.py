"""Tool calls held for human approval, so the agent's retry is the same logical call.

An MCP agent cannot give an idempotency key: a tool call is a name and its
arguments. When a paid call is held for approval (``APPROVAL_REQUIRED``), walletd
mcp remembers the call's key under a digest of the tool and its arguments until
the approval expires. The agent's next call of the same tool with the same
arguments reuses that key, so the daemon hands it the approved authorization
(or the denial) instead of holding a new payment; nothing can be paid twice,
since the daemon signs at most once per key. The entry is dropped once that
call has any other outcome (paid, denied, expired, refused), so the call after
it is a new payment. The map lives in this process only (one agent's client):
a restarted ``walletd mcp`` forgets it, and a retry is then held anew.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from walletd.client import new_idempotency_key
from walletd.errors import ApprovalRequiredError

MAX_HELD = 1000
"""At most this many held calls are remembered (the oldest are forgotten first)."""


def call_digest(tool: str, arguments: Mapping[str, Any] | None) -> str:
    """A digest of one tool call: the tool's name and its arguments, canonical JSON."""
    doc = json.dumps([tool, dict(arguments or {})], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode("utf-8", "replace")).hexdigest()


class HeldCalls:
    """Idempotency keys of tool calls awaiting approval, by call digest, until they expire."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._keys: dict[str, tuple[str, int]] = {}
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def key_for(self, digest: str) -> str:
        """The held call's key for a retry of it, else a new key."""
        now = self._clock_ms()
        for stale in [d for d, (_, expires) in self._keys.items() if expires <= now]:
            del self._keys[stale]
        found = self._keys.get(digest)
        return found[0] if found is not None else new_idempotency_key()

    def settle(self, digest: str, key: str, error: BaseException | None) -> None:
        """Remember ``key`` while the call is held; forget it on any other outcome."""
        if isinstance(error, ApprovalRequiredError) and error.approval_id:
            self._keys.pop(digest, None)
            self._keys[digest] = (key, error.expires_at_ms or self._clock_ms() + 60_000)
            while len(self._keys) > MAX_HELD:
                del self._keys[next(iter(self._keys))]
        else:
            self._keys.pop(digest, None)

    def __len__(self) -> int:
        return len(self._keys)
