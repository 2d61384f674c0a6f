"""The paying MCP client against the devnet's paid MCP server, a real daemon and anvil.

The agent is the official MCP SDK's ClientSession over streamable HTTP, wrapped in
PayingMCPSession; the server is walletd.devnet.mcp_server (the x402 SDK's MCP payment
wrapper, settling through the local facilitator on anvil). One daemon serves the module;
its wallet is funded once, outside any chain snapshot (``funded_daemon``), and each test
looks at balance deltas and at its own ledger rows only.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from mcp import McpError
from mcp.types import CallToolResult

from tests.mcp.paying import McpWallet, funded_daemon, mcp_session, text_of
from tests.plugins.adversarial import add_clients
from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome
from tests.plugins.devnet import DevnetMcp
from walletd.client import (
    BudgetExceededError,
    MCPPayment,
    PaidAnswerLostError,
    PayingMCPSession,
    WalletdSettings,
)
from walletd.domain.money import parse_usd
from walletd.service import admin

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract

    from walletd.devnet.chain import Anvil

FUNDS = 5_000_000  # 5 USDC
WEATHER = 1_000  # $0.001
RESEARCH = 10_000  # $0.01


@pytest.fixture(scope="module")
def module_chain(anvil: Anvil, w3: Web3, usdc: Contract) -> Chain:
    """The session chain, never rolled back by these tests."""
    return Chain(w3=w3, usdc=usdc, rpc_url=anvil.rpc_url)


@pytest.fixture(scope="module")
def module_daemon(module_chain: Chain) -> Iterator[tuple[WalletHome, Path]]:
    """A funded wallet with client `svc` ($5 a day) and its daemon, which reads the chain."""
    with funded_daemon(module_chain, FUNDS) as found:
        yield found


@pytest.fixture
def wallet(
    module_daemon: tuple[WalletHome, Path], module_chain: Chain, devnet_mcp: DevnetMcp
) -> McpWallet:
    home, token = module_daemon
    return McpWallet(home, token, module_chain, devnet_mcp.pay_to).mark_seen()


def test_paid_tool_calls_move_on_chain_exactly_what_the_ledger_says(
    wallet: McpWallet, devnet_mcp: DevnetMcp
) -> None:
    before = wallet.balances()

    async def agent() -> list[tuple[CallToolResult, MCPPayment | None]]:
        async with (
            mcp_session(devnet_mcp.url) as session,
            PayingMCPSession(session, server=devnet_mcp.url, walletd=wallet.settings()) as paying,
        ):
            return [
                await paying.call_tool_paid("weather", {"city": "Paris"}),
                await paying.call_tool_paid("research", {"topic": "tides"}),
            ]

    (weather, w_paid), (research, r_paid) = asyncio.run(agent())
    assert w_paid is not None and r_paid is not None
    assert not weather.isError and "sunny" in text_of(weather)
    assert not research.isError and "tides" in text_of(research)
    assert (w_paid.amount, w_paid.amount_usd, w_paid.payee) == (WEATHER, "0.001000", wallet.pay_to)
    assert (r_paid.amount, r_paid.amount_usd) == (RESEARCH, "0.010000")
    assert w_paid.transaction and w_paid.transaction != r_paid.transaction
    assert w_paid.status == "settlement_pending"

    after = wallet.balances()
    rows = wallet.new_payments()
    ledger = sum(r.amount for r in rows)
    assert ledger == WEATHER + RESEARCH
    assert (before[0] - after[0], after[1] - before[1]) == (ledger, ledger)
    assert [r.payment_id for r in rows] == [w_paid.payment_id, r_paid.payment_id]
    assert [r.url for r in rows] == [
        devnet_mcp.url + "/tools/weather",
        devnet_mcp.url + "/tools/research",
    ]
    assert [dict(r.labels) for r in rows] == [
        {"tool": "weather", "mcp_server": devnet_mcp.url},
        {"tool": "research", "mcp_server": devnet_mcp.url},
    ]
    assert sorted(t for t, _ in devnet_mcp.stats.settlements) == ["research", "weather"]


def test_a_free_tool_passes_through_without_reaching_the_daemon(
    devnet_mcp: DevnetMcp, tmp_path: Path
) -> None:
    nowhere = WalletdSettings(socket=tmp_path / "absent.sock", token="unused")

    async def agent() -> tuple[CallToolResult, MCPPayment | None]:
        async with mcp_session(devnet_mcp.url) as session:
            paying = PayingMCPSession(session, server=devnet_mcp.url, walletd=nowhere)
            return await paying.call_tool_paid("ping")

    result, payment = asyncio.run(agent())
    assert payment is None
    assert text_of(result) == "pong"


def test_a_budget_of_n_calls_accepts_exactly_n_even_when_they_run_concurrently(
    module_daemon: tuple[WalletHome, Path], module_chain: Chain, devnet_mcp: DevnetMcp
) -> None:
    n, tried = 3, 6
    home, _ = module_daemon
    token = add_clients(home, {"agent3": "pay,read"}, admin.BudgetChange(daily=parse_usd("0.003")))[
        "agent3"
    ]
    agent_wallet = McpWallet(home, token, module_chain, devnet_mcp.pay_to).mark_seen()
    before = agent_wallet.balances()

    async def agent() -> list[object]:
        async with (
            mcp_session(devnet_mcp.url) as session,
            PayingMCPSession(
                session, server=devnet_mcp.url, walletd=agent_wallet.settings()
            ) as paying,
        ):
            calls = [paying.call_tool_paid("weather", {"city": f"c{i}"}) for i in range(tried)]
            return await asyncio.gather(*calls, return_exceptions=True)

    outcomes = asyncio.run(agent())
    paid = [o for o in outcomes if isinstance(o, tuple)]
    refused = [o for o in outcomes if isinstance(o, BudgetExceededError)]
    assert (len(paid), len(refused)) == (n, tried - n), outcomes
    assert all(err.details["window"] == "daily" for err in refused)
    rows = agent_wallet.new_payments()
    assert len(rows) == n and sum(r.amount for r in rows) == n * WEATHER
    after = agent_wallet.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (n * WEATHER, n * WEATHER)
    assert len(devnet_mcp.stats.settlements) == n


def _wait_for_settlements(server: DevnetMcp, count: int, timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while len(server.stats.settlements) < count and time.monotonic() < deadline:
        time.sleep(0.05)


async def _timed_out(paying: PayingMCPSession, tool: str, args: dict[str, str], key: str) -> str:
    """Call ``tool`` with a read timeout that runs out; the session's error message."""
    try:
        await paying.call_tool(tool, args, idempotency_key=key, read_timeout_seconds=0.3)
    except McpError as err:
        return str(err)
    return "no timeout"


def test_a_call_that_timed_out_and_is_retried_signs_one_authorization_and_settles_once(
    wallet: McpWallet, devnet_mcp: DevnetMcp
) -> None:
    key = "mcp-timeout-retry-1"
    before = wallet.balances()
    devnet_mcp.faults.delay_seconds = 1.5

    async def agent() -> object:
        async with (
            mcp_session(devnet_mcp.url) as session,
            PayingMCPSession(session, server=devnet_mcp.url, walletd=wallet.settings()) as paying,
        ):
            assert "Timed out" in await _timed_out(paying, "weather", {"city": "Oslo"}, key)
            # The server ran the tool and settled anyway; then the agent tries again.
            await asyncio.to_thread(_wait_for_settlements, devnet_mcp, 1)
            devnet_mcp.faults.delay_seconds = 0
            try:
                return await paying.call_tool_paid("weather", {"city": "Oslo"}, idempotency_key=key)
            except PaidAnswerLostError as err:
                return err

    # The retry sends the same authorization; the server finds it used and asks again. The
    # daemon, which reads the chain, says the call was paid and its answer lost.
    lost = asyncio.run(agent())
    assert isinstance(lost, PaidAnswerLostError), lost
    assert "nonce" in lost.details.get("server_reason", ""), lost.details
    rows = wallet.new_payments()
    assert len(rows) == 1 and rows[0].amount == WEATHER
    assert rows[0].status == "settled"
    after = wallet.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (WEATHER, WEATHER)
    assert len(devnet_mcp.stats.settlements) == 1


def test_a_call_abandoned_before_it_settled_is_retried_with_the_same_authorization(
    wallet: McpWallet, devnet_mcp: DevnetMcp
) -> None:
    key = "mcp-timeout-retry-2"
    before = wallet.balances()
    devnet_mcp.faults.delay_seconds = 1.0

    async def first_try() -> str:
        async with (
            mcp_session(devnet_mcp.url) as session,
            PayingMCPSession(session, server=devnet_mcp.url, walletd=wallet.settings()) as paying,
        ):
            return await _timed_out(paying, "research", {"topic": "x"}, key)

    # Leaving the session drops the connection: the server abandons the call unsettled.
    assert "Timed out" in asyncio.run(first_try())
    devnet_mcp.faults.delay_seconds = 0

    async def retry() -> tuple[CallToolResult, MCPPayment | None]:
        async with (
            mcp_session(devnet_mcp.url) as session,
            PayingMCPSession(session, server=devnet_mcp.url, walletd=wallet.settings()) as paying,
        ):
            return await paying.call_tool_paid("research", {"topic": "x"}, idempotency_key=key)

    result, payment = asyncio.run(retry())
    assert payment is not None and payment.reused and payment.transaction
    assert not result.isError
    rows = wallet.new_payments()
    assert [r.payment_id for r in rows] == [payment.payment_id]
    after = wallet.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (RESEARCH, RESEARCH)
    assert devnet_mcp.stats.settlements == [("research", payment.transaction)]
