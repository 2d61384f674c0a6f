"""``python -m walletd.devnet`` starts the paid MCP server beside the paid API and prints its URL."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.mcp.paying import mcp_session


def _coordinates(proc: subprocess.Popen[str], timeout: float = 60) -> dict[str, str]:
    """The ``name value`` lines the devnet prints before ``running``."""
    found: dict[str, str] = {}
    deadline = time.monotonic() + timeout
    assert proc.stdout is not None
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line or line.startswith("running"):
            break
        name, _, rest = line.partition(" ")
        found[name] = rest.strip().split(" ")[0]
    return found


@pytest.mark.slow
@pytest.mark.chain  # it starts its own anvil
@pytest.mark.timeout(120)
def test_the_devnet_prints_the_mcp_url_and_serves_paid_and_free_tools() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "walletd.devnet"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=env,
    )
    try:
        url = _coordinates(proc).get("mcp_url", "")
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp"), url

        async def agent() -> tuple[list[str], bool]:
            async with mcp_session(url) as session:
                tools = [t.name for t in (await session.list_tools()).tools]
                unpaid = await session.call_tool("weather", {"city": "Rome"})
                return tools, unpaid.isError and unpaid.structuredContent is not None

        tools, asked = asyncio.run(agent())
        assert tools == ["weather", "research", "ping"] and asked
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    assert proc.returncode == 0
