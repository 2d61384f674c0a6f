"""A refusal records the amount asked, so spend-report's "USDC asked" is right (real daemon)."""

from __future__ import annotations

import base64
import json

import pytest

from tests.plugins.daemon import PAY_TO, Daemon, WalletHome, demand_header
from walletd.client import WalletClient
from walletd.domain.networks import BASE
from walletd.errors import BudgetExceededError, InvalidDemandError

URL = "http://127.0.0.1:9/v1/chat/completions"


def _entry(amount: str, **overrides: object) -> dict[str, object]:
    entry: dict[str, object] = {
        "scheme": "exact", "network": BASE.caip2, "asset": BASE.usdc, "amount": amount,
        "payTo": PAY_TO, "maxTimeoutSeconds": 300, "extra": {"name": "USD Coin", "version": "2"},
    }  # fmt: skip
    entry.update(overrides)
    return entry


def _demand(*entries: dict[str, object]) -> str:
    doc = {"x402Version": 2, "resource": {"url": URL}, "accepts": list(entries)}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _asked(home: WalletHome) -> dict[tuple[str, str], int]:
    report = json.loads(home.admin("spend-report", "--format", "json").stdout)
    return {(r["reason"], r["rule"]): r["amount"] for r in report["refusals"]}


def test_refusals_record_the_amount_asked(wallet_home: WalletHome, daemon: Daemon) -> None:
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--per-request", "0.004", "--daily", "5")
    with WalletClient(socket=wallet_home.socket, token_file=token) as client:
        with pytest.raises(BudgetExceededError):
            client.pay("k-budget", "POST", URL, payment_required=demand_header("20000"))
        # The cheapest entry is on a network walletd does not pay on: the budget judged 5000.
        two = _demand(_entry("1000", network="eip155:1"), _entry("5000"))
        with pytest.raises(BudgetExceededError) as info:
            client.pay("k-two", "POST", URL, payment_required=two)
        assert info.value.requested == 5000
        # Malformed for another field, but the amount reads: it is what was asked.
        bad_asset = _demand(_entry("7000", asset="0x12"))
        with pytest.raises(InvalidDemandError):
            client.pay("k-invalid", "POST", URL, payment_required=bad_asset)
    assert _asked(wallet_home) == {
        ("BUDGET_EXCEEDED", "per_request"): 20000 + 5000,
        ("INVALID_DEMAND", ""): 7000,
    }
