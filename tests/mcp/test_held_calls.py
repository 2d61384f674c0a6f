"""walletd mcp's memory of calls held for approval: same tool and arguments, same key, until
the approval expires or the call has another outcome."""

from __future__ import annotations

from walletd.errors import ApprovalRequiredError, BudgetExceededError
from walletd.mcp._held import HeldCalls, call_digest


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
