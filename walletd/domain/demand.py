"""Strict decoding of an x402 402 demand, which comes from a server walletd does not trust.

The demand is either the v2 ``PAYMENT-REQUIRED`` header (base64 of JSON) or the v1
JSON body. Decoding is deliberately narrow: a size limit, strict base64, strict
UTF-8, JSON with no duplicate keys and no NaN/Infinity, amounts as canonical
decimal-integer strings only, addresses as 0x + 40 hex digits. Anything else is
an ``InvalidDemandError``. Whether a well-formed demand may be *paid* is decided
later, by ``walletd.domain.policy``.

One malformed entry of ``accepts`` does not spoil the others: it is kept as an
``InvalidEntry`` so the chooser can still pay a good sibling, and can name the
problem when none passes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from walletd.errors import InvalidDemandError

MAX_DEMAND_BYTES = 64 * 1024
"""Largest header value or body accepted, before decoding."""

MAX_ACCEPTS = 64
"""Most ``accepts`` entries considered; a longer list is refused as hostile."""

_AMOUNT = re.compile(r"0|[1-9][0-9]{0,77}")
_ADDRESS = re.compile(r"0x[0-9a-fA-F]{40}")
_UINT256_MAX = 2**256 - 1


@dataclass(frozen=True)
class Requirement:
    """One well-formed entry of ``accepts``, with the raw JSON kept for the echo."""

    index: int
    scheme: str
    network: str
    amount: int
    asset: str
    pay_to: str
    max_timeout_seconds: int
    extra: Mapping[str, Any]
    raw: Mapping[str, Any]
    """The entry exactly as received; v2 echoes it verbatim as ``accepted``."""


@dataclass(frozen=True)
class InvalidEntry:
    """An entry of ``accepts`` that could not be read; never paid."""

    index: int
    error: InvalidDemandError
    amount: int | None = None
    """The entry's amount when that field itself was well-formed (for the decision log)."""


@dataclass(frozen=True)
class Demand:
    """A decoded 402 demand."""

    version: int
    entries: tuple[Requirement | InvalidEntry, ...]
    resource: Mapping[str, Any] | None
    """v2 top-level ``resource`` object, echoed in the payment payload."""
    fingerprint: str
    """sha256 over the terms (version, accepts, resource), ignoring the error text."""


def decode_demand(payment_required: str, body: bytes) -> Demand:
    """Decode a v2 header value or, when it is empty, a v1 JSON body.

    Raises:
        InvalidDemandError: the material is missing, too large or malformed.
    """
    if payment_required:
        raw = _decode_base64(payment_required)
    elif body:
        raw = _check_size(body)
    else:
        raise InvalidDemandError("no demand: give the PAYMENT-REQUIRED header or the 402 body")
    return _decode_document(_strict_json(raw))


def _check_size(data: bytes) -> bytes:
    if len(data) > MAX_DEMAND_BYTES:
        raise InvalidDemandError(f"demand too large: {len(data)} bytes > {MAX_DEMAND_BYTES}")
    return data


def _decode_base64(value: str) -> bytes:
    _check_size(value.encode("utf-8", "replace"))
    try:
        return base64.b64decode(value.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidDemandError("PAYMENT-REQUIRED is not valid base64") from exc


def _reject_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise InvalidDemandError(f"duplicate JSON key {key!r}")
        result[key] = value
    return result


def _reject_constant(name: str) -> Any:
    raise InvalidDemandError(f"non-standard JSON constant {name}")


def _strict_json(raw: bytes) -> Any:
    try:
        text = raw.decode("utf-8")
        return json.loads(
            text, object_pairs_hook=_reject_duplicates, parse_constant=_reject_constant
        )
    except InvalidDemandError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise InvalidDemandError("demand is not valid UTF-8 JSON") from exc


def _decode_document(doc: Any) -> Demand:
    if not isinstance(doc, dict):
        raise InvalidDemandError("demand is not a JSON object")
    version = doc.get("x402Version")
    if type(version) is not int or version not in (1, 2):
        raise InvalidDemandError(f"unsupported x402Version {version!r}")
    accepts = doc.get("accepts")
    if not isinstance(accepts, list) or not accepts:
        raise InvalidDemandError("demand has no accepts")
    if len(accepts) > MAX_ACCEPTS:
        raise InvalidDemandError(f"demand has {len(accepts)} accepts > {MAX_ACCEPTS}")
    resource = doc.get("resource") if version == 2 else None
    if resource is not None and not isinstance(resource, dict):
        raise InvalidDemandError("resource is not an object")
    entries = tuple(_decode_entry(i, e, version) for i, e in enumerate(accepts))
    return Demand(version, entries, resource, _fingerprint(version, accepts, resource))


def _fingerprint(version: int, accepts: list[Any], resource: Any) -> str:
    canonical = json.dumps(
        {"v": version, "accepts": accepts, "resource": resource},
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


def _decode_entry(index: int, entry: Any, version: int) -> Requirement | InvalidEntry:
    try:
        return _read_requirement(index, entry, version)
    except InvalidDemandError as exc:
        return InvalidEntry(index, exc, _known_amount(entry, version, index))


def _known_amount(entry: Any, version: int, index: int) -> int | None:
    """The amount of an entry refused for another field, if the amount itself reads."""
    if not isinstance(entry, dict):
        return None
    try:
        return _amount(entry, "amount" if version == 2 else "maxAmountRequired", index)
    except InvalidDemandError:
        return None


def _read_requirement(index: int, entry: Any, version: int) -> Requirement:
    if not isinstance(entry, dict):
        raise InvalidDemandError(f"accepts[{index}] is not an object")
    amount_key = "amount" if version == 2 else "maxAmountRequired"
    extra = entry.get("extra", {})
    if extra is None:
        extra = {}
    if not isinstance(extra, dict):
        raise InvalidDemandError(f"accepts[{index}].extra is not an object")
    return Requirement(
        index=index,
        scheme=_string(entry, "scheme", index),
        network=_string(entry, "network", index),
        amount=_amount(entry, amount_key, index),
        asset=_address(entry, "asset", index),
        pay_to=_address(entry, "payTo", index),
        max_timeout_seconds=_timeout(entry, index),
        extra=extra,
        raw=entry,
    )


def _string(entry: dict[str, Any], key: str, index: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not value or len(value) > 256:
        raise InvalidDemandError(f"accepts[{index}].{key} is missing or not a string")
    return value


def _amount(entry: dict[str, Any], key: str, index: int) -> int:
    value = entry.get(key)
    if not isinstance(value, str) or not _AMOUNT.fullmatch(value):
        raise InvalidDemandError(
            f"accepts[{index}].{key} must be a decimal integer string, got {value!r:.40}",
            {"field": key},
        )
    amount = int(value)
    if amount > _UINT256_MAX:
        raise InvalidDemandError(f"accepts[{index}].{key} exceeds uint256", {"field": key})
    return amount


def _address(entry: dict[str, Any], key: str, index: int) -> str:
    value = entry.get(key)
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise InvalidDemandError(f"accepts[{index}].{key} is not a 0x address", {"field": key})
    return value


def _timeout(entry: dict[str, Any], index: int) -> int:
    value = entry.get("maxTimeoutSeconds")
    if type(value) is not int or value < 1:
        raise InvalidDemandError(
            f"accepts[{index}].maxTimeoutSeconds must be a positive integer",
            {"field": "maxTimeoutSeconds"},
        )
    return value
