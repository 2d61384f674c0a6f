"""Every client entry point takes its socket and token file as ``str`` or ``os.PathLike``.

The payers take them in a ``WalletdSettings``; ``WalletClient`` takes them as arguments.

Each test pays one real request (or reads the budget) through the module's
daemon with the paths given as plain strings, and one more with a PathLike
that is not a ``pathlib.Path``: a path given the way most callers write it
must never end in ``AttributeError``.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from typing import Any

import httpx
import openai
import pytest

from tests.client.conftest import CHAT_MODEL, CHAT_PRICE, Wallet
from walletd.client import (
    AsyncClusterClient,
    AsyncWalletClient,
    ClusterClient,
    WalletClient,
    WalletdAuth,
    WalletdSettings,
    async_http_client,
    async_openai_http_client,
    async_walletd_openai,
    http_client,
    openai_http_client,
    payment_attempt,
    walletd_openai,
)

CHAT_BODY = {"model": CHAT_MODEL, "messages": [{"role": "user", "content": "hi"}]}
VENICE = {"provider": "venice"}


class FsPath:
    """An ``os.PathLike`` that is not a ``pathlib.Path`` (as some frameworks hand out)."""

    def __init__(self, path: os.PathLike[str]) -> None:
        self._path = os.fspath(path)

    def __fspath__(self) -> str:
        return self._path


def _as_str(wallet: Wallet) -> dict[str, Any]:
    return {"socket": str(wallet.socket), "token_file": str(wallet.token_file)}


def _as_pathlike(wallet: Wallet) -> dict[str, Any]:
    return {"socket": FsPath(wallet.socket), "token_file": FsPath(wallet.token_file)}


def _str_settings(wallet: Wallet) -> WalletdSettings:
    return WalletdSettings(**_as_str(wallet))


PATH_FORMS = [pytest.param(_as_str, id="str"), pytest.param(_as_pathlike, id="pathlike")]
PathForm = Callable[[Wallet], dict[str, Any]]


@pytest.mark.parametrize("paths", PATH_FORMS)
def test_wallet_client_takes_str_and_pathlike_paths(wallet: Wallet, paths: PathForm) -> None:
    with WalletClient(**paths(wallet), timeout=30) as client:
        assert client.get_budget().client == "svc"


@pytest.mark.parametrize("paths", PATH_FORMS)
def test_async_wallet_client_takes_str_and_pathlike_paths(wallet: Wallet, paths: PathForm) -> None:
    async def run() -> str:
        async with AsyncWalletClient(**paths(wallet), timeout=30) as client:
            return (await client.get_budget()).client

    assert asyncio.run(run()) == "svc"


@pytest.mark.parametrize("paths", PATH_FORMS)
def test_cluster_client_takes_str_and_pathlike_paths(wallet: Wallet, paths: PathForm) -> None:
    with ClusterClient(wallet.api.url("/v1"), walletd=WalletdSettings(**paths(wallet))) as api:
        result = api.chat(CHAT_MODEL, "hello")
    assert result.payment is not None
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE]


def test_async_cluster_client_takes_str_paths(wallet: Wallet) -> None:
    async def run() -> None:
        async with AsyncClusterClient(wallet.api.url("/v1"), walletd=_str_settings(wallet)) as api:
            await api.chat(CHAT_MODEL, "hello")

    asyncio.run(run())
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE]


def test_walletd_auth_takes_str_paths(wallet: Wallet) -> None:
    auth = WalletdAuth(walletd=_str_settings(wallet), client_follows_redirects=False)
    with httpx.Client(auth=auth, follow_redirects=False, timeout=30) as http:
        response = http.post(wallet.api.url("/v1/chat/completions"), json=CHAT_BODY)
    auth.close()
    assert response.status_code == 200
    assert payment_attempt(response) is not None


def test_http_client_takes_str_paths(wallet: Wallet) -> None:
    with http_client(wallet.api.base_url, walletd=_str_settings(wallet)) as http:
        response = http.post("/v1/chat/completions", json=CHAT_BODY)
    assert response.status_code == 200
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE]


def test_async_http_client_takes_str_paths(wallet: Wallet) -> None:
    async def run() -> int:
        async with async_http_client(wallet.api.base_url, walletd=_str_settings(wallet)) as http:
            return (await http.post("/v1/chat/completions", json=CHAT_BODY)).status_code

    assert asyncio.run(run()) == 200
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE]


def test_openai_http_clients_take_str_paths(wallet: Wallet) -> None:
    http = openai_http_client(wallet.api.base_url, walletd=_str_settings(wallet))
    with openai.OpenAI(base_url=wallet.api.url("/v1"), api_key="x402", http_client=http) as sdk:
        sdk.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=VENICE
        )

    async def run() -> None:
        ahttp = async_openai_http_client(wallet.api.base_url, walletd=_str_settings(wallet))
        async with openai.AsyncOpenAI(
            base_url=wallet.api.url("/v1"), api_key="x402", http_client=ahttp
        ) as asdk:
            await asdk.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=VENICE
            )

    asyncio.run(run())
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE, CHAT_PRICE]


def test_walletd_openai_helpers_take_str_paths(wallet: Wallet) -> None:
    with walletd_openai(wallet.api.url("/v1"), walletd=_str_settings(wallet)) as sdk:
        sdk.chat.completions.create(
            model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=VENICE
        )

    async def run() -> None:
        async with async_walletd_openai(
            wallet.api.url("/v1"), walletd=_str_settings(wallet)
        ) as asdk:
            await asdk.chat.completions.create(
                model=CHAT_MODEL, messages=[{"role": "user", "content": "hi"}], extra_body=VENICE
            )

    asyncio.run(run())
    assert [r.amount for r in wallet.new_payments()] == [CHAT_PRICE, CHAT_PRICE]


def test_token_file_env_value_is_read_as_a_path(
    wallet: Wallet, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WALLETD_TOKEN_FILE", str(wallet.token_file))
    with WalletClient(socket=str(wallet.socket), timeout=30) as client:
        assert client.get_budget().client == "svc"
