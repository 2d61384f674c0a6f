"""Fixtures: the local paid API (facilitator + Cluster-Protocol-like API) on the session chain.

``devnet_mcp`` adds the paid MCP server (walletd.devnet.mcp_server) on the same facilitator
and payee; it starts on first use, and its stats and faults are reset around each test.

``devnet_api`` is session-scoped: the servers start once (~0.1 s on top of anvil) against the
session's ``anvil`` with test USDC installed. Between tests its stats and faults are reset by
an autouse fixture that only acts when the test uses ``devnet_api``, so tests that never touch
the devnet never start it.

The facilitator re-reads its account nonce for every settlement, so tests that also use the
``chain`` fixture (evm_snapshot/evm_revert) can pay inside a snapshot safely.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import pytest

from tests.plugins.lazy import LazyModule

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3
    from web3.contract import Contract
    from x402 import x402Client, x402ClientSync

    from walletd.devnet import chain as devchain
    from walletd.devnet.api import ApiStats, Faults
    from walletd.devnet.mcp_server import McpFaults, McpStats
else:
    devchain = LazyModule("walletd.devnet.chain")

DEVNET_API_KEY = "devnet-test-key"  # a fixed key for a loopback test server
PAYER_FUNDS = 1_000_000  # 1 USDC in atomic units


@dataclass(frozen=True)
class DevnetApi:
    """The running paid API as tests see it."""

    base_url: str
    pay_to: str
    facilitator_url: str
    facilitator_address: str
    rpc_url: str
    api_key: str
    stats: ApiStats
    faults: Faults

    def url(self, path: str) -> str:
        """Absolute URL of ``path`` (e.g. ``/v1/models``)."""
        return self.base_url + path

    def key_headers(self) -> dict[str, str]:
        """Headers that authenticate with the configured API key."""
        return {"Authorization": f"Bearer {self.api_key}"}

    def reset(self) -> None:
        """Zero the stats and switch every fault off."""
        self.stats.reset()
        self.faults.reset()


@pytest.fixture(scope="session")
def devnet_api(anvil: devchain.Anvil, usdc: Contract) -> Iterator[DevnetApi]:
    """Facilitator (dev account 1) and paid API (pay_to dev account 3), one API key."""
    from walletd.devnet.servers import paid_api

    with paid_api(anvil.rpc_url, api_keys=[DEVNET_API_KEY]) as running:
        yield DevnetApi(
            base_url=running.base_url,
            pay_to=running.pay_to,
            facilitator_url=running.facilitator_url,
            facilitator_address=running.facilitator_address,
            rpc_url=anvil.rpc_url,
            api_key=DEVNET_API_KEY,
            stats=running.stats,
            faults=running.faults,
        )


@dataclass(frozen=True)
class DevnetMcp:
    """The running paid MCP server as tests see it."""

    url: str
    pay_to: str
    stats: McpStats
    faults: McpFaults

    def reset(self) -> None:
        """Forget the settlements and switch every fault off."""
        self.stats.reset()
        self.faults.reset()


@pytest.fixture(scope="session")
def devnet_mcp(devnet_api: DevnetApi) -> Iterator[DevnetMcp]:
    """The paid MCP server (weather $0.001, research $0.01, ping free), paying ``devnet_api``'s
    payee through its facilitator."""
    from walletd.devnet.mcp_server import paid_mcp_server

    with paid_mcp_server(devnet_api.facilitator_url, devnet_api.pay_to) as running:
        yield DevnetMcp(running.url, running.pay_to, running.stats, running.faults)


@pytest.fixture(autouse=True)
def _reset_devnet_mcp(request: pytest.FixtureRequest) -> Iterator[None]:
    """Clean stats and faults around every test that uses ``devnet_mcp``."""
    if "devnet_mcp" not in request.fixturenames:
        yield
        return
    server: DevnetMcp = request.getfixturevalue("devnet_mcp")
    server.reset()
    yield
    server.reset()


@pytest.fixture(autouse=True)
def _reset_devnet_api(request: pytest.FixtureRequest) -> Iterator[None]:
    """Clean stats and faults around every test that uses ``devnet_api``."""
    if "devnet_api" not in request.fixturenames:
        yield
        return
    api: DevnetApi = request.getfixturevalue("devnet_api")
    api.reset()
    yield
    api.reset()


@pytest.fixture
def devnet_payer(w3: Web3, usdc: Contract) -> LocalAccount:
    """A fresh account holding 1 test USDC and no ETH (the facilitator pays gas)."""
    from eth_account import Account

    account: LocalAccount = Account.create()
    devchain.mint(w3, account.address, PAYER_FUNDS)
    return account


def payment_client(payer: LocalAccount) -> x402Client:
    """The SDK's async client, paying ``exact`` on Base from ``payer``."""
    from x402 import x402Client
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import ExactEvmClientScheme

    client = x402Client()
    client.register("eip155:8453", ExactEvmClientScheme(EthAccountSigner(payer)))
    return client


def payment_client_sync(payer: LocalAccount) -> x402ClientSync:
    """The SDK's sync client, for tests that drive the 402 round trip by hand."""
    from x402 import x402ClientSync
    from x402.mechanisms.evm import EthAccountSigner
    from x402.mechanisms.evm.exact import ExactEvmClientScheme

    client = x402ClientSync()
    client.register("eip155:8453", ExactEvmClientScheme(EthAccountSigner(payer)))
    return client


def paid_request(payer: LocalAccount, method: str, url: str, **kwargs: Any) -> httpx.Response:
    """One request through the SDK's ``x402HttpxClient`` (pays a 402 automatically)."""
    from x402.http.clients import x402HttpxClient

    async def run() -> httpx.Response:
        async with x402HttpxClient(payment_client(payer), timeout=30) as client:
            response: httpx.Response = await client.request(method, url, **kwargs)
            await response.aread()
            return response

    return asyncio.run(run())
