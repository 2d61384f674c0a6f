"""The agent's side of the `walletd mcp` tests: the official MCP client, as a host runs it.

``walletd mcp`` is spawned exactly as an MCP host (Claude Desktop, Claude Code) does:
``StdioServerParameters`` with ``command``/``args`` and the socket and token file as
paths in ``env``; the session is ``mcp.ClientSession`` over ``stdio_client``.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent


def walletd_env(socket: Path, token_file: Path) -> dict[str, str]:
    """What a host's ``env`` gives ``walletd mcp``: two paths, no secret."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}
    env["WALLETD_SOCKET"] = str(socket)
    env["WALLETD_TOKEN_FILE"] = str(token_file)
    return env


def server_params(env: Mapping[str, str], *args: str) -> StdioServerParameters:
    """``walletd mcp ARGS`` as a host would start it (the venv's python runs the CLI)."""
    return StdioServerParameters(
        command=sys.executable, args=["-m", "walletd", "mcp", *args], env=dict(env)
    )


@asynccontextmanager
async def agent(env: Mapping[str, str], *args: str) -> AsyncIterator[ClientSession]:
    """An initialised MCP session with ``walletd mcp ARGS`` over stdio."""
    with open(os.devnull, "w") as quiet:
        async with (
            stdio_client(server_params(env, *args), errlog=quiet) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            yield session


def text_of(result: CallToolResult) -> str:
    """All text content of a tool result, joined."""
    return "\n".join(c.text for c in result.content if isinstance(c, TextContent))


def structured(result: CallToolResult) -> dict[str, Any]:
    """The structured content (every walletd tool result has one)."""
    assert result.structuredContent is not None, text_of(result)
    return result.structuredContent


def assert_paid_answer_lost(retry: CallToolResult, payment_id: str) -> None:
    """``retry`` is the tool error of a call whose first attempt settled ``payment_id``."""
    assert retry.isError, text_of(retry)
    error = structured(retry)["error"]
    assert error["reason"] == "PAID_ANSWER_LOST", text_of(retry)
    assert error["details"]["payment_id"] == payment_id
    assert structured(retry)["payment"]["status"] == "settled"
    assert text_of(retry).startswith(
        f"walletd paid, the answer was lost: PAID_ANSWER_LOST: payment {payment_id} "
    )
