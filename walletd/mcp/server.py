"""Run ``walletd mcp``: the gateway or the proxy, over stdio or streamable HTTP on loopback.

stdio is what MCP hosts (Claude Desktop, Claude Code, Cursor) start; stdout then
carries the protocol only, and anything walletd says goes to stderr. ``--http``
serves the SDK's streamable HTTP app with uvicorn on a socket bound here, to a
loopback address only (the tools spend money: nobody else on the network may call
them), with the SDK's DNS-rebinding protection on.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mcp.server.fastmcp import FastMCP
from mcp.server.transport_security import TransportSecuritySettings

from walletd.client import WalletdSettings
from walletd.errors import InvalidRequestError
from walletd.mcp.gateway import Gateway, GatewayOptions, add_gateway_tools

SERVER_NAME = "walletd"
INSTRUCTIONS = (
    "Tools that spend money through walletd within this agent's budgets. Every paid result "
    "says what was paid; a refusal names the reason and the limit in USD. Check "
    "wallet_budget before costly work."
)
MCP_PATH = "/mcp"


@dataclass(frozen=True)
class HttpAddress:
    """Where ``--http`` listens: a loopback IP literal (or ``localhost``) and a port."""

    host: str
    port: int

    @classmethod
    def parse(cls, value: str) -> HttpAddress:
        """``HOST:PORT`` (``[::1]:PORT`` for IPv6); refuses a host that is not loopback."""
        host, sep, port = value.rpartition(":")
        host = host.removeprefix("[").removesuffix("]")
        if not sep or not host or not port.isdigit() or int(port) > 65535:
            raise InvalidRequestError(f"--http {value!r} is not HOST:PORT", {"field": "http"})
        if host != "localhost":
            try:
                loopback = ipaddress.ip_address(host).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise InvalidRequestError(
                    f"--http host {host!r} is not a loopback address (127.0.0.1, ::1 or "
                    "localhost): the tools spend money, so only this machine may call them",
                    {"field": "http", "host": host},
                )
        return cls(host, int(port))

    def bind(self) -> socket.socket:
        """A socket bound to this address (``localhost`` binds 127.0.0.1)."""
        host = "127.0.0.1" if self.host == "localhost" else self.host
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_STREAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind((host, self.port))
        except OSError as exc:
            sock.close()
            raise InvalidRequestError(
                f"cannot listen on {self.host}:{self.port}: {exc.strerror}", {"field": "http"}
            ) from None
        return sock


S = TypeVar("S", bound=FastMCP[Any])


def new_server(
    name: str = SERVER_NAME,
    instructions: str = INSTRUCTIONS,
    cls: type[S] = FastMCP,  # type: ignore[assignment]
) -> S:
    """A FastMCP server (of class ``cls``) logging warnings only (to stderr), loopback only."""
    security = TransportSecuritySettings(
        enable_dns_rebinding_protection=True,
        allowed_hosts=["127.0.0.1:*", "localhost:*", "[::1]:*"],
        allowed_origins=["http://127.0.0.1:*", "http://localhost:*", "http://[::1]:*"],
    )
    return cls(
        name, instructions, log_level="WARNING", transport_security=security,
        streamable_http_path=MCP_PATH,
    )  # fmt: skip


async def serve(
    server: FastMCP[Any], http: HttpAddress | None, on_listening: Callable[[str], None]
) -> None:
    """Serve ``server`` on stdio, or on ``http`` until cancelled."""
    if http is None:
        on_listening("stdio")
        await server.run_stdio_async()
        return
    import uvicorn

    sock = http.bind()
    try:
        config = uvicorn.Config(
            server.streamable_http_app(), log_level="warning", access_log=False,
            lifespan="on", timeout_graceful_shutdown=2,
        )  # fmt: skip
        bound_host, bound_port = sock.getsockname()[:2]
        shown = f"[{bound_host}]" if ":" in bound_host else bound_host
        runner = uvicorn.Server(config)
        announce = _announce_when_started(runner, f"http://{shown}:{bound_port}{MCP_PATH}")
        await _with_announcement(runner.serve(sockets=[sock]), announce, on_listening)
    finally:
        sock.close()


def _announce_when_started(runner: Any, url: str) -> Callable[[], str | None]:
    return lambda: url if runner.started else None


async def _with_announcement(
    serving: Any, ready: Callable[[], str | None], on_listening: Callable[[str], None]
) -> None:
    """Run ``serving``; call ``on_listening`` once the server accepts."""
    import anyio

    async def watch() -> None:
        while (url := ready()) is None:
            await anyio.sleep(0.01)
        on_listening(url)

    async with anyio.create_task_group() as group:
        group.start_soon(watch)
        await serving
        group.cancel_scope.cancel()


async def run_gateway(
    settings: WalletdSettings,
    options: GatewayOptions,
    http: HttpAddress | None,
    on_listening: Callable[[str], None],
) -> None:
    """Serve the gateway tools until the host closes stdio (or the HTTP server stops)."""
    server: FastMCP[Any] = new_server()
    gateway = Gateway(settings, options)
    try:
        add_gateway_tools(server, gateway)
        await serve(server, http, on_listening)
    finally:
        await gateway.aclose()
