"""Every paid API call is recorded with its model and route, so reports can group by model.

Chat, streamed chat and images through ClusterClient, ``walletd chat``, and the
openai SDK helpers each leave ``model=...`` and ``route=/v1/...`` on the ledger
row; labels the caller gives are merged on top and win.
"""

from __future__ import annotations

import asyncio

from tests.client.conftest import CHAT_MODEL, IMAGE_MODEL, Wallet
from tests.client.test_cli_api import walletd
from walletd.client import (
    AsyncClusterClient,
    ClusterClient,
    async_walletd_openai,
    http_client,
    walletd_openai,
)

CHAT = {"route": "/v1/chat/completions", "model": CHAT_MODEL}
IMAGES = {"route": "/v1/images/generations", "model": IMAGE_MODEL}
VENICE = {"provider": "venice"}
MESSAGES = [{"role": "user", "content": "label me"}]


def _labels(wallet: Wallet) -> list[dict[str, str]]:
    return [dict(row.labels) for row in wallet.new_payments()]


def test_cluster_client_labels_chat_stream_and_images_with_model_and_route(
    wallet: Wallet,
) -> None:
    with ClusterClient(wallet.api.url("/v1"), walletd=wallet.settings()) as api:
        api.chat(CHAT_MODEL, "hello")
        with api.chat_stream(CHAT_MODEL, "hello", max_tokens=5) as stream:
            "".join(stream)
        api.images_result(IMAGE_MODEL, "a lighthouse", size="256x256")
    assert _labels(wallet) == [CHAT, CHAT, IMAGES]


def test_async_cluster_client_labels_chat_with_model_and_route(wallet: Wallet) -> None:
    async def run() -> None:
        async with AsyncClusterClient(wallet.api.url("/v1"), walletd=wallet.settings()) as api:
            await api.chat(CHAT_MODEL, "hello")
            await api.images(IMAGE_MODEL, "a lighthouse", size="256x256")

    asyncio.run(run())
    assert _labels(wallet) == [CHAT, IMAGES]


def test_caller_labels_merge_with_model_and_route_and_win(wallet: Wallet) -> None:
    given = {"app": "billing", "model": "my-own-name"}
    with ClusterClient(wallet.api.url("/v1"), walletd=wallet.settings(labels=given)) as api:
        api.chat(CHAT_MODEL, "hello")
    assert _labels(wallet) == [{"route": "/v1/chat/completions", **given}]


def test_per_request_labels_win_over_the_clients(wallet: Wallet) -> None:
    with http_client(
        wallet.api.base_url,
        walletd=wallet.settings(labels={"app": "a", "team": "t"}),
    ) as http:
        response = http.post(
            "/v1/chat/completions",
            json={"model": CHAT_MODEL, "messages": MESSAGES},
            extensions={"walletd.labels": {"app": "b"}},
        )
    assert response.status_code == 200
    assert _labels(wallet) == [{**CHAT, "app": "b", "team": "t"}]


def test_walletd_chat_cli_records_the_model(wallet: Wallet) -> None:
    walletd(wallet, "chat", "--base-url", wallet.api.base_url, "--model", CHAT_MODEL, "hello")
    assert _labels(wallet) == [CHAT]


def test_openai_sdk_helpers_record_the_model_from_the_body(wallet: Wallet) -> None:
    with walletd_openai(wallet.api.url("/v1"), walletd=wallet.settings()) as sdk:
        sdk.chat.completions.create(model=CHAT_MODEL, messages=MESSAGES, extra_body=VENICE)
        stream = sdk.chat.completions.create(
            model=CHAT_MODEL, messages=MESSAGES, stream=True, extra_body=VENICE
        )
        "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        sdk.images.generate(model=IMAGE_MODEL, prompt="x", size="256x256", extra_body=VENICE)

    async def run() -> None:
        async with async_walletd_openai(wallet.api.url("/v1"), walletd=wallet.settings()) as asdk:
            await asdk.chat.completions.create(
                model=CHAT_MODEL, messages=MESSAGES, extra_body=VENICE
            )

    asyncio.run(run())
    assert _labels(wallet) == [CHAT, CHAT, IMAGES, CHAT]


def test_spend_report_groups_by_the_recorded_model(wallet: Wallet) -> None:
    with ClusterClient(wallet.api.url("/v1"), walletd=wallet.settings()) as api:
        api.chat(CHAT_MODEL, "hello")
        api.images(IMAGE_MODEL, "a lighthouse", size="256x256")
    with wallet.client() as client:
        report = client.get_spend_report(group_by=["model"])
    keys = {row.key for row in report.rows}
    assert {(CHAT_MODEL,), (IMAGE_MODEL,)} <= keys
    assert ("",) not in keys  # "(none)": every payment of this module went through the client
