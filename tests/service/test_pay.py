"""Pay: choice, idempotency, validity, and what the ledger records."""

from __future__ import annotations

import base64
import json
import time
from typing import Any

from tests.plugins.daemon import PAY_TO, demand_header
from tests.service.conftest import Ledger
from walletd.domain.networks import BASE
from walletd.domain.payment import PayCommand

URL = "http://127.0.0.1:9/v1/chat/completions"


def _pay(ledger: Ledger, header: str, key: str = "k1"):
    return ledger.service.pay(ledger.caller, PayCommand(key, "POST", URL, header))


def _payload(header_value: str) -> Any:
    return json.loads(base64.b64decode(header_value))


def test_same_key_and_demand_returns_the_same_header(ledger: Ledger) -> None:
    first = _pay(ledger, demand_header())
    again = _pay(ledger, demand_header())
    assert again.header_value == first.header_value
    assert (first.reused, again.reused) == (False, True)
    assert ledger.signer.calls == 1
    assert ledger.service.get_budget(ledger.caller).windows[1].spent == 3000


def test_retried_demand_with_a_new_error_text_is_the_same_demand(ledger: Ledger) -> None:
    first = _pay(ledger, demand_header())
    doc = json.loads(base64.b64decode(demand_header()))
    doc["error"] = "invalid_exact_evm_nonce_already_used"
    again = _pay(ledger, base64.b64encode(json.dumps(doc).encode()).decode())
    assert again.payment_id == first.payment_id


def test_cheapest_passing_entry_is_paid_among_many(ledger: Ledger) -> None:
    good = {"scheme": "exact", "network": BASE.caip2, "asset": BASE.usdc, "payTo": PAY_TO,
            "maxTimeoutSeconds": 60, "extra": {"name": "USD Coin", "version": "2"}}  # fmt: skip
    bad = [dict(good, scheme="upto", amount="1") for _ in range(47)]
    accepts = [*bad, dict(good, amount="5000"), dict(good, amount="4000"), {"junk": True}]
    doc = {"x402Version": 2, "accepts": accepts, "resource": {"url": URL}}
    receipt = _pay(ledger, base64.b64encode(json.dumps(doc).encode()).decode())
    assert receipt.amount == 4000
    assert _payload(receipt.header_value)["accepted"] == dict(good, amount="4000")


def test_validity_is_capped_whatever_max_timeout_seconds_says(ledger: Ledger) -> None:
    receipt = _pay(ledger, demand_header(maxTimeoutSeconds=3000))
    assert receipt.valid_before <= int(time.time()) + 300 + 1
    auth = _payload(receipt.header_value)["payload"]["authorization"]
    assert int(auth["validBefore"]) == receipt.valid_before
    assert int(auth["validAfter"]) < int(time.time())


def test_signed_fields_match_the_receipt_and_the_pinned_domain(ledger: Ledger) -> None:
    receipt = _pay(ledger, demand_header("3000"))
    payload = _payload(receipt.header_value)
    auth = payload["payload"]["authorization"]
    assert auth["from"] == ledger.signer.address
    assert auth["to"] == PAY_TO == receipt.payee
    assert auth["value"] == "3000"
    assert len(auth["nonce"]) == 66
    assert payload["x402Version"] == 2
    assert payload["resource"]["url"] == "http://127.0.0.1:9/v1/chat/completions"


def test_each_new_key_gets_a_fresh_nonce(ledger: Ledger) -> None:
    nonces = {
        _payload(_pay(ledger, demand_header(), key=f"k{i}").header_value)["payload"][
            "authorization"
        ]["nonce"]
        for i in range(5)
    }
    assert len(nonces) == 5


def test_labels_are_stored_on_the_ledger_row(ledger: Ledger) -> None:
    cmd = PayCommand("k9", "POST", URL, demand_header(), labels={"model": "llama-3.3-70b"})
    ledger.service.pay(ledger.caller, cmd)
    (row,) = ledger.service.list_payments(ledger.caller, 10)
    assert row.labels == {"model": "llama-3.3-70b"}
    assert row.status == "signed"
