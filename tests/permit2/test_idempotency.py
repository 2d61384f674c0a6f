"""Idempotency over Permit2 exact and upto: a retry gets the very same signed permit back."""

from __future__ import annotations

import pytest

from tests.permit2.conftest import URL, Bed
from tests.permit2.test_permit2_exact import entry, header
from tests.permit2.test_upto import UNIT, upto_entry
from walletd.domain.payment import PayCommand
from walletd.errors import IdempotencyConflictError

pytestmark = pytest.mark.chain  # a MegaETH-id anvil of its own (tests/permit2/conftest.py)


@pytest.mark.parametrize("scheme", ["permit2", "upto"])
def test_same_key_and_demand_returns_the_same_permit_signed_once(bed: Bed, scheme: str) -> None:
    accepted = entry(1500 * UNIT) if scheme == "permit2" else upto_entry(bed, 1500 * UNIT)
    calls, spent = bed.signer.calls, bed.spent_today()
    key = f"idem-{scheme}"
    first = bed.service.pay(bed.caller, PayCommand(key, "POST", URL, header(accepted)))
    again = bed.service.pay(bed.caller, PayCommand(key, "POST", URL, header(accepted)))
    assert (again.header_value, again.reused) == (first.header_value, True)
    assert bed.signer.calls - calls == 1 and bed.spent_today() - spent == 1500
    other = {**accepted, "amount": str(1600 * UNIT)}
    with pytest.raises(IdempotencyConflictError):
        bed.service.pay(bed.caller, PayCommand(key, "POST", URL, header(other)))
    assert bed.row(first.payment_id).kind == scheme
