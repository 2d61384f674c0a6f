"""Pay's free-form fields are bounded: an oversized request is refused and writes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import text

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.domain.payment import (
    MAX_LABEL_KEY_BYTES,
    MAX_LABEL_VALUE_BYTES,
    MAX_LABELS,
    MAX_URL_BYTES,
    PayCommand,
)
from walletd.errors import InvalidRequestError

URL = "http://127.0.0.1:9/v1/chat/completions"
OVER_BUDGET = "20000"  # per_request is 10_000: without the size check, a recorded refusal


def _rows(ledger: Ledger) -> tuple[int, int]:
    with ledger.store.read() as tx:
        session = tx._session
        decisions = session.execute(text("SELECT count(*) FROM decisions")).scalar_one()
        payments = session.execute(text("SELECT count(*) FROM payments")).scalar_one()
    return decisions, payments


OVERSIZED: dict[str, dict[str, Any]] = {
    "labels": dict(labels={f"k{i}": "v" for i in range(MAX_LABELS + 1)}),
    "labels.key": dict(labels={"k" * (MAX_LABEL_KEY_BYTES + 1): "v"}),
    "labels.value": dict(labels={"model": "é" * (MAX_LABEL_VALUE_BYTES // 2 + 1)}),
    "url": dict(url=URL + "?" + "a" * MAX_URL_BYTES),
    "body": dict(body=b"x" * (64 * 1024 + 1)),
}


@pytest.mark.parametrize("field", sorted(OVERSIZED))
@pytest.mark.parametrize("amount", ["3000", OVER_BUDGET])
def test_oversized_pay_is_invalid_request_and_writes_nothing(
    ledger: Ledger, field: str, amount: str
) -> None:
    args = {"url": URL, **OVERSIZED[field]}
    cmd = PayCommand("k1", "POST", payment_required=demand_header(amount), **args)
    before = _rows(ledger)
    with pytest.raises(InvalidRequestError) as caught:
        ledger.service.pay(ledger.caller, cmd)
    assert caught.value.reason == "INVALID_REQUEST"
    assert caught.value.details["field"] == field
    assert caught.value.details["limit"] in caught.value.message
    assert _rows(ledger) == before  # no decision row, no payment row
    assert ledger.signer.calls == 0


def test_largest_valid_pay_is_signed(ledger: Ledger) -> None:
    labels = {f"{i:02d}".ljust(MAX_LABEL_KEY_BYTES, "k"): "v" * MAX_LABEL_VALUE_BYTES
              for i in range(MAX_LABELS)}  # fmt: skip
    url = URL + "?" + "a" * (MAX_URL_BYTES - len(URL) - 1)
    cmd = PayCommand("k1", "POST", url, demand_header("3000"), labels=labels)
    receipt = ledger.service.pay(ledger.caller, cmd)
    (row,) = ledger.service.list_payments(ledger.caller, 10)
    assert (row.payment_id, row.url, dict(row.labels)) == (receipt.payment_id, url, labels)
