"""Optional keywords taken as ``**options`` are checked at run time, as a signature would be.

A misspelt or retired keyword (``socket=`` on a payer, which now takes
``walletd=WalletdSettings(...)``) must raise TypeError before anything is sent,
never be ignored.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from walletd.client import (
    AsyncClusterClient,
    AsyncWalletClient,
    ClusterClient,
    WalletClient,
    WalletdSettings,
    async_http_client,
    http_client,
    openai_http_client,
)

BASE = "http://api.test/v1"


def _never(request: httpx.Request) -> httpx.Response:
    raise AssertionError(f"sent {request.url}")


def test_a_payer_refuses_the_old_connection_keywords() -> None:
    with pytest.raises(TypeError, match="'socket'"):
        http_client(BASE, socket="/run/walletd.sock")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'token_file'"):
        async_http_client(BASE, token_file="svc.token")  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'prepay'"):
        openai_http_client(BASE, prepay=True)  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="'labels'"):
        ClusterClient(BASE, labels={"app": "a"})  # type: ignore[call-arg]


def test_a_misspelt_chat_or_image_option_is_refused_before_sending() -> None:
    transport = httpx.MockTransport(_never)
    with ClusterClient(BASE, api_key="k", transport=transport) as api:
        with pytest.raises(TypeError, match="chat\\(\\) got an unexpected keyword argument"):
            api.chat("m", "hi", max_token=5)  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="'sizes'"):
            api.images("m", "a cat", sizes="1x1")  # type: ignore[call-arg]

    async def run() -> None:
        async with AsyncClusterClient(BASE, api_key="k", transport=transport) as api:
            await api.chat_stream("m", "hi", temprature=0.1)  # type: ignore[call-arg]

    with pytest.raises(TypeError, match="'temprature'"):
        asyncio.run(run())


def test_a_misspelt_pay_or_report_option_is_refused_before_calling() -> None:
    with WalletClient(target="unix:///nonexistent/walletd.sock", timeout=0.1) as wallet:
        with pytest.raises(TypeError, match="pay\\(\\) got an unexpected keyword argument"):
            wallet.pay("k", "GET", "http://x", payment_requried="h")  # type: ignore[call-arg]
        with pytest.raises(TypeError, match="'groupby'"):
            wallet.get_spend_report(groupby=["model"])  # type: ignore[call-arg]

    async def run() -> None:
        async with AsyncWalletClient(target="unix:///nonexistent/walletd.sock") as wallet:
            await wallet.pay("k", "GET", "http://x", label={})  # type: ignore[call-arg]

    with pytest.raises(TypeError, match="'label'"):
        asyncio.run(run())


def test_settings_are_a_frozen_value() -> None:
    settings = WalletdSettings(socket="/s", token="secret", labels={"app": "a"})
    assert settings == WalletdSettings(socket="/s", token="secret", labels={"app": "a"})
    assert "secret" not in repr(settings)
    with pytest.raises(AttributeError):
        settings.prepay = True  # type: ignore[misc]
    with pytest.raises(TypeError):
        settings.labels["app"] = "b"  # type: ignore[index]
