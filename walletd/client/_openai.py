"""The official openai SDK (2.x, on httpx) paying through walletd.

Two things the SDK does that cost money unless handled:

* It retries 408/409/429/5xx, timeouts and *any* exception that is not an
  ``OpenAIError``, and each retry builds a new request. With a key generated
  per request, a retry after a paid attempt would sign a second payment. So
  :func:`walletd_openai` turns on the SDK's own idempotency key (one per
  ``create()`` call, reused by its retries) and sends it as ``Idempotency-Key``,
  which the auth flow passes to walletd's Pay.
* It would retry a walletd refusal three times and then report it as an
  ``APIConnectionError``. :func:`wrap_walletd_error` turns a refusal into
  :class:`WalletdPaymentError`, an ``OpenAIError`` the SDK re-raises at once.

This module imports ``openai``; ``walletd.client`` loads it only on demand.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import httpx
import openai

from walletd.client._auth import IDEMPOTENCY_HEADER
from walletd.client._http import DEFAULT_TIMEOUT, async_openai_http_client, openai_http_client
from walletd.client._wallet import AsyncWalletClient, PathArg, WalletClient
from walletd.errors import WalletdError

PLACEHOLDER_API_KEY = "x402"


class WalletdPaymentError(openai.OpenAIError):
    """walletd refused or failed to pay; ``.error`` (and ``__cause__``) is the walletd error."""

    def __init__(self, error: WalletdError) -> None:
        super().__init__(f"walletd: {error.reason}: {error.message}")
        self.error = error


def wrap_walletd_error(error: WalletdError) -> Exception:
    """The exception the auth flow raises for ``error`` under the openai SDK."""
    return WalletdPaymentError(error)


def _enable_idempotency(client: openai.OpenAI | openai.AsyncOpenAI) -> None:
    """Send the SDK's per-call key (``stainless-python-retry-<uuid>``) as Idempotency-Key.

    ``_idempotency_header`` is the SDK's documented-in-code hook for this
    (OpenAI sets it to None); pinned ``openai>=2.54,<3`` and tested.
    """
    client._idempotency_header = IDEMPOTENCY_HEADER


def walletd_openai(
    base_url: str,
    *,
    prepay: bool = False,
    wallet: WalletClient | None = None,
    socket: PathArg | None = None,
    token: str | None = None,
    token_file: PathArg | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
    **kwargs: Any,
) -> openai.OpenAI:
    """``openai.OpenAI`` whose requests walletd pays; ``kwargs`` go to the SDK."""
    http = openai_http_client(
        base_url,
        prepay=prepay,
        wallet=wallet,
        socket=socket,
        token=token,
        token_file=token_file,
        labels=labels,
        timeout=timeout,
        transport=transport,
    )
    client = openai.OpenAI(
        base_url=base_url, api_key=PLACEHOLDER_API_KEY, http_client=http, **kwargs
    )
    _enable_idempotency(client)
    return client


def async_walletd_openai(
    base_url: str,
    *,
    prepay: bool = False,
    wallet: AsyncWalletClient | None = None,
    socket: PathArg | None = None,
    token: str | None = None,
    token_file: PathArg | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
    **kwargs: Any,
) -> openai.AsyncOpenAI:
    """``openai.AsyncOpenAI`` whose requests walletd pays; ``kwargs`` go to the SDK."""
    http = async_openai_http_client(
        base_url,
        prepay=prepay,
        wallet=wallet,
        socket=socket,
        token=token,
        token_file=token_file,
        labels=labels,
        timeout=timeout,
        transport=transport,
    )
    client = openai.AsyncOpenAI(
        base_url=base_url, api_key=PLACEHOLDER_API_KEY, http_client=http, **kwargs
    )
    _enable_idempotency(client)
    return client
