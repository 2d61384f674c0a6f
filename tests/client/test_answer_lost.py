"""A retry refused as "nonce already used" after the first attempt settled: paid, answer lost.

The daemon here has the chain RPC, so it checks a refused payment on chain at
once: the caller gets PaidAnswerLostError with the payment id, and the ledger
shows the payment settled (not rejected). A server that claims the nonce is
used while the chain says it is not stays an ordinary rejection.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.client.conftest import CHAT_MODEL, CHAT_PRICE, Wallet
from tests.plugins.daemon import WalletHome, client_daemon
from walletd.client import (
    AsyncClusterClient,
    ClusterClient,
    PaidAnswerLostError,
    RetryPolicy,
)
from walletd.devnet import chain as devchain
from walletd.devnet.api import CHAT_ROUTE

FAST = RetryPolicy(max_retries=2, backoff=0.05)
NONCE_USED = "invalid_exact_evm_nonce_already_used"


@pytest.fixture(scope="module")
def module_daemon(anvil: devchain.Anvil) -> Iterator[tuple[WalletHome, Path]]:
    """Like tests/client's daemon, but with the chain RPC (its loop runs rarely)."""
    config = f'[chain]\nrpc_url = "{anvil.rpc_url}"\nreconcile_interval_seconds = 3600\n'
    with client_daemon("--daily", "5", config=config) as found:
        yield found


def _client(wallet: Wallet) -> ClusterClient:
    return ClusterClient(wallet.api.base_url, walletd=wallet.settings(), retry=FAST)


def _lose_the_answer(wallet: Wallet, fault: str) -> None:
    """The next settled request's answer never reaches the client (a 503, or a dropped line)."""
    if fault == "status_503":
        wallet.api.faults.fail_after_settle_status = 503
    else:
        wallet.api.faults.drop_connection_after_settle = True


def _assert_settled_once(wallet: Wallet, before: tuple[int, int], payment_id: str) -> None:
    after = wallet.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (CHAT_PRICE, CHAT_PRICE)
    assert len(wallet.api.stats.transactions) == 1
    (row,) = wallet.new_payments()
    assert (row.payment_id, row.status) == (payment_id, "settled")


@pytest.mark.parametrize("fault", ["status_503", "dropped_connection"])
def test_a_retry_refused_as_nonce_used_after_settling_is_paid_answer_lost(
    wallet: Wallet, fault: str
) -> None:
    _lose_the_answer(wallet, fault)
    before = wallet.balances()
    with _client(wallet) as api, pytest.raises(PaidAnswerLostError) as info:
        api.chat(CHAT_MODEL, "fail after settle")
    assert wallet.api.stats.route(CHAT_ROUTE).with_payment_header == 2  # the retry re-sent it
    assert info.value.payment_id.startswith("pay_")
    assert info.value.tx == wallet.api.stats.transactions[0].lower()
    assert NONCE_USED in info.value.details["server_reason"]
    assert info.value.payment_id in str(info.value)
    _assert_settled_once(wallet, before, info.value.payment_id)


def test_the_async_client_gets_paid_answer_lost_too(wallet: Wallet) -> None:
    _lose_the_answer(wallet, "status_503")

    async def run() -> None:
        async with AsyncClusterClient(
            wallet.api.base_url, walletd=wallet.settings(), retry=FAST
        ) as api:
            await api.chat(CHAT_MODEL, "fail after settle")

    before = wallet.balances()
    with pytest.raises(PaidAnswerLostError) as info:
        asyncio.run(run())
    _assert_settled_once(wallet, before, info.value.payment_id)


def _refusal(reason: str) -> str:
    doc = {"success": False, "errorReason": reason, "transaction": "", "network": "eip155:8453"}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def test_a_server_claiming_nonce_used_for_an_unused_authorization_is_a_rejection(
    wallet: Wallet,
) -> None:
    with httpx.Client(timeout=30) as http:
        first = http.post(wallet.api.url("/v1/chat/completions"), json={"model": CHAT_MODEL})
    assert first.status_code == 402
    with wallet.client() as client:
        receipt = client.pay(
            "k-lying-server", "POST", wallet.api.url("/v1/chat/completions"),
            payment_required=first.headers["payment-required"],
        )  # fmt: skip
        # The authorization was never sent: the chain says its nonce is unused.
        status = client.report_outcome(receipt.payment_id, 402, _refusal(NONCE_USED))
        assert status == "rejected"
        assert client.report_outcome(receipt.payment_id, 402, _refusal(NONCE_USED)) == "rejected"
    (row,) = wallet.new_payments()
    assert (row.payment_id, row.status) == (receipt.payment_id, "rejected")
