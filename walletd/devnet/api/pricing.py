"""What each priced route costs, in the two forms the local paid API asks for payment.

The x402 SDK wants a route table of ``RouteConfig`` (money strings, priced per
``"METHOD /path"``); the direct-transfer paywall wants the same prices per path. Both are
derived here from :class:`~walletd.devnet.api.settings.ApiSettings`, so a price is set in
one place.
"""

from __future__ import annotations

from x402.http import PaymentOption
from x402.http.types import RouteConfig

from walletd.devnet.api.routes import (
    CHAT_PATH,
    CHAT_ROUTE,
    IMAGES_PATH,
    IMAGES_ROUTE,
    PERMIT2_CHAT_ROUTE,
    UPTO_CHAT_ROUTE,
)
from walletd.devnet.api.settings import ApiSettings

__all__ = ["payment_routes", "route_prices"]


def route_prices(settings: ApiSettings) -> dict[str, str]:
    """The money string (``"$0.003"``) of each priced path."""
    return {CHAT_PATH: settings.chat_price, IMAGES_PATH: settings.image_price}


def _option(
    settings: ApiSettings, price: str, scheme: str = "exact", extra: dict[str, str] | None = None
) -> PaymentOption:
    """The one payment option the SDK offers for a price (``exact`` unless told)."""
    return PaymentOption(
        scheme=scheme,
        pay_to=settings.pay_to,
        price=price,
        network=settings.network,
        max_timeout_seconds=settings.max_timeout_seconds,
        extra=extra,
    )


def payment_routes(settings: ApiSettings) -> dict[str, RouteConfig]:
    """The SDK route table: which ``METHOD /path`` costs what."""
    return {
        CHAT_ROUTE: RouteConfig(
            accepts=[_option(settings, settings.chat_price)],
            description="Chat completion (Venice via Cluster Protocol, devnet)",
            mime_type="application/json",
        ),
        IMAGES_ROUTE: RouteConfig(
            accepts=[_option(settings, settings.image_price)],
            description="Image generation (Venice via Cluster Protocol, devnet)",
            mime_type="application/json",
        ),
        PERMIT2_CHAT_ROUTE: RouteConfig(
            accepts=[
                _option(settings, settings.chat_price, extra={"assetTransferMethod": "permit2"})
            ],
            description="Chat completion paid through Permit2 (devnet)",
            mime_type="application/json",
        ),
        UPTO_CHAT_ROUTE: RouteConfig(
            accepts=[_option(settings, settings.upto_max_price, scheme="upto")],
            description="Chat completion charged by tokens used, up to a maximum (devnet)",
            mime_type="application/json",
        ),
    }
