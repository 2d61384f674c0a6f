"""`walletd mcp --upstream-command`: an upstream that hangs, dies or sends garbage gives a
clear tool error, and the proxy keeps serving (a dead stdio upstream is started again)."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.mcp.agent import agent, text_of

UPSTREAM = f"{sys.executable} -m tests.mcp.faulty_upstream"
TIMEOUT_S = 3

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}


async def _upstream_tools() -> list[Any]:
    params = StdioServerParameters(command=sys.executable, args=["-m", "tests.mcp.faulty_upstream"])
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(params, errlog=quiet) as (read, write),
            ClientSession(read, write) as s,
        ):
            await s.initialize()
            return (await s.list_tools()).tools


def test_an_upstream_that_hangs_dies_or_sends_garbage_is_a_tool_error_and_the_proxy_serves_on() -> (
    None
):
    async def run() -> dict[str, Any]:
        seen: dict[str, Any] = {"upstream": await _upstream_tools()}
        args = ("--upstream-command", UPSTREAM, "--timeout", str(TIMEOUT_S))
        async with agent(_env(), *args) as session:
            seen["tools"] = (await session.list_tools()).tools
            for step in ("ping", "hang", "ping", "die", "ping", "garbage", "ping"):
                started = time.monotonic()
                result = await session.call_tool(step, {})
                seen.setdefault(step, []).append((result, time.monotonic() - started))
        return seen

    seen = asyncio.run(run())
    # The upstream's tools, unchanged.
    assert [t.model_dump() for t in seen["tools"]] == [t.model_dump() for t in seen["upstream"]]
    for result, _ in seen["ping"]:
        assert not result.isError and text_of(result) == "pong"
    ((hang, hang_s),) = seen["hang"]
    assert hang.isError and "UPSTREAM_TIMEOUT" in text_of(hang)
    assert f"did not answer tool 'hang' within {TIMEOUT_S} s" in text_of(hang)
    assert TIMEOUT_S <= hang_s < TIMEOUT_S + 5
    ((die, _),) = seen["die"]
    assert die.isError and "UPSTREAM_UNAVAILABLE" in text_of(die)
    assert "closed the connection during tool 'die'" in text_of(die)
    ((garbage, garbage_s),) = seen["garbage"]
    assert garbage.isError
    assert "sent something that is not MCP" in text_of(garbage)
    assert garbage_s < TIMEOUT_S  # closed at once, not left to time out
