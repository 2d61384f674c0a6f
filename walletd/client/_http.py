"""httpx clients configured for paying through walletd (also the openai SDK's ``http_client``).

What they fix, and why:

* ``follow_redirects=False``: httpx strips only ``Authorization`` on a
  cross-origin redirect, so a payment header would follow a 307 to another
  host. The request hook :func:`guard_payment_header` drops it even if someone
  turns redirects on later.
* Timeouts: 120 s to read (a paid answer can take a while; a signed payment
  is valid for the demand's ``maxTimeoutSeconds``, typically minutes), 5 s to
  connect. The openai SDK's own default is 600 s.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypedDict, TypeVar, Unpack

import httpx

from walletd.client._auth import WalletdAuth, async_guard_payment_header, guard_payment_header
from walletd.client._effects import check_options
from walletd.client._settings import WalletdSettings
from walletd.client._wallet import AsyncWalletClient, WalletClient
from walletd.errors import WalletdError

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=5.0)
H = TypeVar("H", httpx.Client, httpx.AsyncClient)


class _Options(TypedDict, total=False):
    auth: WalletdAuth | None
    """A payment flow of your own; ``walletd`` and ``wallet`` are then not used."""
    walletd: WalletdSettings | None
    """The socket, token, labels and pre-pay choice (default: from the environment)."""
    timeout: httpx.Timeout
    """Default: 120 s to read, 5 s to connect."""


class HttpOptions(_Options, total=False):
    """The keyword arguments of :func:`http_client` and :func:`openai_http_client`."""

    wallet: WalletClient | None
    """A walletd client of your own (else one is opened from ``walletd`` on the first 402)."""
    transport: httpx.BaseTransport | None


class AsyncHttpOptions(_Options, total=False):
    """The keyword arguments of :func:`async_http_client` and :func:`async_openai_http_client`."""

    wallet: AsyncWalletClient | None
    transport: httpx.AsyncBaseTransport | None


def open_client(
    cls: type[H],
    base_url: str | None,
    auth: WalletdAuth | None,
    timeout: httpx.Timeout,
    transport: httpx.BaseTransport | httpx.AsyncBaseTransport | None,
) -> H:
    """An httpx client of kind ``cls`` that follows no redirect, its payments guarded."""
    options: dict[str, Any] = {"base_url": base_url or "", "transport": transport}
    if auth is not None:
        auth.mark_redirects_guarded()
        hook = async_guard_payment_header if cls is httpx.AsyncClient else guard_payment_header
        options |= {"auth": auth, "event_hooks": {"request": [hook]}}
    return cls(**options, follow_redirects=False, timeout=timeout)


def _auth(
    base_url: str | None,
    options: _Options,
    *,
    wallet: WalletClient | None = None,
    async_wallet: AsyncWalletClient | None = None,
    error_wrapper: Callable[[WalletdError], Exception] | None = None,
) -> WalletdAuth:
    """The caller's payment flow, or a new one limited to ``base_url``'s origin."""
    check_options(options, HttpOptions, "http_client")
    given = options.get("auth")
    if given is not None:
        return given
    return WalletdAuth(
        base_url=base_url,
        walletd=options.get("walletd"),
        wallet=wallet,
        async_wallet=async_wallet,
        error_wrapper=error_wrapper,
    )


def http_client(base_url: str | None = None, **options: Unpack[HttpOptions]) -> httpx.Client:
    """A blocking httpx client whose requests are paid through walletd.

    ``base_url`` limits payments to its origin (and is the client's base URL).
    """
    auth = _auth(base_url, options, wallet=options.get("wallet"))
    timeout, transport = options.get("timeout", DEFAULT_TIMEOUT), options.get("transport")
    return open_client(httpx.Client, base_url, auth, timeout, transport)


def async_http_client(
    base_url: str | None = None, **options: Unpack[AsyncHttpOptions]
) -> httpx.AsyncClient:
    """:func:`http_client` for asyncio."""
    auth = _auth(base_url, options, async_wallet=options.get("wallet"))
    timeout = options.get("timeout", DEFAULT_TIMEOUT)
    return open_client(httpx.AsyncClient, base_url, auth, timeout, options.get("transport"))


def openai_http_client(base_url: str | None = None, **options: Unpack[HttpOptions]) -> httpx.Client:
    """The ``http_client`` for ``openai.OpenAI`` (openai 2.x, built on httpx).

    The SDK sends absolute URLs, so ``base_url`` here only limits which origin
    is paid. Its placeholder ``api_key`` is stripped by the auth flow.
    """
    wrapper = _openai_error_wrapper()
    options["auth"] = _auth(base_url, options, wallet=options.get("wallet"), error_wrapper=wrapper)
    return http_client(None, **options)


def async_openai_http_client(
    base_url: str | None = None, **options: Unpack[AsyncHttpOptions]
) -> httpx.AsyncClient:
    """The ``http_client`` for ``openai.AsyncOpenAI``."""
    wallet, wrapper = options.get("wallet"), _openai_error_wrapper()
    options["auth"] = _auth(base_url, options, async_wallet=wallet, error_wrapper=wrapper)
    return async_http_client(None, **options)


def _openai_error_wrapper() -> Callable[[WalletdError], Exception] | None:
    """The openai wrapper for walletd refusals when openai is installed, else None."""
    try:
        from walletd.client._openai import wrap_walletd_error
    except ImportError:  # openai not installed: plain walletd errors
        return None
    return wrap_walletd_error
