"""``make demo-mcp``: an agent's MCP client pays a devnet tool and a devnet chat through walletd.

``python -m walletd.devnet.demo_mcp`` starts the devnet (anvil, test USDC, the
facilitator, the paid HTTP API and the paid MCP server), sets walletd up as an
operator would and gives the agent its own client with a small daily budget
(``walletd client add agent``, ``budget set agent --daily 0.10``). Then it plays the
MCP host: with the official MCP client it starts ``walletd mcp`` over stdio twice,
exactly as Claude Desktop or Claude Code would from their configuration:

* gateway mode (``--base-url`` the paid API): ``chat``, then ``wallet_budget``;
* proxy mode (``--upstream`` the paid MCP server): the free ``ping``, the paid
  ``weather``.

It prints each tool result (which says what was paid), runs one reconcile pass,
checks that what moved on chain equals the agent's ledger, and stops everything.
Nothing leaves loopback; the agent never sees a key or a token.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client
from mcp.types import CallToolResult, TextContent

from walletd.client import WalletClient
from walletd.devnet import chain as devchain
from walletd.devnet.demo import FUNDING, MODEL, Walletd, _cli, _step, _walletd
from walletd.devnet.servers import Devnet
from walletd.domain.money import format_usd

AGENT = "agent"
AGENT_DAILY = "0.10"


def _agent_client(wd: Walletd) -> Path:
    """The agent's own client and budget, as an operator makes them; its token in a 0600 file."""
    data = str(wd.data)
    print(f"$ walletd client add {AGENT}   (token saved to a 0600 file)")
    token = _cli("client", "add", AGENT, "--data-dir", data, env=wd.env).strip().splitlines()[-1]
    path = wd.root / f"{AGENT}.token"
    path.write_text(token + "\n")
    path.chmod(0o600)
    print(f"$ walletd budget set {AGENT} --per-request 0.05 --daily {AGENT_DAILY}")
    _cli("budget", "set", AGENT, "--per-request", "0.05", "--daily", AGENT_DAILY,
         "--data-dir", data, env=wd.env)  # fmt: skip
    return path


def _host_config(wd: Walletd, token: Path, args: list[str]) -> dict[str, Any]:
    """What an MCP host's configuration holds for this server: command, args, two paths."""
    env = {"WALLETD_SOCKET": str(wd.socket), "WALLETD_TOKEN_FILE": str(token)}
    return {"command": "walletd", "args": ["mcp", *args], "env": env}


def _show(name: str, result: CallToolResult) -> None:
    text = "\n".join(c.text for c in result.content if isinstance(c, TextContent))
    flag = " (tool error)" if result.isError else ""
    print(f"  {name}{flag}:")
    for line in text.splitlines():
        print(f"    {line}")


async def _as_host(
    config: dict[str, Any], calls: list[tuple[str, dict[str, Any]]]
) -> list[CallToolResult]:
    """Start ``walletd mcp`` as the host would and call each tool; the results."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("WALLETD_")}, **config["env"]}
    params = StdioServerParameters(
        command=sys.executable, args=["-m", "walletd", *config["args"]], env=env
    )
    results = []
    async with (
        stdio_client(params) as (read, write),
        ClientSession(read, write) as session,
    ):
        init = await session.initialize()
        tools = [t.name for t in (await session.list_tools()).tools]
        print(f"  connected to {init.serverInfo.name}; tools: {', '.join(tools)}")
        for name, arguments in calls:
            result = await session.call_tool(name, arguments)
            _show(name, result)
            results.append(result)
    return results


def _paid_ids(results: list[CallToolResult]) -> list[str]:
    """The payment ids the tool results name (gateway: structured; proxy: ``_meta``)."""
    ids = []
    for result in results:
        payment = (result.structuredContent or {}).get("payment") or (result.meta or {}).get(
            "walletd/payment"
        )
        if isinstance(payment, dict) and payment.get("payment_id"):
            ids.append(str(payment["payment_id"]))
    return ids


def main() -> None:
    """Run the whole demo; exit non-zero if any step fails."""
    started = time.monotonic()
    root = Path(tempfile.mkdtemp(prefix="walletd-demo-mcp-", dir="/tmp"))
    try:
        _step("starting anvil, test USDC, facilitator, the paid API and the paid MCP server")
        with Devnet() as net:
            print(f"  paid API {net.api.base_url}  (chat $0.003)")
            print(f"  paid MCP server {net.mcp.url}  (weather $0.001, research $0.01, ping free)")
            _step("setting up walletd, and the agent's own client")
            with _walletd(root, net.rpc_url) as wd:
                token = _agent_client(wd)
                devchain.mint(net.w3, wd.address, FUNDING)
                before = devchain.usdc_balance(net.w3, wd.address)
                gateway = _host_config(wd, token, ["--base-url", net.api.base_url])
                proxy = _host_config(wd, token, ["--upstream", net.mcp.url])
                _step("the MCP host's configuration (mcpServers entries)")
                print(json.dumps({"walletd": gateway, "paid-tools": proxy}, indent=2))
                _step("agent, through walletd mcp (gateway): a paid chat")
                chat_calls = [("chat", {"model": MODEL, "prompt": "What is x402?"}),
                              ("wallet_budget", {})]  # fmt: skip
                results = asyncio.run(_as_host(gateway, chat_calls))
                _step("agent, through walletd mcp --upstream: a free and a paid tool")
                tool_calls = [("ping", {}), ("weather", {"city": "Lisbon"})]
                results += asyncio.run(_as_host(proxy, tool_calls))
                _check(wd, net, token, results, before)
        _step(f"done in {time.monotonic() - started:.1f} s; everything started has stopped")
    finally:
        shutil.rmtree(root, ignore_errors=True)


def _check(
    wd: Walletd, net: Devnet, token: Path, results: list[CallToolResult], before: int
) -> None:
    if any(r.isError for r in results):
        raise SystemExit("a tool call failed")
    _step("checking every payment on chain")
    wd.reconcile()
    with WalletClient(socket=wd.socket, token_file=token) as wallet:
        rows = wallet.list_payments()
    moved = before - devchain.usdc_balance(net.w3, wd.address)
    ledger = sum(r.amount for r in rows)
    for row in reversed(rows):
        print(f"  {row.payment_id}  {row.status:<10} {format_usd(row.amount)}  {row.url}")
    print(f"  moved on chain: {format_usd(moved)} USDC; the agent's ledger says "
          f"{format_usd(ledger)} USDC")  # fmt: skip
    if sorted(r.payment_id for r in rows) != sorted(_paid_ids(results)) or moved != ledger:
        raise SystemExit("the tool results, the ledger and the chain disagree")


if __name__ == "__main__":
    main()
