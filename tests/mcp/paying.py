"""Helpers of the paying-MCP-client tests: an MCP session as an agent opens one, a wallet.

The agent side is always the official MCP SDK's ``ClientSession`` over streamable HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from mcp import ClientSession
from mcp.client.streamable_http import streamable_http_client
from mcp.types import CallToolResult, TextContent

from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome, client_daemon
from walletd.client import PaymentView, WalletClient, WalletdSettings


@asynccontextmanager
async def mcp_session(url: str) -> AsyncIterator[ClientSession]:
    """An initialized MCP client session to the streamable-HTTP server at ``url``."""
    async with (
        streamable_http_client(url) as (read, write, _),
        ClientSession(read, write) as session,
    ):
        await session.initialize()
        yield session


def text_of(result: object) -> str:
    """The text of a tool result's first content block."""
    assert isinstance(result, CallToolResult), result
    block = result.content[0]
    assert isinstance(block, TextContent), block
    return block.text


@contextmanager
def funded_daemon(chain: Chain, funds: int) -> Iterator[tuple[WalletHome, Path]]:
    """A wallet holding ``funds`` USDC, client `svc` ($5 a day), and its daemon reading ``chain``.

    Funded once, outside any chain snapshot: the daemon caches the balance it read, so a
    snapshot rolled back under it would make it see funds that are gone.
    """
    config = f'[chain]\nrpc_url = "{chain.rpc_url}"\nreconcile_interval_seconds = 3600\n'
    with client_daemon("--daily", "5", config=config) as found:
        chain.mint(found[0].address, funds)
        yield found


@dataclass
class McpWallet:
    """A running daemon and one client's token, as an MCP test sees them."""

    home: WalletHome
    token_file: Path
    chain: Chain
    pay_to: str
    seen: frozenset[str] = frozenset()

    def settings(self) -> WalletdSettings:
        return WalletdSettings(socket=self.home.socket, token_file=self.token_file)

    def client(self) -> WalletClient:
        return WalletClient(socket=self.home.socket, token_file=self.token_file, timeout=30)

    def new_payments(self) -> list[PaymentView]:
        """Ledger rows of this client made since the wallet was handed to the test."""
        with self.client() as wallet:
            rows = wallet.list_payments(limit=1000)
        return [r for r in reversed(rows) if r.payment_id not in self.seen]

    def balances(self) -> tuple[int, int]:
        """(our USDC, the payee's USDC)."""
        address = self.home.address
        return self.chain.usdc_balance(address), self.chain.usdc_balance(self.pay_to)

    def mark_seen(self) -> McpWallet:
        self.seen = frozenset(p.payment_id for p in self.new_payments())
        return self
