"""`walletd mcp --upstream URL` in front of the devnet paid MCP server, driven by the official
MCP client over stdio: the upstream's tools unchanged, free calls pass through unpaid, paid
calls are paid through the daemon, and what moved on chain is what the ledger and the
results say, to the atomic unit."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp.agent import agent, text_of, walletd_env
from tests.mcp.paying import mcp_session
from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome, client_daemon
from tests.plugins.devnet import DevnetMcp
from walletd.client import WalletClient

WEATHER, RESEARCH = 1000, 10000
FUNDS = 1_000_000

pytestmark = pytest.mark.slow  # a daemon and `walletd mcp` subprocesses


@pytest.fixture(scope="module")
def proxy_daemon() -> Iterator[tuple[WalletHome, Path]]:
    """Client `svc` (daily 5 USD) and client `exact` (daily 0.003 USD: three weather calls)."""
    with client_daemon("--daily", "5") as found:
        found[0].add_client("exact")
        found[0].admin("budget", "set", "exact", "--daily", "0.003")
        yield found


def test_the_proxy_re_exposes_the_tools_unchanged_and_pays_exactly_what_moves_on_chain(
    proxy_daemon, chain: Chain, devnet_mcp: DevnetMcp
) -> None:
    home, token = proxy_daemon
    chain.mint(home.address, FUNDS)
    env = walletd_env(home.socket, token)
    before = chain.usdc_balance(home.address), chain.usdc_balance(devnet_mcp.pay_to)

    async def run() -> dict[str, Any]:
        async with mcp_session(devnet_mcp.url) as direct:
            upstream = (await direct.list_tools()).tools
        async with agent(env, "--upstream", devnet_mcp.url) as session:
            return {
                "upstream": upstream,
                "tools": (await session.list_tools()).tools,
                "ping": await session.call_tool("ping", {}),
                "weather": await session.call_tool("weather", {"city": "Lisbon"}),
                "research": await session.call_tool("research", {"topic": "x402"}),
            }

    seen = asyncio.run(run())
    assert [t.model_dump() for t in seen["tools"]] == [t.model_dump() for t in seen["upstream"]]
    assert {t.name for t in seen["tools"]} == {"weather", "research", "ping"}

    ping = seen["ping"]
    assert not ping.isError and text_of(ping) == "pong"
    assert "walletd/payment" not in (ping.meta or {})

    paid = [seen["weather"], seen["research"]]
    facts = []
    for result in paid:
        assert not result.isError, text_of(result)
        assert result.meta and result.meta["x402/payment-response"]["success"] is True
        payment = result.meta["walletd/payment"]
        facts.append(payment)
        assert payment["payee"].lower() == devnet_mcp.pay_to.lower()
        assert payment["transaction"].startswith("0x")
        assert f"walletd paid {payment['amount_usd']} USD to {payment['payee']}" in text_of(result)
        assert payment["payment_id"] in text_of(result)
    assert "Lisbon" in text_of(seen["weather"])
    assert [int(p["amount_atomic"]) for p in facts] == [WEATHER, RESEARCH]

    with WalletClient(socket=home.socket, token_file=token) as wallet:
        rows = wallet.list_payments(limit=1000)
    assert sorted(r.payment_id for r in rows) == sorted(p["payment_id"] for p in facts)
    assert {r.payment_id: r.labels["tool"] for r in rows} == {
        p["payment_id"]: p["tool"] for p in facts
    }
    after = chain.usdc_balance(home.address), chain.usdc_balance(devnet_mcp.pay_to)
    spent = sum(r.amount for r in rows)
    assert spent == WEATHER + RESEARCH
    assert (before[0] - after[0], after[1] - before[1]) == (spent, spent)
    assert [tool for tool, _ in devnet_mcp.stats.settlements] == ["weather", "research"]


def test_a_budget_for_exactly_three_calls_pays_three_of_five_concurrent_calls(
    proxy_daemon, chain: Chain, devnet_mcp: DevnetMcp
) -> None:
    home, _ = proxy_daemon
    token = home.root / "exact.token"
    chain.mint(home.address, FUNDS)
    before = chain.usdc_balance(home.address)

    async def run() -> list[Any]:
        async with agent(walletd_env(home.socket, token), "--upstream", devnet_mcp.url) as session:
            calls = [session.call_tool("weather", {"city": f"c{i}"}) for i in range(5)]
            return list(await asyncio.gather(*calls))

    results = asyncio.run(run())
    paid = [r for r in results if not r.isError]
    refused = [r for r in results if r.isError]
    assert len(paid) == 3, [text_of(r) for r in results]
    for result in refused:
        assert result.structuredContent["error"]["reason"] == "BUDGET_EXCEEDED"
        assert "limit 0.003000 USD" in text_of(result)
    with WalletClient(socket=home.socket, token_file=token) as wallet:
        rows = wallet.list_payments(limit=1000)
    assert [r.amount for r in rows] == [WEATHER] * 3
    assert before - chain.usdc_balance(home.address) == 3 * WEATHER
    assert len(devnet_mcp.stats.settlements) == 3
