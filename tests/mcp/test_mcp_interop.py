"""Interop: the reference x402 MCP client and walletd's paying client pay the same server.

The server is the devnet's paid MCP server (the x402 SDK's MCP payment wrapper, settling
on anvil through the local facilitator). The reference client is the SDK's
``x402MCPSession`` holding an in-process test key; walletd's is PayingMCPSession, whose
key stays in the daemon. Both ride the official MCP ClientSession over streamable HTTP,
and both payments settle on chain for the same price.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.mcp.paying import McpWallet, funded_daemon, mcp_session, text_of
from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome
from tests.plugins.devnet import DevnetMcp, payment_client
from walletd.client import MCPPayment, PayingMCPSession

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from mcp.types import CallToolResult
    from web3 import Web3
    from web3.contract import Contract

    from walletd.devnet.chain import Anvil

WEATHER = 1_000  # $0.001


@pytest.fixture(scope="module")
def module_chain(anvil: Anvil, w3: Web3, usdc: Contract) -> Chain:
    return Chain(w3=w3, usdc=usdc, rpc_url=anvil.rpc_url)


@pytest.fixture(scope="module")
def module_daemon(module_chain: Chain) -> Iterator[tuple[WalletHome, Path]]:
    with funded_daemon(module_chain, 1_000_000) as found:
        yield found


def test_the_reference_client_and_walletd_both_pay_the_devnet_mcp_server(
    module_daemon: tuple[WalletHome, Path],
    module_chain: Chain,
    devnet_mcp: DevnetMcp,
    devnet_payer: LocalAccount,
) -> None:
    from x402.mcp import x402MCPSession

    home, token = module_daemon
    wallet = McpWallet(home, token, module_chain, devnet_mcp.pay_to).mark_seen()
    payee_before = module_chain.usdc_balance(devnet_mcp.pay_to)
    payer_before = module_chain.usdc_balance(devnet_payer.address)
    wallet_before = module_chain.usdc_balance(home.address)

    async def agents() -> tuple[Any, tuple[CallToolResult, MCPPayment | None]]:
        async with mcp_session(devnet_mcp.url) as session:
            reference = x402MCPSession(session, payment_client(devnet_payer))
            by_reference = await reference.call_tool("weather", {"city": "Lima"})
        async with (
            mcp_session(devnet_mcp.url) as session,
            PayingMCPSession(session, server=devnet_mcp.url, walletd=wallet.settings()) as paying,
        ):
            by_walletd = await paying.call_tool_paid("weather", {"city": "Lima"})
        return by_reference, by_walletd

    by_reference, (result, payment) = asyncio.run(agents())

    assert by_reference.payment_made and not by_reference.is_error
    assert by_reference.payment_response.success is True
    assert "sunny" in by_reference.content[0].text
    assert payment is not None and not result.isError and "sunny" in text_of(result)
    assert payment.transaction and payment.amount == WEATHER

    assert payer_before - module_chain.usdc_balance(devnet_payer.address) == WEATHER
    assert wallet_before - module_chain.usdc_balance(home.address) == WEATHER
    assert module_chain.usdc_balance(devnet_mcp.pay_to) - payee_before == 2 * WEATHER
    (row,) = wallet.new_payments()
    assert (row.payment_id, row.amount) == (payment.payment_id, WEATHER)
    assert [t for t, _ in devnet_mcp.stats.settlements] == ["weather", "weather"]
    assert devnet_mcp.stats.settlements[1][1] == payment.transaction
