"""The factory of the local paid API: the routes, the paywalls and the gateway, assembled.

It is the one place that knows how the other modules fit together, so each of them can be
read, and tested, without the rest.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import JSONResponse, Response
from x402.http import HTTPFacilitatorClient

from walletd.devnet.api.direct import DirectPaid
from walletd.devnet.api.errors import install_error_handlers
from walletd.devnet.api.faults import Faults
from walletd.devnet.api.gateway import Gateway
from walletd.devnet.api.paywall import paid_app
from walletd.devnet.api.routes import core_app
from walletd.devnet.api.settings import ApiSettings
from walletd.devnet.api.stats import ApiStats

__all__ = ["api_faults", "api_stats", "create_api_app"]


def _closing(
    facilitator: HTTPFacilitatorClient,
) -> Callable[[FastAPI], AbstractAsyncContextManager[None]]:
    """A lifespan that closes the facilitator client on shutdown.

    The SDK opens its AsyncClient lazily and never closes it.
    """

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        await facilitator.aclose()

    return lifespan


def _stats_route(app: FastAPI, stats: ApiStats) -> None:
    """``GET /_devnet/stats``: the counters, free and never faulted."""

    @app.get("/_devnet/stats")
    async def devnet_stats() -> Response:
        return JSONResponse(stats.snapshot())


def create_api_app(settings: ApiSettings) -> FastAPI:
    """Build the paid API. Its :class:`ApiStats` and :class:`Faults` are on ``app.state``.

    Building it calls the facilitator's ``/supported`` (the SDK middleware does so on
    creation), so start the facilitator first.
    """
    core = core_app(settings.upto_atomic_per_token)
    paid, facilitator = paid_app(core, settings)
    stats, faults = ApiStats(), Faults()
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None, lifespan=_closing(facilitator))
    app.state.stats, app.state.faults, app.state.settings = stats, faults, settings
    install_error_handlers(app)
    _stats_route(app, stats)
    direct = DirectPaid(core, settings, stats) if settings.direct_rpc_url else None
    app.add_middleware(
        Gateway, free=core, paid=paid, api_keys=settings.api_keys, stats=stats, faults=faults,
        direct=direct,
    )  # fmt: skip
    return app


def api_stats(app: FastAPI) -> ApiStats:
    """The typed :class:`ApiStats` of an app built by :func:`create_api_app`."""
    stats = app.state.stats
    assert isinstance(stats, ApiStats)
    return stats


def api_faults(app: FastAPI) -> Faults:
    """The typed :class:`Faults` of an app built by :func:`create_api_app`."""
    faults = app.state.faults
    assert isinstance(faults, Faults)
    return faults
