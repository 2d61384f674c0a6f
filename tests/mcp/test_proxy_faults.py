"""`walletd mcp --upstream-command`: an upstream that hangs, dies or sends garbage gives a
clear tool error, and the proxy keeps serving (a dead stdio upstream is started again)."""

from __future__ import annotations

import asyncio
import http.server
import os
import socket
import sys
import threading
import time
from typing import Any

import pytest
from mcp import ClientSession, McpError, StdioServerParameters
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


class _Html(http.server.BaseHTTPRequestHandler):
    """An HTTP server that is not an MCP server: every answer is a web page."""

    def do_POST(self) -> None:
        self.send_response(200)
        self.send_header("content-type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>not MCP</html>")

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_an_http_upstream_that_is_down_or_not_mcp_is_a_clear_error() -> None:
    html = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Html)
    threading.Thread(target=html.serve_forever, daemon=True).start()
    upstreams = {
        "down": f"http://127.0.0.1:{_closed_port()}/mcp",
        "html": f"http://127.0.0.1:{html.server_address[1]}/mcp",
    }

    async def run(url: str) -> tuple[str, Any]:
        async with agent(_env(), "--upstream", url, "--timeout", str(TIMEOUT_S)) as session:
            try:
                await session.list_tools()
            except McpError as err:
                listed = err.error.message
            else:
                listed = "listed"
            return listed, await session.call_tool("weather", {"city": "x"})

    try:
        seen = {name: asyncio.run(run(url)) for name, url in upstreams.items()}
    finally:
        html.shutdown()
        html.server_close()
    for name, why in (("down", "ConnectError"), ("html", "not MCP (Unexpected content type")):
        listed, call = seen[name]
        assert "the upstream MCP server did not list its tools" in listed
        assert why in listed, listed
        assert call.isError and why in text_of(call)
