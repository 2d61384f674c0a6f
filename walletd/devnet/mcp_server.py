"""The devnet's paid MCP server: tools paid with x402 over MCP, settled on anvil.

Built with the x402 SDK's own MCP server wrapper (``x402.mcp.create_payment_wrapper``)
on the official MCP SDK's FastMCP, so the wire format of a paid tool call is the
reference one: a call without payment answers with a payment-required result (the
PaymentRequired in ``structuredContent`` and as JSON text), a call with
``_meta["x402/payment"]`` is verified and, after the tool ran, settled through the local
facilitator (:mod:`walletd.devnet.facilitator`); the settlement comes back in
``_meta["x402/payment-response"]``.

Tools (streamable HTTP at ``<url>``, which ends in ``/mcp``):

* ``weather(city)``: $0.001, a canned forecast;
* ``research(topic)``: $0.01, a canned summary;
* ``ping()``: free.

:class:`McpStats` records each settlement (tool and transaction); :class:`McpFaults`
can make the paid tools slow (a client's read timeout runs out before the answer,
and the settlement follows anyway).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from mcp.server.fastmcp import FastMCP
from starlette.applications import Starlette
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.mcp import PaymentWrapperHooks, create_payment_wrapper
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.schemas import ResourceConfig, ResourceInfo
from x402.server import x402ResourceServer

from walletd.devnet.api.settings import BASE_NETWORK, LOOPBACK_PREFIXES
from walletd.devnet.servers import RunningServer, serve_in_thread

__all__ = [
    "MCP_PATH",
    "TOOL_PRICES",
    "McpFaults",
    "McpSettings",
    "McpStats",
    "PaidMcpServer",
    "create_mcp_app",
    "paid_mcp_server",
]

MCP_PATH = "/mcp"
TOOL_PRICES = {"weather": "$0.001", "research": "$0.01"}
"""The price of each paid tool (the free ``ping`` costs nothing)."""


@dataclass(frozen=True)
class McpSettings:
    """Where payments go and how they settle."""

    facilitator_url: str
    pay_to: str
    network: str = BASE_NETWORK
    max_timeout_seconds: int = 300

    def __post_init__(self) -> None:
        """Refuse a facilitator that is not on loopback."""
        if not self.facilitator_url.startswith(LOOPBACK_PREFIXES):
            raise ValueError(f"facilitator_url must be a loopback URL: {self.facilitator_url!r}")


@dataclass
class McpStats:
    """What the server saw: settlements as ``(tool, transaction)``, and paid tool runs."""

    settlements: list[tuple[str, str]] = field(default_factory=list)
    runs: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def settled(self, tool: str, transaction: str) -> None:
        """Record one settlement."""
        with self._lock:
            self.settlements.append((tool, transaction))

    def ran(self, tool: str) -> None:
        """Record one run of a tool."""
        with self._lock:
            self.runs[tool] = self.runs.get(tool, 0) + 1

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            self.settlements.clear()
            self.runs.clear()


@dataclass
class McpFaults:
    """Faults the tests switch on: ``delay_seconds`` before a paid tool answers."""

    delay_seconds: float = 0.0

    def reset(self) -> None:
        """Switch every fault off."""
        self.delay_seconds = 0.0


def _resource_server(settings: McpSettings) -> tuple[x402ResourceServer, HTTPFacilitatorClient]:
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=settings.facilitator_url))
    server = x402ResourceServer(facilitator)
    # As in walletd.devnet.api.paywall: the SDK's scheme class is unannotated.
    scheme: Any = ExactEvmServerScheme()  # type: ignore[no-untyped-call]
    server.register(settings.network, scheme)
    server.initialize()  # reads the facilitator's /supported: it must already listen
    return server, facilitator


def _paid(
    server: x402ResourceServer, settings: McpSettings, tool: str, stats: McpStats
) -> Callable[[Callable[..., Any]], Any]:
    """The SDK's payment decorator for ``tool`` at its price."""
    config = ResourceConfig(
        scheme="exact",
        pay_to=settings.pay_to,
        price=TOOL_PRICES[tool],
        network=settings.network,
        max_timeout_seconds=settings.max_timeout_seconds,
    )

    def after_settlement(ctx: Any) -> None:
        stats.settled(tool, str(ctx.settlement.transaction))

    wrapper: Callable[[Callable[..., Any]], Any] = create_payment_wrapper(
        server,
        accepts=server.build_payment_requirements(config),
        resource=ResourceInfo(
            url=f"mcp://tool/{tool}", description=f"devnet {tool}", mime_type="application/json"
        ),
        hooks=PaymentWrapperHooks(on_after_settlement=after_settlement),
    )
    return wrapper


def create_mcp_app(
    settings: McpSettings, stats: McpStats | None = None, faults: McpFaults | None = None
) -> Starlette:
    """The paid MCP server as an ASGI app (streamable HTTP at :data:`MCP_PATH`).

    Building it calls the facilitator's ``/supported``, so start the facilitator first.
    """
    stats = stats if stats is not None else McpStats()
    faults = faults if faults is not None else McpFaults()
    server, facilitator = _resource_server(settings)
    mcp = FastMCP(
        "walletd-devnet",
        host="127.0.0.1",
        streamable_http_path=MCP_PATH,
        log_level="WARNING",
        stateless_http=True,
    )

    async def slow() -> None:
        if faults.delay_seconds > 0:
            await asyncio.sleep(faults.delay_seconds)

    @mcp.tool(name="weather", description="Today's weather in a city ($0.001).")
    @_paid(server, settings, "weather", stats)
    async def weather(city: str) -> dict[str, Any]:
        stats.ran("weather")
        await slow()
        return {"city": city, "forecast": "sunny", "temperature_c": 21}

    @mcp.tool(name="research", description="A short research summary on a topic ($0.01).")
    @_paid(server, settings, "research", stats)
    async def research(topic: str) -> dict[str, Any]:
        stats.ran("research")
        await slow()
        return {"topic": topic, "summary": f"Three sources agree on {topic}."}

    @mcp.tool(name="ping", description="Free: answers pong.")
    def ping() -> str:
        return "pong"

    app = mcp.streamable_http_app()
    app.state.mcp_stats = stats
    app.state.mcp_faults = faults
    inner = app.router.lifespan_context

    @asynccontextmanager
    async def lifespan(a: Starlette) -> AsyncIterator[None]:
        context: AbstractAsyncContextManager[Any] = inner(a)
        async with context:
            try:
                yield
            finally:
                await facilitator.aclose()

    app.router.lifespan_context = lifespan
    return app


@dataclass(frozen=True)
class PaidMcpServer:
    """The running paid MCP server."""

    server: RunningServer
    settings: McpSettings
    stats: McpStats
    faults: McpFaults

    @property
    def url(self) -> str:
        """The streamable-HTTP endpoint (``http://127.0.0.1:PORT/mcp``)."""
        return self.server.url + MCP_PATH

    @property
    def pay_to(self) -> str:
        """Where payments go."""
        return self.settings.pay_to


@contextmanager
def paid_mcp_server(facilitator_url: str, pay_to: str) -> Iterator[PaidMcpServer]:
    """The paid MCP server on a free loopback port, against a running facilitator."""
    settings = McpSettings(facilitator_url=facilitator_url, pay_to=pay_to)
    stats, faults = McpStats(), McpFaults()
    running = serve_in_thread(create_mcp_app(settings, stats, faults))
    try:
        yield PaidMcpServer(running, settings, stats, faults)
    finally:
        running.stop()
