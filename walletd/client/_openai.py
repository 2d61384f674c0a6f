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

from typing import Any, TypeVar

import openai

from walletd.client._auth import IDEMPOTENCY_HEADER
from walletd.client._http import HttpOptions, async_openai_http_client, openai_http_client
from walletd.client._settings import WalletdSettings
from walletd.errors import WalletdError

PLACEHOLDER_API_KEY = "x402"
SDK = TypeVar("SDK", openai.OpenAI, openai.AsyncOpenAI)


class WalletdPaymentError(openai.OpenAIError):
    """walletd refused or failed to pay; ``.error`` (and ``__cause__``) is the walletd error."""

    def __init__(self, error: WalletdError) -> None:
        super().__init__(f"walletd: {error.reason}: {error.message}")
        self.error = error


def wrap_walletd_error(error: WalletdError) -> Exception:
    """The exception the auth flow raises for ``error`` under the openai SDK."""
    return WalletdPaymentError(error)


def _idempotent(client: SDK) -> SDK:
    """Send the SDK's per-call key (``stainless-python-retry-<uuid>``) as Idempotency-Key.

    ``_idempotency_header`` is the SDK's documented-in-code hook for this
    (OpenAI sets it to None); pinned ``openai>=2.54,<3`` and tested.
    """
    client._idempotency_header = IDEMPOTENCY_HEADER
    return client


def walletd_openai(
    base_url: str, *, walletd: WalletdSettings | None = None, **kwargs: Any
) -> openai.OpenAI:
    """``openai.OpenAI`` whose requests walletd pays.

    ``kwargs`` named in :class:`HttpOptions` (``wallet``, ``timeout``,
    ``transport``, ``auth``) go to the http client, the rest to the SDK.
    """
    http, sdk = _split(kwargs)
    http_client = openai_http_client(base_url, walletd=walletd, **http)
    return _idempotent(openai.OpenAI(**_sdk_options(base_url, http_client, sdk)))


def async_walletd_openai(
    base_url: str, *, walletd: WalletdSettings | None = None, **kwargs: Any
) -> openai.AsyncOpenAI:
    """``openai.AsyncOpenAI`` whose requests walletd pays; see :func:`walletd_openai`."""
    http, sdk = _split(kwargs)
    client = async_openai_http_client(base_url, walletd=walletd, **http)
    return _idempotent(openai.AsyncOpenAI(**_sdk_options(base_url, client, sdk)))


def _split(kwargs: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The keyword arguments of the http client, and those of the SDK."""
    http = {k: v for k, v in kwargs.items() if k in HttpOptions.__annotations__}
    return http, {k: v for k, v in kwargs.items() if k not in http}


def _sdk_options(base_url: str, http_client: Any, sdk: dict[str, Any]) -> dict[str, Any]:
    return {"base_url": base_url, "api_key": PLACEHOLDER_API_KEY, "http_client": http_client, **sdk}
