"""`upto`: walletd authorizes a maximum through Permit2; the reference facilitator settles the
amount used, and walletd's budget keeps only what was charged."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest
from x402.schemas import PaymentPayload, PaymentRequirements

from tests.permit2.conftest import PAY_TO, PER_REQUEST, URL, Bed
from walletd.domain.networks import MEGAETH
from walletd.domain.payment import PayCommand
from walletd.domain.permit2 import UPTO_PROXY_ADDRESS
from walletd.domain.report import ReportQuery
from walletd.errors import BudgetExceededError

pytestmark = pytest.mark.chain  # a MegaETH-id anvil of its own (tests/permit2/conftest.py)

USD18 = MEGAETH.assets[0]
UNIT = 10**12  # token units per USD atomic unit


def upto_entry(bed: Bed, maximum: int, **over: Any) -> dict[str, Any]:
    doc = {
        "scheme": "upto",
        "network": MEGAETH.caip2,
        "asset": USD18.address,
        "amount": str(maximum),
        "payTo": PAY_TO,
        "maxTimeoutSeconds": 300,
        "extra": {"name": USD18.eip712_name, "version": USD18.eip712_version,
                  "assetTransferMethod": "permit2", "facilitatorAddress": bed.facilitator_address},
    }  # fmt: skip
    doc.update(over)
    return doc


def header(*entries: dict[str, Any]) -> str:
    doc = {"x402Version": 2, "accepts": list(entries), "resource": {"url": URL}}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def settle_charged(bed: Bed, header_value: str, accepted: dict[str, Any], charged: int) -> Any:
    payload = PaymentPayload.model_validate(json.loads(base64.b64decode(header_value)))
    verdict = bed.facilitator.verify(payload, PaymentRequirements.model_validate(accepted))
    assert verdict.is_valid, verdict
    used = PaymentRequirements.model_validate({**accepted, "amount": str(charged)})
    return bed.facilitator.settle(payload, used)


def test_upto_authorizes_the_maximum_and_settles_what_was_used(bed: Bed) -> None:
    accepted = upto_entry(bed, 10_000 * UNIT)  # at most $0.01
    before = bed.token_balance(PAY_TO)
    receipt = bed.service.pay(bed.caller, PayCommand("upto-1", "POST", URL, header(accepted)))
    assert receipt.amount == 10_000  # the budget reserves the maximum
    auth = json.loads(base64.b64decode(receipt.header_value))["payload"]["permit2Authorization"]
    assert auth["spender"] == UPTO_PROXY_ADDRESS
    assert auth["witness"]["facilitator"] == bed.facilitator_address
    result = settle_charged(bed, receipt.header_value, accepted, 4_321 * UNIT)
    assert result.success, result
    assert bed.token_balance(PAY_TO) - before == 4_321 * UNIT


def test_upto_maximum_above_the_per_request_limit_is_refused_and_nothing_signed(
    bed: Bed,
) -> None:
    calls = bed.signer.calls
    accepted = upto_entry(bed, (PER_REQUEST + 1) * UNIT)
    with pytest.raises(BudgetExceededError) as info:
        bed.service.pay(bed.caller, PayCommand("upto-over", "POST", URL, header(accepted)))
    assert info.value.details["window"] == "per_request"
    assert bed.signer.calls == calls
    refusals = bed.service.spend_report(bed.caller, ReportQuery()).refusals
    (refused,) = [r for r in refusals if r.rule == "per_request"]
    assert refused.amount == PER_REQUEST + 1  # logged in USD atomic units, not token units


def test_charge_below_the_maximum_releases_the_rest_and_chain_and_ledger_agree(
    bed: Bed,
) -> None:
    accepted = upto_entry(bed, 20_000 * UNIT)
    spent_before, paid_before = bed.spent_today(), bed.token_balance(PAY_TO)
    report_before = bed.service.spend_report(bed.caller, ReportQuery()).totals
    receipt = bed.service.pay(bed.caller, PayCommand("upto-release", "POST", URL, header(accepted)))
    assert bed.spent_today() - spent_before == 20_000  # the maximum is reserved
    result = settle_charged(bed, receipt.header_value, accepted, 7_777 * UNIT)
    assert result.success and result.amount == str(7_777 * UNIT)
    bed.report(receipt.payment_id, result)
    bed.reconcile()
    row = bed.row(receipt.payment_id)
    assert (row.status, row.amount, row.authorized) == ("settled", 7_777, 20_000)
    assert bed.spent_today() - spent_before == 7_777  # the rest is released
    assert bed.token_balance(PAY_TO) - paid_before == 7_777 * UNIT
    totals = bed.service.spend_report(bed.caller, ReportQuery()).totals
    assert totals.authorized - report_before.authorized == 20_000  # spend-report: authorized
    settled = totals.tally("settled").amount - report_before.tally("settled").amount
    assert settled == 7_777  # ... against charged, to the atomic unit


def test_server_reporting_another_amount_than_the_chain_is_disputed(bed: Bed) -> None:
    accepted = upto_entry(bed, 9_000 * UNIT)
    spent_before = bed.spent_today()
    receipt = bed.service.pay(bed.caller, PayCommand("upto-liar", "POST", URL, header(accepted)))
    result = settle_charged(bed, receipt.header_value, accepted, 1_000 * UNIT)
    bed.report(receipt.payment_id, result, amount=str(500 * UNIT))  # claims less than it took
    bed.reconcile()
    row = bed.row(receipt.payment_id)
    assert (row.status, row.amount) == ("disputed", 9_000)  # still counted at the maximum
    assert bed.spent_today() - spent_before == 9_000
