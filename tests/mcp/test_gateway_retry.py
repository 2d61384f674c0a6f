"""A gateway call paid, then interrupted before its answer came back, then retried by the
agent with the same arguments, is one logical call: one authorization, at most one
settlement, and the retry says the answer was lost. The agent is the official MCP client
over stdio, in front of `walletd mcp --base-url <devnet API> --timeout 1`; the devnet API
drops the connection after settling (and is made slow after that); the daemon reads anvil,
so it can tell a settled authorization from a refused one. One daemon serves the module;
each test looks at its own ledger rows and at balance deltas."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from mcp import ClientSession

from tests.mcp.agent import agent, assert_paid_answer_lost, structured, text_of, walletd_env
from tests.mcp.paying import funded_daemon
from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome
from tests.plugins.devnet import DevnetApi
from walletd.client import PaymentView, WalletClient

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract

    from walletd.devnet.chain import Anvil

CHAT_MODEL = "llama-3.3-70b"
CHAT_PRICE = 3000
FUNDS = 1_000_000
TIMEOUT_S = 1.0
"""walletd mcp's `--timeout`."""

pytestmark = pytest.mark.slow  # a daemon and `walletd mcp` subprocesses


@pytest.fixture(scope="module")
def funded(anvil: Anvil, w3: Web3, usdc: Contract) -> Iterator[tuple[WalletHome, Path, Chain]]:
    """A funded wallet, client `svc`, and its daemon, which reads the (never rolled back) chain."""
    chain = Chain(w3=w3, usdc=usdc, rpc_url=anvil.rpc_url)
    with funded_daemon(chain, FUNDS) as (home, token):
        yield home, token, chain


def _ledger(home: WalletHome, token: Path) -> dict[str, PaymentView]:
    with WalletClient(socket=home.socket, token_file=token, timeout=30) as wallet:
        return {p.payment_id: p for p in wallet.list_payments(limit=1000)}


def _interrupted(result: Any, reason: str) -> None:
    """The interrupted call's tool error: the same call again is not paid twice."""
    assert result.isError, text_of(result)
    doc = structured(result)
    assert doc["error"]["reason"] == reason, text_of(result)
    assert doc["same_call_until"] in text_of(result)
    assert "this call may have been paid" in text_of(result)
    assert "again with exactly the same arguments" in text_of(result)


def _paid_once(
    funded: tuple[WalletHome, Path, Chain], api: DevnetApi, seen: set[str], before: int, retry: Any
) -> None:
    """One authorization, settled once on chain; the retry says its answer was lost."""
    home, token, chain = funded
    rows = [p for i, p in _ledger(home, token).items() if i not in seen]
    assert [(r.amount, r.status) for r in rows] == [(CHAT_PRICE, "settled")], rows
    assert before - chain.usdc_balance(home.address) == CHAT_PRICE
    assert len(api.stats.transactions) == 1
    assert_paid_answer_lost(retry, rows[0].payment_id)


def _gateway(home: WalletHome, token: Path, api: DevnetApi) -> Any:
    env = walletd_env(home.socket, token)
    return agent(env, "--base-url", api.base_url, "--timeout", str(TIMEOUT_S))


def test_paid_fetch_retried_after_its_connection_dropped_signs_nothing_more(
    funded, devnet_api: DevnetApi
) -> None:
    home, token, chain = funded
    seen, before = set(_ledger(home, token)), chain.usdc_balance(home.address)
    body = json.dumps({"model": CHAT_MODEL, "messages": [{"role": "user", "content": "drop"}]})
    ask = {
        "url": devnet_api.url("/v1/chat/completions"),
        "method": "POST",
        "headers": {"content-type": "application/json"},
        "body": body,
    }

    async def run() -> tuple[Any, Any]:
        session: ClientSession
        async with _gateway(home, token, devnet_api) as session:
            devnet_api.faults.drop_connection_after_settle = True
            first = await session.call_tool("paid_fetch", ask)
            return first, await session.call_tool("paid_fetch", ask)

    first, retry = asyncio.run(run())
    _paid_once(funded, devnet_api, seen, before, retry)
    _interrupted(first, "HTTP_ERROR")


def test_chat_retried_after_it_timed_out_paid_signs_nothing_more(
    funded, devnet_api: DevnetApi
) -> None:
    home, token, chain = funded
    seen, before = set(_ledger(home, token)), chain.usdc_balance(home.address)
    ask = {"model": CHAT_MODEL, "prompt": "slow after paying"}

    async def run() -> tuple[Any, Any]:
        session: ClientSession
        async with _gateway(home, token, devnet_api) as session:
            devnet_api.faults.drop_connection_after_settle = True
            first = asyncio.ensure_future(session.call_tool("chat", ask))
            # Paid and settled, its answer dropped: the client's own retries then time out.
            deadline = time.monotonic() + 20
            while not devnet_api.stats.transactions and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            devnet_api.faults.answer_delay_seconds = 2 * TIMEOUT_S
            await first
            devnet_api.faults.answer_delay_seconds = 0
            return first.result(), await session.call_tool("chat", ask)

    first, retry = asyncio.run(run())
    _paid_once(funded, devnet_api, seen, before, retry)
    _interrupted(first, "API_CONNECTION")
    assert "ReadTimeout" in text_of(first)
