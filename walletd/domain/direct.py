"""The direct-transfer 402: "send this much USDC to this address, then show me the hash".

Besides x402's signed authorizations, the Cluster Protocol docs describe a
simpler demand. Its ``PAYMENT-REQUIRED`` header is base64 of one JSON object::

    {"recipient": "0x…", "amount": "0.003", "chainId": 8453, "token": "0x8335…2913"}

and the payer sends an ERC-20 ``transfer(recipient, amount)`` itself, then
re-sends the request with the transaction hash as proof.

The shape is read as strictly as an x402 demand (same size limit, strict
base64, UTF-8 and duplicate-free JSON), and it is told apart from x402 by one
thing only: **a JSON object without an ``x402Version`` key**. Then:

* ``recipient``: ``0x`` + 40 hex digits (required);
* ``amount``: a *string* of plain decimal USD, at most 6 decimals, greater
  than 0 (required). It is parsed by ``walletd.domain.money.parse_usd``, the
  CLI's parser, so ``"1e3"``, ``"-1"``, ``"0.0000001"``, ``" 1"``, ``"$1"``
  or a JSON number are refused; never a float;
* ``chainId``: a JSON integer (required); it must be an enabled network;
* ``token``: ``0x`` + 40 hex digits (required); it must be walletd's pinned
  USDC of that chain (the demand cannot name a token walletd would trust);
* ``description``, ``resource``, ``error``: informational, ignored (and not
  part of the idempotency fingerprint, so a reworded description is no conflict);
* any other key is refused, so a field walletd does not understand (a memo, a
  deadline, a second recipient) can never be silently dropped.

Whether such a demand may be *paid* is decided by ``walletd.domain.policy``,
through a synthetic ``exact`` requirement (``as_demand``): payee and host
allowlists, network, asset, amount and budgets are the very same rules.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from walletd.domain.demand import (
    _ADDRESS,
    Demand,
    Requirement,
    _decode_base64,
    _strict_json,
)
from walletd.domain.money import parse_usd
from walletd.errors import InvalidDemandError, InvalidRequestError

KIND_EXACT = "exact"
"""Ledger ``kind`` of an EIP-3009 authorization (x402 ``exact``)."""
KIND_TRANSFER = "transfer"
"""Ledger ``kind`` of a direct ERC-20 transfer sent by walletd."""
KIND_PERMIT2 = "permit2"
"""Ledger ``kind`` of an x402 ``exact`` payment signed as a Permit2 witness transfer."""
KIND_UPTO = "upto"
"""Ledger ``kind`` of an x402 ``upto`` payment (Permit2; the amount is the maximum)."""

REQUIRED_KEYS = frozenset({"recipient", "amount", "chainId", "token"})
IGNORED_KEYS = frozenset({"description", "resource", "error"})
"""Informational keys a server may add; they change nothing and are not fingerprinted."""

DIRECT_VERSION = 0
"""The ``Demand.version`` of the synthetic demand (x402 uses 1 and 2)."""

_PLAIN_DECIMAL = re.compile(r"[0-9]+(?:\.[0-9]+)?")

DEFAULT_PROOF_HEADER = "X-Payment-Tx"
"""The header that carries a direct transfer's hash when the config names none for the host."""
MAX_HEADER_NAME = 32
"""The ledger's ``header_name`` column width."""
_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")
_FORBIDDEN_HEADERS = frozenset(
    {
        "authorization", "proxy-authorization", "cookie", "host", "content-length",
        "content-type", "transfer-encoding", "connection", "te", "upgrade", "expect",
    }
)  # fmt: skip


def check_header_name(name: Any) -> str:
    """A proof header name from the config: an HTTP token, not one that means something else.

    Raises:
        InvalidRequestError: not a string token, too long, or a header HTTP itself uses.
    """
    if (
        not isinstance(name, str)
        or not 0 < len(name) <= MAX_HEADER_NAME
        or not _HEADER_NAME.fullmatch(name)
    ):
        raise InvalidRequestError(f"proof header {name!r:.40} is not an HTTP header name (<= 32)")
    if name.lower() in _FORBIDDEN_HEADERS:
        raise InvalidRequestError(f"proof header {name!r} would replace a standard HTTP header")
    return name


@dataclass(frozen=True)
class ProofHeaders:
    """Which header carries the transaction hash, per request host (lower-cased)."""

    default: str = DEFAULT_PROOF_HEADER
    hosts: Mapping[str, str] = field(default_factory=dict)

    def for_host(self, host: str) -> str:
        """The header name for ``host``; the default when the host has none of its own."""
        return self.hosts.get(host.lower(), self.default)


@dataclass(frozen=True)
class DirectDemand:
    """A well-formed direct-transfer demand; amounts in USDC atomic units."""

    recipient: str
    amount: int
    chain_id: int
    token: str
    raw: Mapping[str, Any]
    fingerprint: str
    """sha256 over the terms only (recipient, amount, chain, token; addresses lower-cased)."""

    @property
    def network(self) -> str:
        """The CAIP-2 id of the demanded chain."""
        return f"eip155:{self.chain_id}"


def parse_direct(payment_required: str) -> DirectDemand | None:
    """The direct demand in a ``PAYMENT-REQUIRED`` value, or None when it is x402.

    None means "not this shape": empty, or a JSON object with ``x402Version``
    (``walletd.domain.demand`` then decodes it, and names any problem).

    Raises:
        InvalidDemandError: it is a direct demand but a malformed one.
    """
    if not payment_required:
        return None
    try:
        doc = _strict_json(_decode_base64(payment_required))
    except InvalidDemandError:
        return None  # the x402 decoder reports it with its own words
    if not isinstance(doc, dict) or "x402Version" in doc:
        return None
    return _read(doc)


def _read(doc: dict[str, Any]) -> DirectDemand:
    unknown = sorted(set(doc) - REQUIRED_KEYS - IGNORED_KEYS)
    if unknown:
        raise InvalidDemandError(
            f"direct demand has unknown keys {unknown[:5]!r:.120}", {"field": str(unknown[0])[:64]}
        )
    missing = sorted(REQUIRED_KEYS - set(doc))
    if missing:
        raise InvalidDemandError(f"direct demand lacks {missing!r}", {"field": missing[0]})
    recipient, token = _address(doc, "recipient"), _address(doc, "token")
    amount, chain_id = _amount(doc["amount"]), _chain_id(doc["chainId"])
    terms = {"recipient": recipient.lower(), "amount": amount, "chainId": chain_id}
    terms["token"] = token.lower()
    canonical = json.dumps({"direct": terms}, sort_keys=True, separators=(",", ":"))
    fingerprint = hashlib.sha256(canonical.encode()).hexdigest()
    return DirectDemand(recipient, amount, chain_id, token, doc, fingerprint)


def _address(doc: dict[str, Any], key: str) -> str:
    value = doc[key]
    if not isinstance(value, str) or not _ADDRESS.fullmatch(value):
        raise InvalidDemandError(f"direct demand {key} is not a 0x address", {"field": key})
    return value


def _amount(value: Any) -> int:
    """Plain decimal USD text through the CLI's parser; anything else is malformed."""
    if not isinstance(value, str) or not _PLAIN_DECIMAL.fullmatch(value):
        raise InvalidDemandError(
            f'direct demand amount must be a decimal USD string like "0.003", got {value!r:.40}',
            {"field": "amount"},
        )
    try:
        return parse_usd(value)
    except InvalidRequestError as exc:
        raise InvalidDemandError(
            f"direct demand amount: {exc.message}", {"field": "amount"}
        ) from exc


def _chain_id(value: Any) -> int:
    if type(value) is not int or not 0 < value < 2**63:
        raise InvalidDemandError("direct demand chainId must be an integer", {"field": "chainId"})
    return value


def as_demand(direct: DirectDemand) -> Demand:
    """A one-entry synthetic demand so ``policy.choose`` applies every rule unchanged.

    The entry says ``exact`` with no ``extra`` so the x402-only rules (scheme,
    EIP-712 domain) pass trivially, and a timeout of 1 s so the validity rule
    does too; the rules that matter here (network, asset, payee, host, amount,
    budgets) read the demand's own terms.
    """
    entry = Requirement(
        index=0,
        scheme="exact",
        network=direct.network,
        amount=direct.amount,
        asset=direct.token,
        pay_to=direct.recipient,
        max_timeout_seconds=1,
        extra={},
        raw=direct.raw,
    )
    return Demand(DIRECT_VERSION, (entry,), None, direct.fingerprint)
