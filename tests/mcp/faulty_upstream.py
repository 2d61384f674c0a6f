"""A stdio MCP server that fails on request: the upstream of the proxy's fault tests.

``python -m tests.mcp.faulty_upstream``: tools ``ping`` (answers), ``hang`` (never
answers), ``die`` (the process exits mid-call) and ``garbage`` (writes a line that is
not JSON-RPC to stdout, then never answers).
"""

from __future__ import annotations

import os

import anyio
from mcp.server.fastmcp import FastMCP

server = FastMCP("faulty", log_level="ERROR")


@server.tool(description="Answers pong.")
def ping(word: str = "pong") -> str:
    return word


@server.tool(description="Never answers.")
async def hang() -> str:
    await anyio.sleep(3600)
    return "late"


@server.tool(description="Exits mid-call.")
def die() -> str:
    os._exit(3)


@server.tool(description="Writes garbage to stdout, then never answers.")
async def garbage() -> str:
    os.write(1, b"this is not JSON-RPC {\n")
    await anyio.sleep(3600)
    return "late"


if __name__ == "__main__":
    server.run("stdio")
