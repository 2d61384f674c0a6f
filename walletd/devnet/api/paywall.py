"""The glue between the local paid API and the x402 SDK that enforces its payments.

Payment is enforced by the SDK's own ``PaymentMiddlewareASGI`` backed by a local
facilitator (see :mod:`walletd.devnet.facilitator`), so the wire format is the SDK's, not
ours. This module builds that middleware and reads what it says back: whether a response
settled (``PAYMENT-RESPONSE``), and why a payment failed, so the SDK's error bodies (``{}`` on
a 402, ``{"error": "..."}`` on a 502) can be rewritten into the documented error shape.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from starlette.datastructures import Headers
from starlette.types import ASGIApp
from x402.http import FacilitatorConfig, HTTPFacilitatorClient
from x402.http.middleware.fastapi import PaymentMiddlewareASGI
from x402.mechanisms.evm.exact import ExactEvmServerScheme
from x402.mechanisms.evm.upto import UptoEvmServerScheme
from x402.server import x402ResourceServer

from walletd.devnet.api.errors import error_body
from walletd.devnet.api.pricing import payment_routes
from walletd.devnet.api.settings import ApiSettings

__all__ = ["PAYMENT_HEADERS", "paid_app", "settled_transaction", "shaped_error"]

PAYMENT_HEADERS = ("payment-signature", "x-payment")


def paid_app(core: ASGIApp, settings: ApiSettings) -> tuple[ASGIApp, HTTPFacilitatorClient]:
    """``core`` behind the SDK's payment middleware, and the facilitator client to close.

    Building it calls the facilitator's ``/supported`` (the SDK middleware does so on
    creation), so the facilitator must already listen.
    """
    facilitator = HTTPFacilitatorClient(FacilitatorConfig(url=settings.facilitator_url))
    resource_server = x402ResourceServer(facilitator)
    # The SDK's scheme class is unannotated and its payment_flows attribute does not match
    # the SDK's own protocol under mypy; it is the documented object to register.
    scheme: Any = ExactEvmServerScheme()  # type: ignore[no-untyped-call]
    resource_server.register(settings.network, scheme)
    upto: Any = UptoEvmServerScheme()  # type: ignore[no-untyped-call]
    resource_server.register(settings.network, upto)
    paid = PaymentMiddlewareASGI(core, routes=payment_routes(settings), server=resource_server)
    return paid, facilitator


def _decode_header_json(value: str | None) -> dict[str, Any] | None:
    """Decode an x402 base64-JSON header; None if absent or not a JSON object."""
    if value is None:
        return None
    try:
        data = json.loads(base64.b64decode(value, validate=True))
    except (binascii.Error, ValueError):
        return None
    return data if isinstance(data, dict) else None


def settled_transaction(headers: Headers) -> str | None:
    """The transaction hash of a successful settlement in ``PAYMENT-RESPONSE``, else None."""
    settlement = _decode_header_json(headers.get("payment-response"))
    if settlement is None or settlement.get("success") is not True:
        return None
    return str(settlement.get("transaction", ""))


def _payment_reason(headers: Headers) -> str | None:
    """The SDK's reason for a payment failure, from PAYMENT-REQUIRED or PAYMENT-RESPONSE."""
    required = _decode_header_json(headers.get("payment-required")) or {}
    response = _decode_header_json(headers.get("payment-response")) or {}
    reason = required.get("error") or response.get("errorReason")
    return str(reason) if reason else None


def shaped_error(status: int, headers: Headers, body: bytes) -> bytes | None:
    """The error-shaped replacement for an SDK error body, or None if already shaped."""
    try:
        data = json.loads(body) if body else {}
    except ValueError:
        data = None
    if isinstance(data, dict) and isinstance(data.get("error"), dict):
        return None
    legacy = data.get("error") if isinstance(data, dict) else None
    message = _payment_reason(headers) or (legacy if isinstance(legacy, str) else None)
    return error_body(status, message)
