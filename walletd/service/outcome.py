"""What a client saw after sending a payment, and the status it leads to.

The client's word is only a hint: a server's ``success`` is never taken as
settlement. It moves a payment to ``settlement_pending`` (to be confirmed on
chain) or ``rejected`` (which still counts as spent until it provably cannot
settle). Budget is released only by on-chain facts, never here.

A refusal is the one report the daemon checks on chain at once (when it has an
RPC): a server that refuses an authorization the chain already shows used
(``invalid_exact_evm_nonce_already_used`` on a retry whose first attempt
settled) was paid, and only its answer was lost; see
``walletd.service.reconcile.answer_lost_decision``.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from typing import Any

from walletd.domain.payment import PaymentStatus

MAX_RESPONSE_BYTES = 8 * 1024


@dataclass(frozen=True)
class Outcome:
    """The decoded facts of one report."""

    http_status: int
    success: bool | None
    transaction: str
    payer: str
    network: str
    error_reason: str
    amount: str = ""
    """upto: the amount (token units) the server says it settled; "" when it says none."""

    def as_data(self) -> dict[str, Any]:
        """The facts as a ledger event's data (``amount`` only when the server gave one)."""
        data = dict(self.__dict__)
        if not self.amount:
            del data["amount"]
        return data


def _field(doc: dict[str, Any], key: str) -> str:
    value = doc.get(key, "")
    return value[:200] if isinstance(value, str) else ""


def decode_outcome(http_status: int, payment_response: str) -> Outcome:
    """Decode a PAYMENT-RESPONSE / X-PAYMENT-RESPONSE value; garbage decodes as 'nothing said'."""
    doc: Any = {}
    if payment_response and len(payment_response) <= MAX_RESPONSE_BYTES:
        try:
            doc = json.loads(base64.b64decode(payment_response, validate=True))
        except (binascii.Error, ValueError):
            doc = {}
    if not isinstance(doc, dict):
        doc = {}
    success = doc.get("success")
    return Outcome(
        http_status=http_status,
        success=success if isinstance(success, bool) else None,
        transaction=_field(doc, "transaction"),
        payer=_field(doc, "payer"),
        network=_field(doc, "network"),
        error_reason=_field(doc, "errorReason"),
        amount=_field(doc, "amount"),
    )


def claimed_tx(seen: Outcome) -> str:
    """The transaction a server claims settled the payment, or "" if it claims none.

    Only ``success: true`` with a transaction is a claim of settlement; a failed
    settlement may name a reverted transaction, which is not a lie. The claim is
    kept verbatim (bounded to a hash's length) so a garbage hash is disputed too.
    """
    if seen.success is not True or not seen.transaction:
        return ""
    return seen.transaction[:66].lower()


def refused(seen: Outcome) -> bool:
    """Whether the server refused the payment (a 402 after paying, or ``success: false``)."""
    return seen.http_status == 402 or seen.success is False


def next_status(current: str, seen: Outcome) -> str:
    """The status after a report; only a still-``signed`` payment moves."""
    if current != PaymentStatus.SIGNED:
        return current
    if seen.success and seen.transaction:
        return PaymentStatus.SETTLEMENT_PENDING
    if seen.error_reason == "settlement_pending":
        return PaymentStatus.SETTLEMENT_PENDING
    if refused(seen):
        return PaymentStatus.REJECTED
    return current
