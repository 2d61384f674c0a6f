"""Permit2 `exact`: walletd signs a Permit2 witness transfer for a coin without EIP-3009, and
the reference x402 facilitator verifies and settles it on anvil."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import pytest
from x402.schemas import PaymentPayload, PaymentRequirements

from tests.permit2.conftest import PAY_TO, URL, Bed
from walletd.domain.networks import MEGAETH
from walletd.domain.payment import PayCommand
from walletd.domain.permit2 import EXACT_PROXY_ADDRESS

pytestmark = pytest.mark.chain  # a MegaETH-id anvil of its own (tests/permit2/conftest.py)

USD18 = MEGAETH.assets[0]


def entry(amount: int, **extra: Any) -> dict[str, Any]:
    return {
        "scheme": "exact",
        "network": MEGAETH.caip2,
        "asset": USD18.address,
        "amount": str(amount),
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": {"name": USD18.eip712_name, "version": USD18.eip712_version,
                  "assetTransferMethod": "permit2", **extra},
    }  # fmt: skip


def header(*entries: dict[str, Any]) -> str:
    doc = {"x402Version": 2, "accepts": list(entries), "resource": {"url": URL}}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def settle(bed: Bed, header_value: str, accepted: dict[str, Any]) -> Any:
    payload = PaymentPayload.model_validate(json.loads(base64.b64decode(header_value)))
    requirements = PaymentRequirements.model_validate(accepted)
    verdict = bed.facilitator.verify(payload, requirements)
    assert verdict.is_valid, verdict
    return bed.facilitator.settle(payload, requirements)


def test_permit2_exact_payment_settles_through_the_reference_facilitator(bed: Bed) -> None:
    price = 3000 * 10**12  # $0.003 in an 18-decimal coin
    accepted = entry(price)
    before = bed.token_balance(PAY_TO)
    receipt = bed.service.pay(bed.caller, PayCommand("p2-exact-1", "POST", URL, header(accepted)))
    assert (receipt.amount, receipt.network) == (3000, MEGAETH.caip2)  # budgets count USD
    doc = json.loads(base64.b64decode(receipt.header_value))
    auth = doc["payload"]["permit2Authorization"]
    assert auth["spender"] == EXACT_PROXY_ADDRESS and auth["witness"]["to"] == PAY_TO
    assert auth["permitted"] == {"token": USD18.address, "amount": str(price)}
    result = settle(bed, receipt.header_value, accepted)
    assert result.success, result
    assert bed.token_balance(PAY_TO) - before == price


def test_permit2_deadline_is_capped_and_the_witness_pays_pay_to(bed: Bed) -> None:
    accepted = entry(1000 * 10**12)
    accepted["maxTimeoutSeconds"] = 3600  # the demand may ask; the validity cap (300 s) wins
    now = int(time.time())
    receipt = bed.service.pay(bed.caller, PayCommand("p2-deadline", "POST", URL, header(accepted)))
    auth = json.loads(base64.b64decode(receipt.header_value))["payload"]["permit2Authorization"]
    assert now + 300 <= int(auth["deadline"]) == receipt.valid_before <= now + 302
    assert auth["witness"]["to"] == PAY_TO and int(auth["witness"]["validAfter"]) < now


def test_settled_permit2_payment_is_confirmed_by_the_reconciler(bed: Bed) -> None:
    accepted = entry(2000 * 10**12)
    receipt = bed.service.pay(bed.caller, PayCommand("p2-recon", "POST", URL, header(accepted)))
    result = settle(bed, receipt.header_value, accepted)
    assert bed.report(receipt.payment_id, result) == "settlement_pending"
    bed.reconcile()
    row = bed.row(receipt.payment_id)
    assert (row.status, row.settled_tx, row.amount) == ("settled", result.transaction, 2000)


def test_balance_of_an_18_decimal_stablecoin_is_read_in_usd_atomic_units(bed: Bed) -> None:
    raw = bed.token_balance(bed.signer.address)
    assert bed.reader.usdc_balance(bed.signer.address) == raw // 10**12
