"""The official openai SDK (2.x) pays through walletd: sync, async, streaming, images, retries."""

from __future__ import annotations

import asyncio
import base64

import openai
import pytest
from openai.types.chat import ChatCompletionMessageParam

from tests.client.conftest import CHAT_MODEL, CHAT_PRICE, IMAGE_MODEL, IMAGE_PRICE, Wallet
from walletd.client import (
    async_openai_http_client,
    async_walletd_openai,
    openai_http_client,
    walletd_openai,
)
from walletd.devnet.api import CHAT_ROUTE, PNG_SIGNATURE

VENICE = {"provider": "venice"}
MESSAGES: list[ChatCompletionMessageParam] = [{"role": "user", "content": "hello from the sdk"}]


def test_openai_version_is_the_pinned_httpx_line() -> None:
    assert openai.__version__.startswith("2.")


def test_sync_sdk_with_the_http_client_helper_pays_once(wallet: Wallet) -> None:
    http = openai_http_client(wallet.api.base_url, walletd=wallet.settings())
    client = openai.OpenAI(base_url=wallet.api.url("/v1"), api_key="x402", http_client=http)
    before = wallet.balances()
    with client:
        reply = client.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, max_tokens=40, extra_body=VENICE
        )
    assert (reply.choices[0].message.content or "").startswith("Devnet reply to:")
    after = wallet.balances()
    assert (before[0] - after[0], after[1] - before[1]) == (CHAT_PRICE, CHAT_PRICE)
    (row,) = wallet.new_payments()
    assert (row.amount, row.payee.lower()) == (CHAT_PRICE, wallet.api.pay_to.lower())
    # The placeholder api_key never reached the server (it would have been an API-key request).
    assert wallet.api.stats.route(CHAT_ROUTE).with_api_key == 0


def test_sync_sdk_streaming_and_images_each_pay_once(wallet: Wallet) -> None:
    before = wallet.balances()
    with walletd_openai(wallet.api.url("/v1"), walletd=wallet.settings()) as client:
        stream = client.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_body=VENICE
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        images = client.images.generate(
            model=IMAGE_MODEL, prompt="a lighthouse", n=1, size="256x256", extra_body=VENICE
        )
    assert text.startswith("Devnet reply to:")
    assert base64.b64decode(images.data[0].b64_json).startswith(PNG_SIGNATURE)
    assert before[0] - wallet.balances()[0] == CHAT_PRICE + IMAGE_PRICE
    assert sorted(r.amount for r in wallet.new_payments()) == [CHAT_PRICE, IMAGE_PRICE]
    assert len(wallet.api.stats.transactions) == 2


def test_async_sdk_plain_and_streaming_pay_once_each(wallet: Wallet) -> None:
    async def run() -> tuple[str, str]:
        http = async_openai_http_client(wallet.api.base_url, walletd=wallet.settings())
        async with openai.AsyncOpenAI(
            base_url=wallet.api.url("/v1"), api_key="x402", http_client=http
        ) as client:
            plain = await client.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, extra_body=VENICE
            )
            stream = await client.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_body=VENICE
            )
            parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
            return plain.choices[0].message.content or "", "".join(parts)

    before = wallet.balances()
    plain, streamed = asyncio.run(run())
    assert plain == streamed
    assert before[0] - wallet.balances()[0] == 2 * CHAT_PRICE
    assert len(wallet.new_payments()) == 2


def test_async_helper_constructor_works(wallet: Wallet) -> None:
    async def run() -> str:
        async with async_walletd_openai(wallet.api.url("/v1"), walletd=wallet.settings()) as client:
            reply = await client.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, extra_body=VENICE
            )
            return reply.choices[0].message.content or ""

    assert asyncio.run(run())
    assert len(wallet.new_payments()) == 1


def test_sdk_retry_after_a_settled_503_never_settles_twice(wallet: Wallet) -> None:
    wallet.api.faults.fail_after_settle_status = 503
    before = wallet.balances()
    with (
        walletd_openai(wallet.api.url("/v1"), walletd=wallet.settings(), max_retries=2) as client,
        pytest.raises(openai.APIStatusError) as info,
    ):
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, extra_body=VENICE)
    # The SDK retried with its per-call key: the same authorization went out again and
    # the server refused the replay (402), instead of a second payment being signed.
    assert info.value.status_code == 402
    assert wallet.api.stats.route(CHAT_ROUTE).with_payment_header == 2
    assert before[0] - wallet.balances()[0] == CHAT_PRICE
    assert len(wallet.api.stats.transactions) == 1
    assert len(wallet.new_payments()) == 1


def test_plain_sdk_does_not_retry_a_paid_503(wallet: Wallet) -> None:
    """Without a caller key the flow marks paid failures x-should-retry: false."""
    wallet.api.faults.fail_after_settle_status = 503
    http = openai_http_client(wallet.api.base_url, walletd=wallet.settings())
    with (
        openai.OpenAI(
            base_url=wallet.api.url("/v1"), api_key="x402", http_client=http, max_retries=2
        ) as client,
        pytest.raises(openai.InternalServerError),
    ):
        client.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, extra_body=VENICE)
    assert wallet.api.stats.route(CHAT_ROUTE).with_payment_header == 1
    assert len(wallet.new_payments()) == 1
