"""Calls an agent may retry as the same logical call: held for approval, or interrupted.

An MCP agent cannot give an idempotency key: a tool call is a name and its
arguments. walletd mcp remembers a call's key under a digest of the tool and its
arguments in two cases, so that the agent's next call of the same tool with the
same arguments reuses that key; the daemon signs at most once per key, so
nothing can be paid twice.

* A paid call held for approval (``APPROVAL_REQUIRED``), until the approval
  expires: the retry gets the approved authorization (or the denial) instead of
  holding a new payment.
* A paid call interrupted before its answer came back (:class:`Interrupted`: a
  read timeout, a connection closing or breaking, the host cancelling the call),
  for :data:`RETRY_WINDOW_MS`: the server may have received, even settled, the
  payment. The retry gets the same authorization back (``reused``) and the server
  settles it at most once: it pays the retry with it if the first attempt did
  not settle, and refuses it as already used if it did (a tool error saying the
  call was paid and its answer lost).

The entry is dropped once a call under it has any other outcome (paid, denied,
expired, refused), so the call after it is a new payment. The map lives in this
process only (one agent's client): a restarted ``walletd mcp`` forgets it.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import anyio
from mcp.types import CallToolResult

from walletd.client import new_idempotency_key
from walletd.errors import ApprovalRequiredError
from walletd.mcp._results import same_call_until

MAX_HELD = 1000
"""At most this many calls are remembered (the oldest are forgotten first)."""
RETRY_WINDOW_MS = 3_600_000
"""How long an interrupted call's key is kept: the longest timeout a demand may ask of
the daemon (``max_demand_timeout_seconds``), so past it no authorization signed for the
call can still be valid. A retry after the authorization expired unsettled is refused
by the upstream once; the call after it is a new payment."""


class Interrupted(Exception):
    """A call that ended without its answer; it may have been paid (see the module doc).

    ``sent`` is False when this attempt sent no payment, e.g. it never reached the
    upstream (an earlier attempt under the same key may have sent one).
    """

    def __init__(self, sent: bool = True) -> None:
        super().__init__("interrupted" if sent else "not sent")
        self.sent = sent


def call_digest(tool: str, arguments: Mapping[str, Any] | None) -> str:
    """A digest of one tool call: the tool's name and its arguments, canonical JSON."""
    doc = json.dumps([tool, dict(arguments or {})], sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(doc.encode("utf-8", "replace")).hexdigest()


class HeldCalls:
    """Idempotency keys of calls held for approval or interrupted, by call digest, for a time."""

    def __init__(self, clock_ms: Callable[[], int] | None = None) -> None:
        self._keys: dict[str, tuple[str, int]] = {}
        self._clock_ms = clock_ms or (lambda: int(time.time() * 1000))

    def key_for(self, digest: str) -> str:
        """The remembered call's key for a retry of it, else a new key."""
        now = self._clock_ms()
        for stale in [d for d, (_, expires) in self._keys.items() if expires <= now]:
            del self._keys[stale]
        found = self._keys.get(digest)
        return found[0] if found is not None else new_idempotency_key()

    def settle(self, digest: str, key: str, error: BaseException | None) -> int | None:
        """Remember ``key`` while the call is held or after it was interrupted, else forget it.

        Returns until when (unix ms) the key is remembered, None if it is not.
        """
        self._keys.pop(digest, None)
        if isinstance(error, ApprovalRequiredError) and error.approval_id:
            until = error.expires_at_ms or self._clock_ms() + 60_000
        elif isinstance(error, Interrupted):
            until = self._clock_ms() + RETRY_WINDOW_MS
        else:
            return None
        self._keys[digest] = (key, until)
        while len(self._keys) > MAX_HELD:
            del self._keys[next(iter(self._keys))]
        return until

    async def run(
        self,
        digest: str,
        key: str,
        call: Callable[[str], Awaitable[tuple[CallToolResult, BaseException | None]]],
    ) -> CallToolResult:
        """``call(key)``'s tool result, its key remembered or forgotten as :meth:`settle` says.

        ``call`` returns the result and what ended the call otherwise (a walletd
        error, :class:`Interrupted`, or None). An interrupted call's tool error says
        until when calling again with the same arguments is the same call; a call the
        host cancels is interrupted too.
        """
        try:
            result, error = await call(key)
        except anyio.get_cancelled_exc_class():  # the host gave up on the call
            self.settle(digest, key, Interrupted())
            raise
        until = self.settle(digest, key, error)
        if isinstance(error, Interrupted) and until is not None:
            return same_call_until(result, until, error.sent)
        return result

    def __len__(self) -> int:
        return len(self._keys)
