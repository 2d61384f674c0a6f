"""Every Pay rule refuses with a precise reason, signs nothing and counts nothing."""

from __future__ import annotations

import base64
import json

import pytest
from sqlalchemy import func, select

from tests.plugins.daemon import PAY_TO, demand_header
from tests.service.conftest import Ledger
from walletd.db import tables
from walletd.domain.networks import BASE, BASE_SEPOLIA
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.errors import (
    BudgetExceededError,
    FrozenError,
    IdempotencyConflictError,
    InvalidDemandError,
    PolicyDeniedError,
    RefusedError,
    UnauthenticatedError,
)
from walletd.service import admin
from walletd.service.wallet import WalletService

URL = "http://127.0.0.1:9/v1/chat/completions"


def _pay(ledger: Ledger, header: str, key: str = "k1", url: str = URL, body: bytes = b""):
    return ledger.service.pay(ledger.caller, PayCommand(key, "POST", url, header, body))


def _assert_nothing_signed_or_counted(ledger: Ledger) -> None:
    assert ledger.signer.calls == 0
    state = ledger.service.get_budget(ledger.caller)
    assert all(w.spent == 0 for w in state.windows)
    assert ledger.service.list_payments(ledger.caller, 10) == []


def _b64(doc: object) -> str:
    return base64.b64encode(json.dumps(doc).encode()).decode()


POLICY_CASES = {
    "scheme": demand_header(scheme="exact-v9"),
    "network": demand_header(network="eip155:1"),
    "network_sepolia_not_opted_in": demand_header(network=BASE_SEPOLIA.caip2, asset=BASE_SEPOLIA.usdc),
    "asset": demand_header(asset="0x" + "ab" * 20),
    "eip712_domain_name": demand_header(extra={"name": "USDC", "version": "2"}),
    "eip712_domain_version": demand_header(extra={"name": "USD Coin", "version": "1"}),
    "transfer_method": demand_header(extra={"assetTransferMethod": "eip2612"}),
    "permit2_address": demand_header(extra={"assetTransferMethod": "permit2", "spender": "0x" + "ab" * 20}),
    "payee_zero": demand_header(payTo="0x" + "00" * 20),
    "amount_positive": demand_header("0"),
    "validity": demand_header(maxTimeoutSeconds=365 * 24 * 3600),
}  # fmt: skip
RULE_OF = {"network_sepolia_not_opted_in": "network", "eip712_domain_name": "eip712_domain",
           "eip712_domain_version": "eip712_domain"}  # fmt: skip


@pytest.mark.parametrize("case", sorted(POLICY_CASES))
def test_policy_rule_refuses_and_names_the_rule(ledger: Ledger, case: str) -> None:
    with pytest.raises(PolicyDeniedError) as err:
        _pay(ledger, POLICY_CASES[case])
    assert err.value.rule == RULE_OF.get(case, case)
    _assert_nothing_signed_or_counted(ledger)


def test_payee_outside_allowlist_is_refused(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(payees=frozenset({"0x" + "12" * 20})))
    with pytest.raises(PolicyDeniedError) as err:
        _pay(ledger, demand_header())
    assert err.value.rule == "payee_allowlist"
    _assert_nothing_signed_or_counted(ledger)


def test_host_outside_allowlist_is_refused(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(hosts=frozenset({"api.example"})))
    with pytest.raises(PolicyDeniedError) as err:
        _pay(ledger, demand_header())
    assert err.value.rule == "host_allowlist"
    _assert_nothing_signed_or_counted(ledger)


def test_global_payee_allowlist_applies_to_every_client(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, None, admin.BudgetChange(payees=frozenset({"0x" + "12" * 20})))
    with pytest.raises(PolicyDeniedError):
        _pay(ledger, demand_header())
    _assert_nothing_signed_or_counted(ledger)


@pytest.mark.parametrize(
    ("window", "change", "amount"),
    [
        ("per_request", admin.BudgetChange(per_request=2999), "3000"),
        ("hourly", admin.BudgetChange(hourly=2999), "3000"),
        ("daily", admin.BudgetChange(daily=2999), "3000"),
        ("monthly", admin.BudgetChange(monthly=2999), "3000"),
        ("total", admin.BudgetChange(total=2999), "3000"),
    ],
)
def test_budget_window_refuses_with_limit_spent_and_requested(
    ledger: Ledger, window: str, change: admin.BudgetChange, amount: str
) -> None:
    admin.set_budget(ledger.store, "svc", change)
    with pytest.raises(BudgetExceededError) as err:
        _pay(ledger, demand_header(amount))
    assert err.value.details["window"] == window
    assert (err.value.limit, err.value.spent, err.value.requested) == (2999, 0, 3000)
    _assert_nothing_signed_or_counted(ledger)


def test_global_budget_caps_all_clients(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, None, admin.BudgetChange(daily=1000))
    with pytest.raises(BudgetExceededError) as err:
        _pay(ledger, demand_header())
    assert err.value.details["window"] == "global_daily"
    _assert_nothing_signed_or_counted(ledger)


def test_client_without_any_budget_is_refused(ledger: Ledger) -> None:
    admin.set_budget(ledger.store, "svc", admin.BudgetChange(clear=True))
    with pytest.raises(PolicyDeniedError) as err:
        _pay(ledger, demand_header())
    assert err.value.rule == "budget_unset"
    _assert_nothing_signed_or_counted(ledger)


def test_frozen_wallet_refuses(ledger: Ledger) -> None:
    admin.set_frozen(ledger.store, True)
    with pytest.raises(FrozenError):
        _pay(ledger, demand_header())
    _assert_nothing_signed_or_counted(ledger)


def test_revoked_client_is_refused_at_once(ledger: Ledger) -> None:
    admin.revoke_client(ledger.store, "svc")
    with pytest.raises(UnauthenticatedError):
        _pay(ledger, demand_header())
    with pytest.raises(UnauthenticatedError):
        ledger.service.authenticate(ledger.token)
    assert ledger.signer.calls == 0


def test_remembered_token_is_refused_at_its_first_pay_after_revocation(ledger: Ledger) -> None:
    """identify answers from memory; the Pay transaction still sees the revocation."""
    command = PayCommand("k1", "POST", URL, demand_header(), b"")
    ledger.service.pay(ledger.service.identify(ledger.token), command)
    admin.revoke_client(ledger.store, "svc")
    remembered = ledger.service.identify(ledger.token)  # no read: from memory
    with pytest.raises(UnauthenticatedError):
        ledger.service.pay(remembered, PayCommand("k2", "POST", URL, demand_header(), b""))
    assert ledger.signer.calls == 1


def test_remembered_revoked_token_with_a_malformed_demand_is_unauthenticated(
    ledger: Ledger,
) -> None:
    """The refusal's own transaction checks revocation: nothing is logged for a revoked token."""
    remembered = ledger.service.identify(ledger.token)
    admin.revoke_client(ledger.store, "svc")
    with pytest.raises(UnauthenticatedError):
        ledger.service.pay(remembered, PayCommand("k1", "POST", URL, "%%%not-base64%%%", b""))
    with ledger.store.engines.read.connect() as conn:
        assert conn.execute(select(func.count()).select_from(tables.Decision)).scalar() == 0


def test_identify_remembers_a_live_token_without_reading_the_ledger(
    ledger: Ledger, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_read(token_hash: str) -> None:
        raise AssertionError("read the ledger")

    monkeypatch.setattr(ledger.store, "client_by_token_hash", no_read)
    assert ledger.service.identify(ledger.token) == ledger.caller  # the fixture authenticated it


def test_identify_refuses_unknown_and_revoked_tokens(ledger: Ledger) -> None:
    with pytest.raises(UnauthenticatedError):
        ledger.service.identify("wdt_" + "A" * 43)
    with pytest.raises(UnauthenticatedError):
        ledger.service.identify("")
    admin.revoke_client(ledger.store, "svc")
    fresh = WalletService(ledger.store, ledger.signer, Limits())  # nothing remembered
    with pytest.raises(UnauthenticatedError):
        fresh.identify(ledger.token)
    with pytest.raises(UnauthenticatedError):  # a refused read forgets the token ...
        ledger.service.authenticate(ledger.token)
    with pytest.raises(UnauthenticatedError):  # ... so identify reads again
        ledger.service.identify(ledger.token)


INVALID = {
    "not_base64": "%%%not-base64%%%",
    "base64_not_json": base64.b64encode(b"\xff\xfe garbage").decode(),
    "json_not_object": _b64([1, 2, 3]),
    "unknown_version": _b64({"x402Version": 3, "accepts": [{}]}),
    "empty_accepts": _b64({"x402Version": 2, "accepts": []}),
    "decimal_amount": demand_header("3000.5"),
    "negative_amount": demand_header("-3000"),
    "hex_amount": demand_header("0xbb8"),
    "plus_amount": demand_header("+3000"),
    "exponent_amount": demand_header("3e3"),
    "numeric_amount": demand_header(3000),  # type: ignore[arg-type]
    "huge_amount": demand_header("9" * 80),
    "malformed_pay_to": demand_header(payTo="0x1234"),
    "duplicate_keys": base64.b64encode(b'{"x402Version":2,"x402Version":2,"accepts":[]}').decode(),
    "over_size_limit": "A" * (64 * 1024 + 4),
    "nan_constant": base64.b64encode(b'{"x402Version":2,"accepts":[NaN]}').decode(),
}


@pytest.mark.parametrize("case", sorted(INVALID))
def test_malformed_demand_is_invalid(ledger: Ledger, case: str) -> None:
    with pytest.raises(InvalidDemandError):
        _pay(ledger, INVALID[case])
    _assert_nothing_signed_or_counted(ledger)


def test_same_key_with_a_different_demand_is_a_conflict(ledger: Ledger) -> None:
    first = _pay(ledger, demand_header())
    with pytest.raises(IdempotencyConflictError):
        _pay(ledger, demand_header(payTo="0x" + "34" * 20))
    assert ledger.signer.calls == 1
    assert [p.payment_id for p in ledger.service.list_payments(ledger.caller, 10)] == [
        first.payment_id
    ]


def test_every_refusal_is_a_refused_error() -> None:
    for cls in (InvalidDemandError, PolicyDeniedError, BudgetExceededError, FrozenError,
                IdempotencyConflictError):  # fmt: skip
        assert issubclass(cls, RefusedError)


def test_v1_body_demand_is_paid_with_x_payment(ledger: Ledger) -> None:
    body = {
        "x402Version": 1, "error": "X-PAYMENT header is required",
        "accepts": [{"scheme": "exact", "network": "base", "maxAmountRequired": "3000",
                     "asset": BASE.usdc, "payTo": PAY_TO, "resource": URL,
                     "description": "", "mimeType": "", "maxTimeoutSeconds": 60, "extra": {}}],
    }  # fmt: skip
    receipt = _pay(ledger, "", body=json.dumps(body).encode())
    assert receipt.header_name == "X-PAYMENT"
    assert receipt.amount == 3000
