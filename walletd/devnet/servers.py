"""Run the devnet's HTTP servers in background threads, and the whole devnet in one object.

* :func:`serve_in_thread` runs any ASGI app under uvicorn on 127.0.0.1. It binds port 0
  itself and hands uvicorn the bound socket, so the port is known before the server starts
  and no other process can take it in between (no "find a free port, then bind" race).
* :func:`paid_api` starts the facilitator and the paid API against an existing node; the
  test fixtures use it with the session's anvil.
* :class:`Devnet` adds the node: anvil, test USDC at Base's address, facilitator, API, and
  the paid MCP server (:mod:`walletd.devnet.mcp_server`) beside the API.

Roles (anvil's public dev accounts, local chains only): account 0 deploys and mints the
token (see :mod:`walletd.devnet.chain`), account 1 is the facilitator and pays gas,
account 3 receives payments unless ``pay_to`` says otherwise.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from types import TracebackType
from typing import TYPE_CHECKING

import uvicorn
from eth_account.signers.local import LocalAccount
from fastapi import FastAPI
from starlette.types import ASGIApp
from web3 import Web3

from walletd.devnet.api import ApiSettings, ApiStats, Faults, api_faults, api_stats, create_api_app
from walletd.devnet.chain import Anvil, connect, dev_account, install_permit2, install_usdc
from walletd.devnet.facilitator import create_facilitator_app

if TYPE_CHECKING:
    from walletd.devnet.mcp_server import PaidMcpServer

__all__ = [
    "FACILITATOR_ACCOUNT_INDEX",
    "PAY_TO_ACCOUNT_INDEX",
    "Devnet",
    "PaidApi",
    "RunningServer",
    "paid_api",
    "serve_in_thread",
]

FACILITATOR_ACCOUNT_INDEX = 1
PAY_TO_ACCOUNT_INDEX = 3
_LOOPBACK = "127.0.0.1"


@dataclass
class RunningServer:
    """A uvicorn server running in a daemon thread; ``stop()`` shuts it down and joins."""

    url: str
    _server: uvicorn.Server
    _thread: threading.Thread
    _socket: socket.socket

    def stop(self, timeout: float = 10.0) -> None:
        """Ask uvicorn to exit, wait for the thread, and release the socket."""
        self._server.should_exit = True
        self._thread.join(timeout)
        self._socket.close()
        if self._thread.is_alive():
            raise RuntimeError(f"server at {self.url} did not stop within {timeout}s")


def _bound_socket() -> socket.socket:
    """A TCP socket bound to a free loopback port (uvicorn listens on it)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((_LOOPBACK, 0))
    except OSError:
        sock.close()
        raise
    return sock


def serve_in_thread(app: ASGIApp, *, startup_timeout: float = 10.0) -> RunningServer:
    """Serve ``app`` on a free 127.0.0.1 port from a daemon thread; returns once it accepts.

    uvicorn only installs signal handlers on the main thread, so this leaves the caller's
    Ctrl-C handling alone. Access logs are off: tests and the CLI print what matters.
    """
    sock = _bound_socket()
    config = uvicorn.Config(
        app,
        log_level="warning",
        access_log=False,
        http="h11",
        ws="none",
        lifespan="on",
        timeout_graceful_shutdown=2,
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="devnet-uvicorn", daemon=True
    )
    port = sock.getsockname()[1]
    running = RunningServer(f"http://{_LOOPBACK}:{port}", server, thread, sock)
    thread.start()
    _await_started(running, time.monotonic() + startup_timeout)
    return running


def _await_started(running: RunningServer, deadline: float) -> None:
    """Poll uvicorn's ``started`` flag; clean up and raise if it dies or times out."""
    while not running._server.started:
        if not running._thread.is_alive() or time.monotonic() > deadline:
            running.stop()
            raise RuntimeError(f"uvicorn did not start serving {running.url}")
        time.sleep(0.005)


@dataclass(frozen=True)
class PaidApi:
    """The facilitator and paid API servers, plus the API's in-process hooks."""

    api: RunningServer
    facilitator: RunningServer
    settings: ApiSettings
    stats: ApiStats
    faults: Faults
    facilitator_address: str

    @property
    def base_url(self) -> str:
        """The API's root URL (``/v1/...`` lives under it)."""
        return self.api.url

    @property
    def facilitator_url(self) -> str:
        """The facilitator's root URL."""
        return self.facilitator.url

    @property
    def pay_to(self) -> str:
        """Where payments go."""
        return self.settings.pay_to


@contextmanager
def paid_api(
    rpc_url: str,
    *,
    facilitator_account: LocalAccount | None = None,
    pay_to: str | None = None,
    api_keys: Iterable[str] = (),
) -> Iterator[PaidApi]:
    """Facilitator + paid API against the node at ``rpc_url`` (USDC must be installed)."""
    signer = facilitator_account or dev_account(FACILITATOR_ACCOUNT_INDEX)
    with ExitStack() as stack:
        facilitator = serve_in_thread(create_facilitator_app(rpc_url, signer))
        stack.callback(facilitator.stop)
        settings = ApiSettings(
            facilitator_url=facilitator.url,
            pay_to=pay_to or dev_account(PAY_TO_ACCOUNT_INDEX).address,
            api_keys=frozenset(api_keys),
        )
        app: FastAPI = create_api_app(settings)
        api = serve_in_thread(app)
        stack.callback(api.stop)
        yield PaidApi(api, facilitator, settings, api_stats(app), api_faults(app), signer.address)


class Devnet:
    """Everything walletd pays against, on loopback: anvil, USDC, facilitator, paid API, MCP.

    Use as a context manager; leaving it stops the servers and then anvil. Attributes are
    available while entered: ``anvil``, ``rpc_url``, ``w3``, ``api`` (a :class:`PaidApi`),
    ``mcp`` (the paid MCP server, paying the same ``pay_to`` through the same facilitator).
    """

    def __init__(self, *, pay_to: str | None = None, api_keys: Iterable[str] = ()) -> None:
        self._pay_to = pay_to
        self._api_keys = tuple(api_keys)
        self._stack = ExitStack()
        self._anvil: Anvil | None = None
        self._w3: Web3 | None = None
        self._api: PaidApi | None = None
        self._mcp: PaidMcpServer | None = None

    def __enter__(self) -> Devnet:
        try:
            self._anvil = self._stack.enter_context(Anvil())
            self._w3 = connect(self._anvil.rpc_url)
            install_usdc(self._w3)
            install_permit2(self._w3)
            self._api = self._stack.enter_context(
                paid_api(self._anvil.rpc_url, pay_to=self._pay_to, api_keys=self._api_keys)
            )
            from walletd.devnet.mcp_server import paid_mcp_server  # it imports this module

            self._mcp = self._stack.enter_context(
                paid_mcp_server(self._api.facilitator_url, self._api.pay_to)
            )
        except BaseException:
            self._stack.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stack.close()
        self._anvil = self._w3 = self._api = self._mcp = None

    @property
    def anvil(self) -> Anvil:
        """The running node."""
        if self._anvil is None:
            raise RuntimeError("the devnet is not running")
        return self._anvil

    @property
    def rpc_url(self) -> str:
        """The node's JSON-RPC URL."""
        return self.anvil.rpc_url

    @property
    def w3(self) -> Web3:
        """A web3 client for the node."""
        if self._w3 is None:
            raise RuntimeError("the devnet is not running")
        return self._w3

    @property
    def api(self) -> PaidApi:
        """The running facilitator + paid API."""
        if self._api is None:
            raise RuntimeError("the devnet is not running")
        return self._api

    @property
    def mcp(self) -> PaidMcpServer:
        """The running paid MCP server."""
        if self._mcp is None:
            raise RuntimeError("the devnet is not running")
        return self._mcp
