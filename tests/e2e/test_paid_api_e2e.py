"""walletd pays the local Cluster-Protocol-style API on anvil, end to end.

The real parts: anvil, our EIP-3009 USDC at Base's address, the reference x402
FastAPI middleware and facilitator (settling on anvil), and `walletd serve`.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from tests.plugins.devnet import DevnetApi
from walletd.client import WalletClient

CHAT = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hello"}]}


@pytest.fixture
def funded(chain: Chain, wallet_home: WalletHome, daemon: Daemon) -> Iterator[WalletClient]:
    chain.mint(wallet_home.address, 1_000_000)
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    client = WalletClient(socket=wallet_home.socket, token_file=token)
    yield client
    client.close()


def _demand(http: httpx.Client, url: str, body: dict[str, Any]) -> str:
    first = http.post(url, json=body)
    assert first.status_code == 402
    return first.headers["payment-required"]


def test_payment_moves_exactly_the_price_and_the_ledger_agrees(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, funded: WalletClient
) -> None:
    url = devnet_api.url("/v1/chat/completions")
    wallet, payee = wallet_home.address, devnet_api.pay_to
    before = (chain.usdc_balance(wallet), chain.usdc_balance(payee))
    with httpx.Client(timeout=30) as http:
        receipt = funded.pay("chat-1", "POST", url, payment_required=_demand(http, url, CHAT))
        paid = http.post(url, json=CHAT, headers={receipt.header_name: receipt.header_value})
    assert paid.status_code == 200, paid.text
    settle = json.loads(base64.b64decode(paid.headers["payment-response"]))
    assert settle["success"] is True
    assert settle["transaction"].startswith("0x")
    after = (chain.usdc_balance(wallet), chain.usdc_balance(payee))
    assert (before[0] - after[0], after[1] - before[1]) == (3000, 3000)
    (row,) = funded.list_payments()
    assert (row.amount, row.payee.lower(), row.payment_id) == (
        3000, payee.lower(), receipt.payment_id,
    )  # fmt: skip


def test_image_costs_its_own_price(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, funded: WalletClient
) -> None:
    url = devnet_api.url("/v1/images/generations")
    body = {"model": "flux-dev", "prompt": "a lighthouse", "n": 1, "size": "256x256"}
    before = chain.usdc_balance(wallet_home.address)
    with httpx.Client(timeout=30) as http:
        receipt = funded.pay("img-1", "POST", url, payment_required=_demand(http, url, body))
        paid = http.post(url, json=body, headers={receipt.header_name: receipt.header_value})
    assert paid.status_code == 200, paid.text
    assert receipt.amount == 20_000
    assert before - chain.usdc_balance(wallet_home.address) == 20_000


def test_replay_is_refused_and_a_retried_key_never_settles_twice(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, funded: WalletClient
) -> None:
    url = devnet_api.url("/v1/chat/completions")
    before = chain.usdc_balance(wallet_home.address)
    with httpx.Client(timeout=30) as http:
        demand = _demand(http, url, CHAT)
        first = funded.pay("same-key", "POST", url, payment_required=demand)
        assert (
            http.post(url, json=CHAT, headers={first.header_name: first.header_value}).status_code
            == 200
        )
        replay = http.post(url, json=CHAT, headers={first.header_name: first.header_value})
        assert replay.status_code == 402
        again = funded.pay("same-key", "POST", url, payment_required=_demand(http, url, CHAT))
        assert (again.header_value, again.reused) == (first.header_value, True)
        retried = http.post(url, json=CHAT, headers={again.header_name: again.header_value})
        assert retried.status_code == 402
    assert before - chain.usdc_balance(wallet_home.address) == 3000
    assert len(funded.list_payments()) == 1
