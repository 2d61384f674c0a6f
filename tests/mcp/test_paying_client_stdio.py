"""A paid MCP server run over stdio: policy sees ``mcp+stdio://<name>/tools/<tool>``.

The server is a FastMCP script spawned by the official SDK's ``stdio_client``, exactly as
an MCP host spawns one. Its name, given to PayingMCPSession, is the host that a
client's host allowlist sees.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path
from typing import Any

import pytest
from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.adversarial.demands import PAY_TO, entry, v2_doc
from tests.mcp.paying import text_of
from tests.plugins.adversarial import add_clients
from tests.plugins.daemon import Daemon, WalletHome
from walletd.client import PayingMCPSession, PolicyDeniedError, WalletClient, WalletdSettings
from walletd.domain.money import parse_usd
from walletd.service import admin

PRICE = 1100
SERVER = f"""
import json
from mcp.server.fastmcp import Context, FastMCP
from mcp.types import CallToolResult, TextContent

DEMAND = {v2_doc(entry(str(PRICE)))!r}
mcp = FastMCP("quotes", log_level="WARNING")

@mcp.tool(name="quote")
def quote(symbol: str, ctx: Context) -> CallToolResult:
    meta = ctx.request_context.meta
    paid = meta is not None and (meta.model_extra or {{}}).get("x402/payment")
    if not paid:
        text = json.dumps(DEMAND)
        return CallToolResult(content=[TextContent(type="text", text=text)],
                              structuredContent=DEMAND, isError=True)
    value = paid["payload"]["authorization"]["value"]
    return CallToolResult(content=[TextContent(type="text", text=symbol + " paid " + value)],
                          _meta={{"x402/payment-response": {{"success": True, "transaction": "0x" + "cd" * 32,
                                                             "network": "eip155:8453"}}}})

mcp.run("stdio")
"""


def _client(home: WalletHome, name: str, hosts: frozenset[str]) -> WalletdSettings:
    budget = admin.BudgetChange(daily=parse_usd("1"), hosts=hosts)
    token = add_clients(home, {name: "pay,read"}, budget)[name]
    return WalletdSettings(socket=home.socket, token_file=token)


def _call(settings: WalletdSettings) -> Any:
    params = StdioServerParameters(command=sys.executable, args=["-c", SERVER])

    async def agent() -> Any:
        async with (
            stdio_client(params) as (read, write),
            ClientSession(read, write) as session,
        ):
            await session.initialize()
            async with PayingMCPSession(session, server="quotes", walletd=settings) as paying:
                try:
                    return await paying.call_tool_paid("quote", {"symbol": "USDC"})
                except PolicyDeniedError as err:
                    return err

    return asyncio.run(agent())


def _rows(settings: WalletdSettings) -> list[Any]:
    assert isinstance(settings.token_file, Path)
    with WalletClient(socket=settings.socket, token_file=settings.token_file) as wallet:
        return wallet.list_payments()


@pytest.mark.timeout(120)
def test_a_stdio_server_is_paid_under_its_name_and_the_host_allowlist_sees_it(
    module_wallet_home: WalletHome, module_daemon: Daemon
) -> None:
    allowed = _client(module_wallet_home, "stdio_ok", frozenset({"quotes"}))
    result, payment = _call(allowed)
    assert text_of(result) == f"USDC paid {PRICE}"
    assert payment is not None and payment.resource_url == "mcp+stdio://quotes/tools/quote"
    assert (payment.amount, payment.payee) == (PRICE, PAY_TO)
    (row,) = _rows(allowed)
    assert row.url == "mcp+stdio://quotes/tools/quote"
    assert dict(row.labels) == {"tool": "quote", "mcp_server": "quotes"}

    elsewhere = _client(module_wallet_home, "stdio_no", frozenset({"api.example"}))
    refused = _call(elsewhere)
    assert isinstance(refused, PolicyDeniedError), refused
    assert refused.details["rule"] == "host_allowlist" and "'quotes'" in refused.message
    assert _rows(elsewhere) == []
