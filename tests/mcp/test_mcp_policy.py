"""`walletd mcp` under the operator's policy: approval above a threshold, denial, rate limits,
scoped budgets, driven by the official MCP client over stdio against one real daemon, anvil,
the devnet paid API and the devnet paid MCP server.

Clients: `held` (approve-above 0.002 USD: a 0.003 USD chat and a 0.01 USD research call are
held), `alice` (approves only), `rl` (one payment a minute), `scoped` (0.004 USD a day for
label model=llama-3.3-70b: one chat, not two, while its own 5 USD a day has room).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp.agent import agent, structured, text_of, walletd_env
from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome, client_daemon
from tests.plugins.devnet import DevnetApi, DevnetMcp
from walletd.client import PaymentView, WalletClient

CHAT_MODEL = "llama-3.3-70b"
CHAT_PRICE, RESEARCH_PRICE = 3000, 10000
FUNDS = 1_000_000

pytestmark = pytest.mark.slow  # a daemon and `walletd mcp` subprocesses


@pytest.fixture(scope="module")
def policy_daemon() -> Iterator[tuple[WalletHome, dict[str, Path]]]:
    with client_daemon("--daily", "5") as (home, svc):
        tokens = {"svc": svc, "alice": home.add_client("alice", "approve")}
        for name, *budget in (
            ("held", "--daily", "5", "--approve-above", "0.002"),
            ("rl", "--daily", "5", "--max-payments", "1", "--per", "minute"),
            ("scoped", "--daily", "5"),
        ):
            tokens[name] = home.add_client(name)
            home.admin("budget", "set", name, *budget)
        home.admin("budget", "set", "scoped", "--for", f"label:model={CHAT_MODEL}",
                   "--daily", "0.004")  # fmt: skip
        yield home, tokens


@pytest.fixture
def funded(policy_daemon, chain: Chain, devnet_api: DevnetApi):
    home, tokens = policy_daemon
    chain.mint(home.address, FUNDS)
    return home, tokens


def _client(home: WalletHome, token: Path) -> WalletClient:
    return WalletClient(socket=home.socket, token_file=token, timeout=30)


def _ledger(home: WalletHome, token: Path) -> list[PaymentView]:
    with _client(home, token) as wallet:
        return wallet.list_payments(limit=1000)


def _awaiting(result: Any) -> dict[str, Any]:
    """The approval facts of an awaiting-approval tool error (checked on the way)."""
    assert result.isError, text_of(result)
    doc = structured(result)
    first = text_of(result).splitlines()[0]
    assert first.startswith(f"awaiting approval {doc['approval_id']}: {doc['amount_usd']} USD to ")
    assert f"an operator runs `walletd approve {doc['approval_id']}`" in first
    assert f"expires {doc['expires']}" in first
    assert doc["approval_id"].startswith("apr_") and doc["expires_at_ms"] > time.time() * 1000
    assert doc["error"]["reason"] == "APPROVAL_REQUIRED" and doc["payment"] is None
    return doc


def test_held_chat_is_awaiting_approval_and_the_retry_after_approve_pays_exactly_once(
    funded, chain: Chain, devnet_api: DevnetApi
) -> None:
    home, tokens = funded
    env = walletd_env(home.socket, tokens["held"])
    seen = {p.payment_id for p in _ledger(home, tokens["held"])}
    before = chain.usdc_balance(home.address)
    ask = {"model": CHAT_MODEL, "prompt": "approve me"}

    async def run() -> tuple[Any, ...]:
        async with agent(env, "--base-url", devnet_api.base_url) as session:
            held = await session.call_tool("chat", ask)
            doc = _awaiting(held)
            with _client(home, tokens["alice"]) as alice:
                alice.approve(doc["approval_id"], note="fine")
            paid = await session.call_tool("chat", ask)  # the agent calls again, same arguments
            again = await session.call_tool("chat", ask)  # a new call after it: held anew
            return held, paid, again

    held, paid, again = asyncio.run(run())
    doc = structured(held)
    assert doc["url"] == devnet_api.url("/v1/chat/completions")
    assert (doc["amount_usd"], doc["payee"].lower()) == ("0.003000", devnet_api.pay_to.lower())
    assert not paid.isError, text_of(paid)
    payment = structured(paid)["payment"]
    assert payment["payment_id"] == doc["payment_id"]
    assert payment["transaction"].startswith("0x")
    assert _awaiting(again)["approval_id"] != doc["approval_id"]
    rows = [p for p in _ledger(home, tokens["held"]) if p.payment_id not in seen]
    signed = [r for r in rows if r.status != "awaiting_approval"]
    assert [(r.payment_id, r.amount) for r in signed] == [(doc["payment_id"], CHAT_PRICE)]
    assert len(devnet_api.stats.transactions) == 1  # one settlement on chain
    assert before - chain.usdc_balance(home.address) == CHAT_PRICE


def test_held_proxied_tool_is_awaiting_approval_and_the_retry_after_approve_pays_once(
    funded, chain: Chain, devnet_mcp: DevnetMcp
) -> None:
    home, tokens = funded
    env = walletd_env(home.socket, tokens["held"])
    seen = {p.payment_id for p in _ledger(home, tokens["held"])}
    before = chain.usdc_balance(home.address)

    async def run() -> tuple[Any, ...]:
        async with agent(env, "--upstream", devnet_mcp.url) as session:
            cheap = await session.call_tool("weather", {"city": "Porto"})  # below the threshold
            held = await session.call_tool("research", {"topic": "approvals"})
            doc = _awaiting(held)
            retried = await session.call_tool("research", {"topic": "approvals"})
            with _client(home, tokens["alice"]) as alice:
                alice.approve(doc["approval_id"])
            paid = await session.call_tool("research", {"topic": "approvals"})
            return cheap, held, retried, paid

    cheap, held, retried, paid = asyncio.run(run())
    assert not cheap.isError, text_of(cheap)
    doc = structured(held)
    assert doc["url"].endswith("/tools/research") and doc["amount_usd"] == "0.010000"
    assert _awaiting(retried)["approval_id"] == doc["approval_id"]  # still pending: same one
    assert not paid.isError, text_of(paid)
    assert paid.meta is not None
    assert paid.meta["walletd/payment"]["payment_id"] == doc["payment_id"]
    rows = [p for p in _ledger(home, tokens["held"]) if p.payment_id not in seen]
    assert sorted(r.amount for r in rows) == [1000, RESEARCH_PRICE]  # weather, research once
    assert [tool for tool, _ in devnet_mcp.stats.settlements] == ["weather", "research"]
    assert before - chain.usdc_balance(home.address) == 1000 + RESEARCH_PRICE


def test_wait_for_approval_lets_the_held_call_itself_pay_once_approved(
    funded, chain: Chain, devnet_api: DevnetApi
) -> None:
    home, tokens = funded
    env = walletd_env(home.socket, tokens["held"])
    before = chain.usdc_balance(home.address)

    with _client(home, tokens["alice"]) as alice:
        earlier = {a.approval_id for a in alice.list_approvals("pending")}

    def approve_when_pending() -> str:
        with _client(home, tokens["alice"]) as alice:
            for _ in range(300):
                pending = [
                    a for a in alice.list_approvals("pending")
                    if a.client == "held" and a.approval_id not in earlier
                ]  # fmt: skip
                if pending:
                    alice.approve(pending[0].approval_id, note="waited")
                    return pending[0].payment_id
                time.sleep(0.1)
        raise AssertionError("nothing was held")

    async def run() -> tuple[Any, str]:
        args = ("--base-url", devnet_api.base_url, "--wait-for-approval", "30")
        async with agent(env, *args) as session:
            call = session.call_tool("chat", {"model": CHAT_MODEL, "prompt": "wait for it"})
            result, payment_id = await asyncio.gather(call, asyncio.to_thread(approve_when_pending))
            return result, payment_id

    result, payment_id = asyncio.run(run())
    assert not result.isError, text_of(result)
    assert structured(result)["payment"]["payment_id"] == payment_id
    assert len(devnet_api.stats.transactions) == 1
    assert before - chain.usdc_balance(home.address) == CHAT_PRICE


def test_a_denied_call_is_a_tool_error_naming_the_approver_and_note_with_nothing_signed(
    funded, chain: Chain, devnet_api: DevnetApi
) -> None:
    home, tokens = funded
    env = walletd_env(home.socket, tokens["held"])
    before = chain.usdc_balance(home.address)
    ask = {"model": CHAT_MODEL, "prompt": "deny me"}

    async def run() -> tuple[Any, Any]:
        async with agent(env, "--base-url", devnet_api.base_url) as session:
            held = await session.call_tool("chat", ask)
            with _client(home, tokens["alice"]) as alice:
                alice.deny(_awaiting(held)["approval_id"], note="not today")
            return held, await session.call_tool("chat", ask)

    held, denied = asyncio.run(run())
    assert denied.isError
    assert text_of(denied).startswith("denied by alice: not today")
    error = structured(denied)["error"]
    assert (error["reason"], error["details"]["approval_id"]) == (
        "APPROVAL_DENIED", structured(held)["approval_id"],
    )  # fmt: skip
    shown = home.admin("payment", "show", error["details"]["payment_id"], "--json").stdout
    events = json.loads(shown)["payment"]["events"]
    assert [e["status"] for e in events] == ["awaiting_approval", "denied"]  # never signed
    assert devnet_api.stats.transactions == []
    assert chain.usdc_balance(home.address) == before


def test_rate_limit_and_scoped_budget_refusals_name_their_figures_and_wallet_budget_shows_them(
    funded, devnet_api: DevnetApi
) -> None:
    home, tokens = funded

    async def two_chats(name: str) -> tuple[Any, Any, Any]:
        env = walletd_env(home.socket, tokens[name])
        async with agent(env, "--base-url", devnet_api.base_url) as session:
            first = await session.call_tool("chat", {"model": CHAT_MODEL, "prompt": "one"})
            second = await session.call_tool("chat", {"model": CHAT_MODEL, "prompt": "two"})
            return first, second, await session.call_tool("wallet_budget", {})

    async def run() -> list[tuple[Any, Any, Any]]:
        return [await two_chats("rl"), await two_chats("scoped")]

    (rl_first, limited, rl_budget), (sc_first, exceeded, sc_budget) = asyncio.run(run())
    assert not rl_first.isError and not sc_first.isError

    assert limited.isError
    error = structured(limited)["error"]
    assert error["reason"] == "RATE_LIMITED" and "limit_usd" not in error
    figures = {"window": "payments_per_minute", "limit": "1", "count": "1", "per": "minute"}
    assert {k: error["details"].get(k) for k in figures} == figures
    assert text_of(limited).startswith(
        "walletd refused, nothing was paid: RATE_LIMITED: payments_per_minute allows 1 "
        "payments per minute, 1 already made"
    )
    assert exceeded.isError
    error = structured(exceeded)["error"]
    window = f"daily[label:model={CHAT_MODEL}]"
    assert (error["reason"], error["details"]["window"], error["limit_usd"]) == (
        "BUDGET_EXCEEDED", window, "0.004000",
    )  # fmt: skip
    assert f"{window} budget exceeded: limit 0.004000 USD" in text_of(exceeded)

    rates = structured(rl_budget)["rate_limits"]
    assert rates == [{"window": "payments_per_minute", "per": "minute", "limit": 1, "count": 1,
                      "remaining": 0}]  # fmt: skip
    assert "payments_per_minute: 0 payments left of 1 per minute (1 made)" in text_of(rl_budget)
    scoped = structured(sc_budget)["scoped_windows"]
    assert scoped == [{"window": window, "limit_usd": "0.004000", "spent_usd": "0.003000",
                       "remaining_usd": "0.001000"}]  # fmt: skip
    assert f"{window}: 0.001000 USD left of 0.004000 (spent 0.003000)" in text_of(sc_budget)
    assert [p.amount for p in _ledger(home, tokens["rl"])] == [CHAT_PRICE]
    assert [p.amount for p in _ledger(home, tokens["scoped"])] == [CHAT_PRICE]
