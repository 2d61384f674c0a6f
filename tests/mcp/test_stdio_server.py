"""`walletd mcp` as an MCP host runs it: a subprocess speaking MCP on stdio (initialize,
tools/list, tools/call), or streamable HTTP on loopback only."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client

from tests.mcp.agent import agent, structured, text_of, walletd_env
from walletd.cli import main

GATEWAY_TOOLS = {"paid_fetch", "wallet_budget", "wallet_payments"}
API_TOOLS = {"chat", "image", "models"}


@pytest.mark.slow
def test_walletd_mcp_over_stdio_answers_initialize_tools_list_and_tools_call(
    tmp_path: Path,
) -> None:
    """No daemon runs: the server still starts, and a call says where it looked."""
    token = tmp_path / "agent.token"
    token.write_text("not-a-real-token\n")
    env = walletd_env(tmp_path / "walletd.sock", token)

    async def run() -> dict[str, Any]:
        async with agent(env, "--base-url", "http://127.0.0.1:9/v1") as session:
            return {
                "server": session.get_server_capabilities(),
                "tools": (await session.list_tools()).tools,
                "budget": await session.call_tool("wallet_budget", {}),
            }

    seen = asyncio.run(run())
    assert seen["server"] is not None and seen["server"].tools is not None
    tools = {t.name: t for t in seen["tools"]}
    assert set(tools) == GATEWAY_TOOLS | API_TOOLS
    assert set(tools["paid_fetch"].inputSchema["properties"]) == {
        "url",
        "method",
        "headers",
        "body",
    }
    assert tools["paid_fetch"].inputSchema["required"] == ["url"]
    assert all(t.description for t in tools.values())
    budget = seen["budget"]
    assert budget.isError
    assert structured(budget)["error"]["reason"] == "DAEMON_UNAVAILABLE"
    assert str(tmp_path / "walletd.sock") in text_of(budget)


@pytest.mark.slow
def test_http_mode_serves_streamable_http_on_loopback(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    proc = subprocess.Popen(
        [sys.executable, "-m", "walletd", "mcp", "--http", "127.0.0.1:0", "--json"],
        env=env, stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    try:
        assert proc.stderr is not None
        url = json.loads(proc.stderr.readline())["listening"]
        assert url.startswith("http://127.0.0.1:") and url.endswith("/mcp")

        async def run() -> set[str]:
            async with (
                streamable_http_client(url) as (read, write, _),
                ClientSession(read, write) as session,
            ):
                await session.initialize()
                return {t.name for t in (await session.list_tools()).tools}

        assert asyncio.run(run()) == GATEWAY_TOOLS
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()


@pytest.mark.parametrize("address", ["0.0.0.0:8000", "192.168.1.5:8000", "example.com:80", "::"])
def test_http_mode_refuses_a_host_that_is_not_loopback(address: str) -> None:
    result = CliRunner().invoke(main, ["mcp", "--http", address])
    assert result.exit_code == 2, result.output
    assert "--http" in result.output


def test_upstream_url_and_command_are_exclusive() -> None:
    result = CliRunner().invoke(
        main, ["mcp", "--upstream", "http://127.0.0.1:9/mcp", "--upstream-command", "x"]
    )
    assert result.exit_code == 2
    assert "not both" in result.output


def test_a_start_up_error_with_json_is_one_json_object_on_stderr_and_nothing_on_stdout() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = CliRunner().invoke(main, ["mcp", "--http", f"127.0.0.1:{port}", "--json"])
    assert result.exit_code == 1, result.output
    assert result.stdout == ""
    error = json.loads(result.stderr)["error"]
    assert error["reason"] == "INVALID_REQUEST"
    assert f"cannot listen on 127.0.0.1:{port}" in error["message"]


def test_the_help_names_the_socket_and_token_file_variables_and_loopback() -> None:
    result = CliRunner().invoke(main, ["mcp", "--help"], terminal_width=200)
    text = " ".join(result.output.split())
    for needle in ("$WALLETD_SOCKET", "$WALLETD_TOKEN_FILE", "~/.local/share/walletd/walletd.sock",
                   "must be loopback", "--upstream-command"):  # fmt: skip
        assert needle in text, needle


def test_an_upstream_name_policy_could_not_see_as_a_host_is_a_usage_error() -> None:
    args = ["mcp", "--upstream-command", "python -m x", "--upstream-name", "no spaces/here"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "--upstream-name" in result.output
