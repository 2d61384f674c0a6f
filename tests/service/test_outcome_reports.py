"""Client reports of what a server said: decoded without trusting it; only a signed payment moves."""

from __future__ import annotations

import base64
import json

import pytest

from tests.plugins.daemon import demand_header
from tests.service.conftest import Ledger
from walletd.db import transaction
from walletd.domain.payment import PayCommand, PaymentStatus
from walletd.errors import NotFoundError, UnauthenticatedError
from walletd.service import admin
from walletd.service.outcome import Outcome, claimed_tx, decode_outcome, next_status


def _b64(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


@pytest.mark.parametrize(
    "value",
    ["not base64!", base64.b64encode(b"not json").decode(), _b64([1, 2]), _b64("a string")],
    ids=["bad-base64", "bad-json", "a-list", "a-string"],
)
def test_garbage_in_the_header_decodes_as_nothing_said(value: str) -> None:
    seen = decode_outcome(200, value)
    assert seen == Outcome(200, None, "", "", "", "")
    assert claimed_tx(seen) == ""


def test_fields_of_the_wrong_type_are_dropped_and_long_ones_cut() -> None:
    seen = decode_outcome(200, _b64({"success": "yes", "transaction": 7, "payer": "p" * 300}))
    assert (seen.success, seen.transaction, len(seen.payer)) == (None, "", 200)


def test_only_a_signed_payment_moves_on_a_report() -> None:
    settled = decode_outcome(200, _b64({"success": True, "transaction": "0x" + "ab" * 32}))
    assert next_status(PaymentStatus.SIGNED, settled) == PaymentStatus.SETTLEMENT_PENDING
    assert next_status(PaymentStatus.SETTLED, settled) == PaymentStatus.SETTLED
    assert next_status(PaymentStatus.EXPIRED, decode_outcome(402, "")) == PaymentStatus.EXPIRED


def test_a_pending_settlement_and_a_refusal_are_told_apart() -> None:
    pending = decode_outcome(200, _b64({"success": False, "errorReason": "settlement_pending"}))
    assert next_status(PaymentStatus.SIGNED, pending) == PaymentStatus.SETTLEMENT_PENDING
    assert next_status(PaymentStatus.SIGNED, decode_outcome(402, "")) == PaymentStatus.REJECTED
    assert next_status(PaymentStatus.SIGNED, decode_outcome(200, "")) == PaymentStatus.SIGNED


def test_a_report_moves_the_callers_payment_once_and_logs_every_report(ledger: Ledger) -> None:
    paid = ledger.service.pay(
        ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header("2500"))
    )
    settled = _b64({"success": True, "transaction": "0x" + "cd" * 32})
    service = ledger.service
    assert service.report_outcome(ledger.caller, paid.payment_id, 200, settled) == (
        PaymentStatus.SETTLEMENT_PENDING
    )
    assert service.report_outcome(ledger.caller, paid.payment_id, 402, "") == (
        PaymentStatus.SETTLEMENT_PENDING  # only a signed payment moves on a report
    )
    with ledger.store.read() as tx:
        causes = [e for e in tx.events(paid.payment_id) if e.cause == "client_report"]
    assert len(causes) == 2


def test_a_report_on_another_clients_payment_is_not_found(ledger: Ledger) -> None:
    paid = ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header()))
    other = ledger.service.authenticate(admin.add_client(ledger.store, "other", frozenset({"pay"})))
    with pytest.raises(NotFoundError):
        ledger.service.report_outcome(other, paid.payment_id, 200, "")


def test_a_remembered_revoked_token_cannot_report_an_outcome(ledger: Ledger) -> None:
    """ReportOutcome identifies from memory; its transaction still sees the revocation."""
    paid = ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header()))
    remembered = ledger.service.identify(ledger.token)
    admin.revoke_client(ledger.store, "svc")
    settled = _b64({"success": True, "transaction": "0x" + "cd" * 32})
    with pytest.raises(UnauthenticatedError):
        ledger.service.report_outcome(remembered, paid.payment_id, 200, settled)
    with ledger.store.read() as tx:
        assert tx.payment(paid.payment_id).status == PaymentStatus.SIGNED
        assert all(e.cause != "client_report" for e in tx.events(paid.payment_id))


def test_a_report_writes_through_plain_sql_without_an_orm_session(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The report's reads and writes are the ledger's plain statements (``walletd.db.hot``)."""
    paid = ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header()))

    def no_session(self: object) -> None:
        raise AssertionError("the report opened an ORM session")

    monkeypatch.setattr(transaction.Transaction, "_session", property(no_session))
    settled = _b64({"success": True, "transaction": "0x" + "cd" * 32})
    status = ledger.service.report_outcome(ledger.caller, paid.payment_id, 200, settled)
    assert status == PaymentStatus.SETTLEMENT_PENDING
    ledger.service.report_outcome(ledger.caller, paid.payment_id, 200, settled)  # no move


def test_a_payment_the_session_holds_is_read_again_after_a_move(ledger: Ledger) -> None:
    paid = ledger.service.pay(ledger.caller, PayCommand("a", "GET", "http://h/x", demand_header()))
    with ledger.store.write() as tx:
        assert tx.tracked_payment(paid.payment_id).status == PaymentStatus.SIGNED
        tx.record_reported_tx(paid.payment_id, "0x" + "ab" * 32)
        assert tx.move(
            paid.payment_id, PaymentStatus.SIGNED, PaymentStatus.SETTLEMENT_PENDING, 1, "t", {}
        )
        again = tx.tracked_payment(paid.payment_id)
    assert again.status == PaymentStatus.SETTLEMENT_PENDING
    assert again.reported_tx == "0x" + "ab" * 32
