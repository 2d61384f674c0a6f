"""`walletd mcp` gateway tools, called by the official MCP client over stdio, paid by a real
daemon on anvil through the devnet paid API: what moved on chain is what the ledger and
the tool results say, to the atomic unit; refusals are tool errors sent before any request.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.mcp.agent import agent, structured, text_of, walletd_env
from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome, client_daemon
from tests.plugins.devnet import DevnetApi
from walletd.client import PaymentView, WalletClient
from walletd.devnet.api import CHAT_ROUTE, PNG_SIGNATURE

CHAT_MODEL = "llama-3.3-70b"
IMAGE_MODEL = "flux-dev"
CHAT_PRICE, IMAGE_PRICE = 3000, 20000
FUNDS = 1_000_000

pytestmark = pytest.mark.slow  # a daemon and `walletd mcp` subprocesses


@pytest.fixture(scope="module")
def gateway_daemon() -> Iterator[tuple[WalletHome, dict[str, Path]]]:
    """One daemon; clients `svc` (daily 5 USD), `fenced` (host allowlist: localhost only)
    and `tight` (daily 0.004 USD: one chat, not two)."""
    with client_daemon("--daily", "5") as (home, svc):
        tokens = {"svc": svc}
        for name, budget in (
            ("fenced", ("--daily", "1", "--host", "localhost")),
            ("tight", ("--daily", "0.004")),
        ):
            tokens[name] = home.add_client(name)
            home.admin("budget", "set", name, *budget)
        yield home, tokens


@pytest.fixture
def funded(gateway_daemon, chain: Chain, devnet_api: DevnetApi):
    home, tokens = gateway_daemon
    chain.mint(home.address, FUNDS)
    return home, tokens


def _ledger(home: WalletHome, token: Path) -> list[PaymentView]:
    with WalletClient(socket=home.socket, token_file=token) as wallet:
        return wallet.list_payments(limit=1000)


def test_chat_image_and_paid_fetch_move_on_chain_exactly_what_the_ledger_and_results_say(
    funded, chain: Chain, devnet_api: DevnetApi
) -> None:
    home, tokens = funded
    seen = {p.payment_id for p in _ledger(home, tokens["svc"])}
    env = walletd_env(home.socket, tokens["svc"])
    before = chain.usdc_balance(home.address), chain.usdc_balance(devnet_api.pay_to)

    async def run() -> Any:
        async with agent(env, "--base-url", devnet_api.base_url) as session:
            chat = await session.call_tool("chat", {"model": CHAT_MODEL, "prompt": "hello"})
            image = await session.call_tool(
                "image", {"model": IMAGE_MODEL, "prompt": "a lighthouse", "size": "256x256"}
            )
            body = json.dumps(
                {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
            )
            fetched = await session.call_tool("paid_fetch", {
                "url": devnet_api.url("/v1/chat/completions"), "method": "POST",
                "headers": {"content-type": "application/json"}, "body": body,
            })  # fmt: skip
            return chat, image, fetched

    chat, image, fetched = asyncio.run(run())
    for result in (chat, image, fetched):
        assert not result.isError, text_of(result)
    assert structured(chat)["text"].startswith("Devnet reply to:")
    assert image.content[1].type == "image"
    import base64

    assert base64.b64decode(image.content[1].data).startswith(PNG_SIGNATURE)
    assert structured(fetched)["status"] == 200
    assert "Devnet reply to: hi" in structured(fetched)["text"]

    payments = [structured(r)["payment"] for r in (chat, image, fetched)]
    assert [int(p["amount_atomic"]) for p in payments] == [CHAT_PRICE, IMAGE_PRICE, CHAT_PRICE]
    for payment, result in zip(payments, (chat, image, fetched), strict=True):
        assert payment["payee"].lower() == devnet_api.pay_to.lower()
        assert payment["transaction"].startswith("0x")
        assert payment["status"] in {"settlement_pending", "settled"}
        assert f"walletd paid {payment['amount_usd']} USD to {payment['payee']}" in text_of(result)
        assert payment["payment_id"] in text_of(result)

    rows = [p for p in _ledger(home, tokens["svc"]) if p.payment_id not in seen]
    assert sorted(r.payment_id for r in rows) == sorted(p["payment_id"] for p in payments)
    after = chain.usdc_balance(home.address), chain.usdc_balance(devnet_api.pay_to)
    spent = sum(r.amount for r in rows)
    assert spent == CHAT_PRICE * 2 + IMAGE_PRICE
    assert (before[0] - after[0], after[1] - before[1]) == (spent, spent)
    assert len(devnet_api.stats.transactions) == 3


def test_paid_fetch_to_a_host_outside_the_allowlist_is_refused_before_any_request(
    funded, devnet_api: DevnetApi
) -> None:
    home, tokens = funded
    env = walletd_env(home.socket, tokens["fenced"])

    async def run() -> Any:
        async with agent(env) as session:
            budget = await session.call_tool("wallet_budget", {})
            fetched = await session.call_tool(
                "paid_fetch", {"url": devnet_api.url("/v1/chat/completions"), "method": "POST",
                               "body": "{}"},
            )  # fmt: skip
            return budget, fetched

    budget, fetched = asyncio.run(run())
    assert structured(budget)["hosts"] == ["localhost"]
    assert fetched.isError
    error = structured(fetched)["error"]
    assert (error["reason"], error["details"]["rule"]) == ("POLICY_DENIED", "host_allowlist")
    assert "'127.0.0.1' is not in the host allowlist (localhost)" in text_of(fetched)
    assert "no request was sent" in text_of(fetched)
    assert devnet_api.stats.route(CHAT_ROUTE).requests == 0
    assert _ledger(home, tokens["fenced"]) == []


def test_an_exhausted_budget_is_a_tool_error_naming_the_reason_and_the_limit_in_usd(
    funded, chain: Chain, devnet_api: DevnetApi
) -> None:
    home, tokens = funded
    env = walletd_env(home.socket, tokens["tight"])
    before = chain.usdc_balance(home.address)

    async def run() -> Any:
        args = ("--base-url", devnet_api.base_url, "--max-response-bytes", "64")
        async with agent(env, *args) as session:
            first = await session.call_tool("chat", {"model": CHAT_MODEL, "prompt": "one"})
            second = await session.call_tool("chat", {"model": CHAT_MODEL, "prompt": "two"})
            left = await session.call_tool("wallet_budget", {})
            models = await session.call_tool("paid_fetch", {"url": devnet_api.url("/v1/models")})
            return first, second, left, models

    first, second, left, models = asyncio.run(run())
    # The response-size cap: a free fetch, its body cut at 64 bytes, and said so.
    assert not models.isError
    assert (structured(models)["truncated"], structured(models)["bytes"]) == (True, 64)
    assert structured(models)["payment"] is None
    assert "(cut at 64 bytes)" in text_of(models)
    assert "walletd paid nothing for this call." in text_of(models)
    assert not first.isError, text_of(first)
    assert second.isError
    text = text_of(second)
    assert "refused, nothing was paid: BUDGET_EXCEEDED" in text
    assert "limit 0.004000 USD" in text
    error = structured(second)["error"]
    assert (error["limit_usd"], error["spent_usd"], error["requested_usd"]) == (
        "0.004000",
        "0.003000",
        "0.003000",
    )
    assert structured(second)["payment"] is None
    (daily,) = [w for w in structured(left)["windows"] if w["window"] == "daily"]
    assert daily["remaining_usd"] == "0.001000"
    assert before - chain.usdc_balance(home.address) == CHAT_PRICE
    assert [p.amount for p in _ledger(home, tokens["tight"])] == [CHAT_PRICE]
