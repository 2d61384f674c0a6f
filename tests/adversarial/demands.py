"""Building blocks for hostile 402 demands: a good entry, documents, encodings.

Shared by the hostile-server table, the fuzz strategies and the campaign, so
"a valid demand" means the same thing everywhere.
"""

from __future__ import annotations

import base64
import json
from typing import Any

from walletd.domain.networks import BASE

URL = "https://api.test/v1/chat/completions"
PAY_TO = "0x90F79bf6Eb2c4f870365E96051896F3aC51Fb01A"
OTHER_PAY_TO = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"
ZERO = "0x" + "00" * 20
NOT_USDC = "0x" + "ab" * 20
GOOD_EXTRA = {"name": BASE.eip712_name, "version": BASE.eip712_version}


def entry(amount: Any = "3000", **overrides: Any) -> dict[str, Any]:
    """One well-formed v2 ``accepts`` entry (exact, Base, USDC), with fields overridden.

    An override whose value is :data:`DROP` removes the field.
    """
    doc: dict[str, Any] = {
        "scheme": "exact",
        "network": BASE.caip2,
        "asset": BASE.usdc,
        "amount": amount,
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": dict(GOOD_EXTRA),
    }
    doc.update(overrides)
    return {key: value for key, value in doc.items() if value is not DROP}


class _Drop:
    def __repr__(self) -> str:
        return "DROP"


DROP: Any = _Drop()
"""Marker for :func:`entry`: leave the field out."""


def v2_doc(*entries: dict[str, Any], **top: Any) -> dict[str, Any]:
    """A v2 PAYMENT-REQUIRED document; top-level fields overridden by ``top``."""
    doc: dict[str, Any] = {
        "x402Version": 2,
        "error": "Payment required",
        "resource": {"url": URL, "description": "chat", "mimeType": "application/json"},
        "accepts": list(entries) if entries else [entry()],
    }
    doc.update(top)
    return doc


def v1_entry(amount: Any = "3000", **overrides: Any) -> dict[str, Any]:
    """One v1 ``accepts`` entry (legacy network name, ``maxAmountRequired``)."""
    doc = entry(**{"network": BASE.v1_name, **overrides})
    doc.pop("amount", None)
    doc = {"maxAmountRequired": amount, **doc}
    for key, value in (("resource", URL), ("description", ""), ("mimeType", "")):
        doc.setdefault(key, value)
    return doc


def v1_body(*entries: dict[str, Any]) -> bytes:
    """A v1 402 JSON body."""
    doc = {
        "x402Version": 1,
        "error": "X-PAYMENT header is required",
        "accepts": list(entries) if entries else [v1_entry()],
    }
    return json.dumps(doc).encode()


def b64(doc: Any) -> str:
    """Base64 of the JSON of ``doc`` (what a server puts in PAYMENT-REQUIRED)."""
    return raw_b64(json.dumps(doc))


def raw_b64(text: str | bytes) -> str:
    """Base64 of hand-written JSON text (for what ``json.dumps`` cannot produce)."""
    data = text.encode() if isinstance(text, str) else text
    return base64.b64encode(data).decode()


def decode_header(value: str) -> dict[str, Any]:
    """The JSON document of a payment header walletd returned."""
    doc: dict[str, Any] = json.loads(base64.b64decode(value))
    return doc
