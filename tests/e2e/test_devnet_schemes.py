"""The devnet's Permit2 and upto routes, paid by `walletd serve` and settled by the reference
x402 middleware and facilitator on anvil; upto is charged by the tokens the reply used."""

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
    chain.set_eth_balance(wallet_home.address, 10**18)  # the approve's gas
    wallet_home.admin(
        "chain", "approve-permit2", "--network", "eip155:8453", "--token", "USDC",
        "--cap", "1", "--rpc-url", chain.rpc_url,
        "--passphrase-file", str(wallet_home.passphrase_file),
    )  # fmt: skip
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    client = WalletClient(socket=wallet_home.socket, token_file=token)
    yield client
    client.close()


def _paid(http: httpx.Client, wallet: WalletClient, key: str, url: str) -> tuple[Any, Any]:
    first = http.post(url, json=CHAT)
    assert first.status_code == 402
    receipt = wallet.pay(key, "POST", url, payment_required=first.headers["payment-required"])
    paid = http.post(url, json=CHAT, headers={receipt.header_name: receipt.header_value})
    assert paid.status_code == 200, paid.text
    return receipt, paid


def test_permit2_route_settles_exactly_the_price(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, funded: WalletClient
) -> None:
    before = chain.usdc_balance(wallet_home.address)
    with httpx.Client(timeout=30) as http:
        receipt, paid = _paid(http, funded, "p2", devnet_api.url("/v1/permit2/chat/completions"))
    doc = json.loads(base64.b64decode(receipt.header_value))
    assert "permit2Authorization" in doc["payload"]
    assert json.loads(base64.b64decode(paid.headers["payment-response"]))["success"] is True
    assert before - chain.usdc_balance(wallet_home.address) == receipt.amount == 3000


def test_upto_route_charges_tokens_used_and_the_rest_is_released(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, funded: WalletClient
) -> None:
    before = chain.usdc_balance(wallet_home.address)
    with httpx.Client(timeout=30) as http:
        receipt, paid = _paid(http, funded, "upto", devnet_api.url("/v1/upto/chat/completions"))
    charge = paid.json()["usage"]["total_tokens"] * 10  # $0.00001 a token
    settled = json.loads(base64.b64decode(paid.headers["payment-response"]))
    assert (receipt.amount, settled["amount"]) == (10_000, str(charge))
    assert before - chain.usdc_balance(wallet_home.address) == charge < 10_000
    funded.report_outcome(receipt.payment_id, 200, paid.headers["payment-response"])
    wallet_home.admin("reconcile", "--rpc-url", chain.rpc_url)
    daily = next(w for w in funded.get_budget().windows if w.window == "daily")
    assert daily.spent == charge  # chain, ledger and budget agree to the atomic unit
    report = json.loads(wallet_home.admin("spend-report", "--json").stdout)
    assert report["totals"]["statuses"]["settled"]["amount"] == charge
    assert report["totals"]["authorized"]["amount"] == 10_000
    assert report["audit"]["ok"] is True  # the charge moved the row inside the hash chain
