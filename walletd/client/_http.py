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

from collections.abc import Callable, Mapping

import httpx

from walletd.client._auth import WalletdAuth, async_guard_payment_header, guard_payment_header
from walletd.client._wallet import AsyncWalletClient, PathArg, WalletClient
from walletd.errors import WalletdError

DEFAULT_TIMEOUT = httpx.Timeout(120.0, connect=5.0)


def http_client(
    base_url: str | None = None,
    *,
    auth: WalletdAuth | None = None,
    prepay: bool = False,
    wallet: WalletClient | None = None,
    socket: PathArg | None = None,
    token: str | None = None,
    token_file: PathArg | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """A blocking httpx client whose requests are paid through walletd.

    ``base_url`` limits payments to its origin (and is the client's base URL).
    """
    auth = auth or WalletdAuth(
        base_url=base_url,
        prepay=prepay,
        wallet=wallet,
        socket=socket,
        token=token,
        token_file=token_file,
        labels=labels,
    )
    auth.mark_redirects_guarded()
    return httpx.Client(
        base_url=base_url or "",
        auth=auth,
        follow_redirects=False,
        timeout=timeout,
        transport=transport,
        event_hooks={"request": [guard_payment_header]},
    )


def async_http_client(
    base_url: str | None = None,
    *,
    auth: WalletdAuth | None = None,
    prepay: bool = False,
    wallet: AsyncWalletClient | None = None,
    socket: PathArg | None = None,
    token: str | None = None,
    token_file: PathArg | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """:func:`http_client` for asyncio."""
    auth = auth or WalletdAuth(
        base_url=base_url,
        prepay=prepay,
        async_wallet=wallet,
        socket=socket,
        token=token,
        token_file=token_file,
        labels=labels,
    )
    auth.mark_redirects_guarded()
    return httpx.AsyncClient(
        base_url=base_url or "",
        auth=auth,
        follow_redirects=False,
        timeout=timeout,
        transport=transport,
        event_hooks={"request": [async_guard_payment_header]},
    )


def openai_http_client(
    base_url: str | None = None,
    *,
    auth: WalletdAuth | None = None,
    prepay: bool = False,
    wallet: WalletClient | None = None,
    socket: PathArg | None = None,
    token: str | None = None,
    token_file: PathArg | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.BaseTransport | None = None,
) -> httpx.Client:
    """The ``http_client`` for ``openai.OpenAI`` (openai 2.x, built on httpx).

    The SDK sends absolute URLs, so ``base_url`` here only limits which origin
    is paid. Its placeholder ``api_key`` is stripped by the auth flow.
    """
    auth = auth or WalletdAuth(
        base_url=base_url,
        prepay=prepay,
        wallet=wallet,
        socket=socket,
        token=token,
        token_file=token_file,
        labels=labels,
        error_wrapper=_openai_error_wrapper(),
    )
    return http_client(None, auth=auth, timeout=timeout, transport=transport)


def async_openai_http_client(
    base_url: str | None = None,
    *,
    auth: WalletdAuth | None = None,
    prepay: bool = False,
    wallet: AsyncWalletClient | None = None,
    socket: PathArg | None = None,
    token: str | None = None,
    token_file: PathArg | None = None,
    labels: Mapping[str, str] | None = None,
    timeout: httpx.Timeout = DEFAULT_TIMEOUT,
    transport: httpx.AsyncBaseTransport | None = None,
) -> httpx.AsyncClient:
    """The ``http_client`` for ``openai.AsyncOpenAI``."""
    auth = auth or WalletdAuth(
        base_url=base_url,
        prepay=prepay,
        async_wallet=wallet,
        socket=socket,
        token=token,
        token_file=token_file,
        labels=labels,
        error_wrapper=_openai_error_wrapper(),
    )
    return async_http_client(None, auth=auth, timeout=timeout, transport=transport)


def _openai_error_wrapper() -> Callable[[WalletdError], Exception] | None:
    """The openai wrapper for walletd refusals when openai is installed, else None."""
    try:
        from walletd.client._openai import wrap_walletd_error
    except ImportError:  # openai not installed: plain walletd errors
        return None
    return wrap_walletd_error
