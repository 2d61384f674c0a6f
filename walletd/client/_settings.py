"""WalletdSettings: how a paying client reaches walletd, and what it asks of each payment.

Every payer in walletd.client (``WalletdAuth``, ``ClusterClient``, the httpx
and openai helpers, sync and asyncio) takes one as ``walletd=``::

    ClusterClient(url)                      # $WALLETD_SOCKET, $WALLETD_TOKEN_FILE
    ClusterClient(url, walletd=WalletdSettings(token_file="svc.token", labels={"app": "a"}))

It is a value: frozen, comparable, safe to share between clients and threads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from walletd.client._wallet import AsyncWalletClient, PathArg, WalletClient


@dataclass(frozen=True)
class WalletdSettings:
    """The walletd side of a paying client; the defaults come from the environment."""

    socket: PathArg | None = None
    """The daemon's Unix socket (``str`` or path); None: ``$WALLETD_SOCKET``, else the default."""

    token: str | None = field(default=None, repr=False)
    """The bearer token itself; a token file is better (it stays out of code and logs)."""

    token_file: PathArg | None = None
    """The file holding the token; None: the file named by ``$WALLETD_TOKEN_FILE``."""

    labels: Mapping[str, str] = field(default_factory=dict)
    """Labels for every payment's ledger row, over each request's own ``route`` and ``model``
    (labels in a request's ``extensions["walletd.labels"]`` win over both)."""

    prepay: bool = False
    """After a route's first 402, attach a payment to its next request before sending it."""

    socket_owner: int | str | None = None
    """The uid or user name the daemon must run as; None: ``$WALLETD_SOCKET_OWNER``, else
    the owner of the socket's directory (see ``walletd.client._wallet.check_socket``)."""

    wait_for_approval: float = 0.0
    """Seconds a payment held above an approval threshold waits for a human decision before
    ``ApprovalRequiredError`` reaches the caller (approved in time: it is paid then)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def connect(self) -> WalletClient:
        """A new blocking walletd client for these settings."""
        return WalletClient(**self._connection())

    def connect_async(self) -> AsyncWalletClient:
        """A new asyncio walletd client for these settings."""
        return AsyncWalletClient(**self._connection())

    def _connection(self) -> dict[str, Any]:
        names = ("socket", "token", "token_file", "socket_owner", "wait_for_approval")
        return {name: getattr(self, name) for name in names}
