"""ClusterClient against the local paid API on anvil, paid by the real daemon: exactly once."""

from __future__ import annotations

import asyncio

import pytest

from tests.client.conftest import CHAT_MODEL, CHAT_PRICE, IMAGE_MODEL, IMAGE_PRICE, Wallet
from walletd.client import (
    AsyncClusterClient,
    ClusterClient,
    ClusterNotFoundError,
    ClusterUnavailableError,
    PaymentRejectedError,
    RetryPolicy,
)
from walletd.devnet.api import CHAT_ROUTE, PNG_SIGNATURE

FAST = RetryPolicy(max_retries=2, backoff=0.05)


def _client(wallet: Wallet, **kwargs) -> ClusterClient:
    kwargs.setdefault("retry", FAST)
    return ClusterClient(wallet.api.base_url, walletd=wallet.settings(), **kwargs)


def assert_paid_once(wallet: Wallet, before: tuple[int, int], price: int) -> None:
    """USDC moved by exactly ``price`` to pay_to, one settlement, one ledger row."""
    after = wallet.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (price, price)
    assert len(wallet.api.stats.transactions) == 1
    (row,) = wallet.new_payments()
    assert (row.amount, row.payee.lower()) == (price, wallet.api.pay_to.lower())


def test_chat_pays_exactly_once_on_chain_and_in_the_ledger(wallet: Wallet) -> None:
    before = wallet.balances()
    with _client(wallet) as api:
        result = api.chat(CHAT_MODEL, "hello there", max_tokens=50)
    assert result.text.startswith("Devnet reply to:")
    assert result.payment is not None and result.payment.settlement["success"] is True
    assert_paid_once(wallet, before, CHAT_PRICE)
    assert wallet.new_payments()[0].status == "settlement_pending"


def test_stream_pays_exactly_once_and_yields_deltas(wallet: Wallet) -> None:
    before = wallet.balances()
    with _client(wallet) as api, api.chat_stream(CHAT_MODEL, "stream me") as stream:
        deltas = list(stream)
        assert stream.payment is not None
    assert len(deltas) > 5
    assert "".join(deltas).startswith("Devnet reply to: stream me")
    assert_paid_once(wallet, before, CHAT_PRICE)


def test_images_pay_exactly_once_and_are_png(wallet: Wallet) -> None:
    before = wallet.balances()
    with _client(wallet) as api:
        images = api.images(IMAGE_MODEL, "a lighthouse", n=2, size="256x256")
    assert len(images) == 2
    assert all(img.startswith(PNG_SIGNATURE) for img in images)
    assert_paid_once(wallet, before, IMAGE_PRICE)


def test_async_client_pays_once_for_plain_and_stream(wallet: Wallet) -> None:
    async def run() -> tuple[str, str]:
        async with AsyncClusterClient(
            wallet.api.base_url, walletd=wallet.settings(), retry=FAST
        ) as api:
            plain = await api.chat(CHAT_MODEL, "async hello")
            stream = await api.chat_stream(CHAT_MODEL, "async stream")
            text = "".join([d async for d in stream])
            return plain.text, text

    before = wallet.balances()
    plain, streamed = asyncio.run(run())
    assert plain and streamed
    after = wallet.balances()
    assert before[0] - after[0] == 2 * CHAT_PRICE
    assert len(wallet.api.stats.transactions) == 2
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE, CHAT_PRICE]


@pytest.mark.parametrize("fault", ["status_503", "dropped_connection"])
def test_server_failing_after_settling_is_retried_without_a_second_settlement(
    wallet: Wallet, fault: str
) -> None:
    if fault == "status_503":
        wallet.api.faults.fail_after_settle_status = 503
    else:
        wallet.api.faults.drop_connection_after_settle = True
    before = wallet.balances()
    with _client(wallet) as api, pytest.raises(PaymentRejectedError) as info:
        api.chat(CHAT_MODEL, "fail after settle")
    # The retry re-sent the very same authorization, which the chain had already used.
    assert info.value.details["reused"] == "true"
    assert "nonce" in info.value.payment_reason
    route = wallet.api.stats.route(CHAT_ROUTE)
    assert route.with_payment_header == 2
    assert_paid_once(wallet, before, CHAT_PRICE)
    (row,) = wallet.new_payments()
    assert row.payment_id == info.value.payment_id


def test_a_503_after_paying_names_the_outstanding_payment(wallet: Wallet) -> None:
    wallet.api.faults.fail_after_settle_status = 503
    no_retry = RetryPolicy(max_retries=0)
    with _client(wallet, retry=no_retry) as api, pytest.raises(ClusterUnavailableError) as info:
        api.chat(CHAT_MODEL, "fail after settle")
    (row,) = wallet.new_payments()
    assert info.value.payment_id == row.payment_id
    assert info.value.details["reused"] == "false"
    assert row.payment_id in str(info.value)


def test_429_before_payment_is_retried_and_paid_once(wallet: Wallet) -> None:
    wallet.api.faults.status_before_payment = 429
    wallet.api.faults.retry_after_seconds = 0
    before = wallet.balances()
    with _client(wallet) as api:
        assert api.chat(CHAT_MODEL, "after a 429").text
    assert wallet.api.stats.route(CHAT_ROUTE).statuses[429] == 1
    assert_paid_once(wallet, before, CHAT_PRICE)


def test_unknown_model_is_a_typed_error_with_the_server_code(wallet: Wallet) -> None:
    before = wallet.balances()
    with _client(wallet) as api, pytest.raises(ClusterNotFoundError) as info:
        api.chat("no-such-model", "hi")
    assert (info.value.status, info.value.code) == (404, "model_not_found")
    assert wallet.balances() == before  # the SDK does not settle a failed request


def test_api_key_mode_pays_nothing_and_needs_no_walletd(wallet: Wallet) -> None:
    before = wallet.balances()
    with ClusterClient(wallet.api.base_url, api_key=wallet.api.api_key, retry=FAST) as api:
        assert api.chat(CHAT_MODEL, "keyed").text
        assert len(api.images(IMAGE_MODEL, "keyed", size="256x256")) == 1
        assert "llama-3.3-70b" in [m.id for m in api.models()]
    assert wallet.balances() == before
    assert wallet.new_payments() == []
    assert wallet.api.stats.payment_required == 0


def test_models_are_free(wallet: Wallet) -> None:
    with _client(wallet) as api:
        models = api.models()
    assert {m.type for m in models} == {"text", "image"}
    assert wallet.new_payments() == []
