"""walletd mcp's memory of calls held for approval or interrupted: same tool and arguments,
same key, until the approval expires (or the retry window of an interrupted call ends) or
the call has another outcome."""

from __future__ import annotations

from walletd.errors import ApprovalRequiredError, BudgetExceededError
from walletd.mcp._held import MAX_HELD, RETRY_WINDOW_MS, HeldCalls, Interrupted, call_digest


def _held(expires_at_ms: int) -> ApprovalRequiredError:
    return ApprovalRequiredError(
        "awaiting approval apr_1", {"approval_id": "apr_1", "expires_at_ms": str(expires_at_ms)}
    )


def test_a_held_call_is_retried_under_its_key_until_it_expires_or_ends() -> None:
    now = [1_000]
    held = HeldCalls(clock_ms=lambda: now[0])
    digest = call_digest("chat", {"prompt": "x", "model": "m"})
    assert digest == call_digest("chat", {"model": "m", "prompt": "x"})  # argument order
    assert digest != call_digest("chat", {"model": "m", "prompt": "y"})
    assert digest != call_digest("image", {"model": "m", "prompt": "x"})
    key = held.key_for(digest)
    held.settle(digest, key, _held(expires_at_ms=2_000))
    assert held.key_for(digest) == key  # the agent's retry: the same logical call
    assert held.key_for(call_digest("chat", {"prompt": "other"})) != key
    held.settle(digest, key, BudgetExceededError("over"))  # any other outcome: forgotten
    assert held.key_for(digest) != key
    held.settle(digest, key, _held(expires_at_ms=2_000))
    now[0] = 2_000  # the approval expired: a new call
    assert held.key_for(digest) != key and len(held) == 0


def test_an_interrupted_call_is_retried_under_its_key_until_its_window_ends_or_it_ends() -> None:
    now = [1_000]
    held = HeldCalls(clock_ms=lambda: now[0])
    digest = call_digest("research", {"topic": "x402"})
    key = held.key_for(digest)
    assert held.settle(digest, key, Interrupted()) == 1_000 + RETRY_WINDOW_MS
    assert held.key_for(digest) == key  # the retry after a timeout: the same logical call
    now[0] += RETRY_WINDOW_MS - 1
    assert held.settle(digest, key, Interrupted(sent=False)) == now[0] + RETRY_WINDOW_MS
    assert held.key_for(digest) == key  # interrupted again (even unsent): still kept
    assert held.settle(digest, key, None) is None  # paid (or refused): forgotten
    assert held.key_for(digest) != key and len(held) == 0
    held.settle(digest, key, Interrupted())
    now[0] += RETRY_WINDOW_MS  # past the window: a new call
    assert held.key_for(digest) != key and len(held) == 0
    for i in range(MAX_HELD + 1):
        held.settle(call_digest("research", {"topic": str(i)}), f"k{i}", Interrupted())
    assert len(held) == MAX_HELD  # bounded: the oldest is forgotten first
    assert held.key_for(call_digest("research", {"topic": "0"})) != "k0"
    assert held.key_for(call_digest("research", {"topic": "1"})) == "k1"
