"""A proxied paid call that times out, then is retried by the agent with the same arguments,
is one logical call: one authorization, at most one settlement. The agent is the official MCP
client over stdio, in front of `walletd mcp --upstream` with a short `--timeout`, the devnet
paid MCP server made slow, a real daemon that reads anvil (so it can tell a settled
authorization from a refused one). One daemon serves the module; its wallet is funded once,
outside any chain snapshot (``funded_daemon``), and each test looks at balance deltas and at
its own ledger rows only."""

from __future__ import annotations

import asyncio
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
from tests.plugins.devnet import DevnetMcp
from walletd.client import PaymentView, WalletClient

if TYPE_CHECKING:
    from web3 import Web3
    from web3.contract import Contract

    from walletd.devnet.chain import Anvil

WEATHER, RESEARCH = 1000, 10000
FUNDS = 1_000_000
TIMEOUT_S = 1.0
"""walletd mcp's `--timeout`: the devnet tools are made slower than this."""

pytestmark = pytest.mark.slow  # a daemon and `walletd mcp` subprocesses


@pytest.fixture(scope="module")
def module_chain(anvil: Anvil, w3: Web3, usdc: Contract) -> Chain:
    """The session chain, never rolled back by these tests."""
    return Chain(w3=w3, usdc=usdc, rpc_url=anvil.rpc_url)


@pytest.fixture(scope="module")
def funded(module_chain: Chain) -> Iterator[tuple[WalletHome, Path]]:
    """A funded wallet, client `svc` ($5 a day), and its daemon, which reads the chain."""
    with funded_daemon(module_chain, FUNDS) as found:
        yield found


def _ledger(home: WalletHome, token: Path) -> dict[str, PaymentView]:
    with WalletClient(socket=home.socket, token_file=token, timeout=30) as wallet:
        return {p.payment_id: p for p in wallet.list_payments(limit=1000)}


async def _settlement_of(server: DevnetMcp, tool: str, timeout: float = 20) -> None:
    """Wait until the upstream has settled a call of ``tool``.

    Waiting for any settlement could be satisfied by another test's slow call
    settling late on this session-wide server; this test's tool is the one to wait for.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if any(done == tool for done, _ in server.stats.settlements):
            return
        await asyncio.sleep(0.05)


def _timed_out(result: Any) -> None:
    """The interrupted call's tool error: a timeout, and the same call again is not paid twice."""
    assert result.isError, text_of(result)
    doc = structured(result)
    assert doc["error"]["reason"] == "UPSTREAM_TIMEOUT"
    assert doc["same_call_until"] in text_of(result)
    assert "again with exactly the same arguments" in text_of(result)
    assert "never paid twice" in text_of(result)


def _proxy(home: WalletHome, token: Path, devnet_mcp: DevnetMcp) -> Any:
    env = walletd_env(home.socket, token)
    return agent(env, "--upstream", devnet_mcp.url, "--timeout", str(TIMEOUT_S))


def test_a_retry_after_a_timeout_that_settled_signs_nothing_and_says_the_answer_was_lost(
    funded, module_chain: Chain, devnet_mcp: DevnetMcp
) -> None:
    home, token = funded
    seen = set(_ledger(home, token))
    before = module_chain.usdc_balance(home.address), module_chain.usdc_balance(devnet_mcp.pay_to)
    ask = {"topic": "settled anyway"}

    async def run() -> tuple[Any, Any]:
        session: ClientSession
        async with _proxy(home, token, devnet_mcp) as session:
            devnet_mcp.faults.delay_seconds = 2 * TIMEOUT_S
            first = await session.call_tool("research", ask)
            # The upstream ran the tool and settled after walletd mcp stopped waiting.
            await _settlement_of(devnet_mcp, "research")
            devnet_mcp.faults.delay_seconds = 0
            return first, await session.call_tool("research", ask)

    first, retry = asyncio.run(run())
    rows = [p for i, p in _ledger(home, token).items() if i not in seen]
    assert [(r.amount, r.status) for r in rows] == [(RESEARCH, "settled")]  # one authorization
    assert_paid_answer_lost(retry, rows[0].payment_id)
    after = module_chain.usdc_balance(home.address), module_chain.usdc_balance(devnet_mcp.pay_to)
    assert (before[0] - after[0], after[1] - before[1]) == (RESEARCH, RESEARCH)
    assert [tool for tool, _ in devnet_mcp.stats.settlements] == ["research"]
    _timed_out(first)


def test_a_retry_before_the_timed_out_call_settled_pays_it_once_and_the_call_after_anew(
    funded, module_chain: Chain, devnet_mcp: DevnetMcp
) -> None:
    home, token = funded
    seen = set(_ledger(home, token))
    before = module_chain.usdc_balance(home.address)
    ask = {"city": "Oslo"}
    slow_s = 5 * TIMEOUT_S  # time enough for the retry to be paid first

    async def run() -> tuple[Any, ...]:
        session: ClientSession
        async with _proxy(home, token, devnet_mcp) as session:
            devnet_mcp.faults.delay_seconds = slow_s
            started = time.monotonic()
            first = await session.call_tool("weather", ask)
            devnet_mcp.faults.delay_seconds = 0
            retry = await session.call_tool("weather", ask)  # while the first still runs
            then = await session.call_tool("weather", ask)  # a new call: a new payment
            # Let the first run end: its settlement of the same authorization must fail.
            await asyncio.sleep(max(0.0, slow_s + 2 - (time.monotonic() - started)))
            return first, retry, then

    first, retry, then = asyncio.run(run())
    assert not retry.isError, text_of(retry)
    assert not then.isError, text_of(then)
    paid = retry.meta["walletd/payment"]
    new = then.meta["walletd/payment"]
    rows = {i: p for i, p in _ledger(home, token).items() if i not in seen}
    assert sorted(rows) == sorted([paid["payment_id"], new["payment_id"]])  # two, not three
    assert new["payment_id"] != paid["payment_id"]
    assert before - module_chain.usdc_balance(home.address) == 2 * WEATHER
    assert sorted(tx for _, tx in devnet_mcp.stats.settlements) == sorted(
        [paid["transaction"], new["transaction"]]
    )
    assert paid["reused"] is True and "(reused: no new payment)" in text_of(retry)
    assert new["reused"] is False
    _timed_out(first)
