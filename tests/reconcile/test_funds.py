"""INSUFFICIENT_FUNDS: the cached USDC balance less outstanding authorizations, and low balance."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from tests.reconcile.conftest import FUNDS, Wallet
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.errors import InsufficientFundsError
from walletd.service import admin
from walletd.service.reconcile import FundsCache, ReconcileLoop, require_funds
from walletd.service.wallet import WalletService


def test_without_a_known_balance_pay_does_not_judge_funds() -> None:
    require_funds(None, 10**12, 1)
    require_funds(FundsCache(), 10**12, 1)


def test_outstanding_plus_amount_must_fit_the_balance() -> None:
    cache = FundsCache()
    cache.update(5000)
    require_funds(cache, 2000, 3000)
    with pytest.raises(InsufficientFundsError) as info:
        require_funds(cache, 2001, 3000)
    assert info.value.details == {"balance": "5000", "outstanding": "2001", "requested": "3000"}


def test_low_balance_logs_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    cache = FundsCache(low_balance=10_000)
    with caplog.at_level(logging.WARNING, "walletd.reconcile"):
        cache.update(9_999)
    assert "low USDC balance" in caplog.text


def test_pay_refuses_what_the_refreshed_balance_cannot_cover(
    wallet: Wallet, http: httpx.Client
) -> None:
    cache, stop = FundsCache(), threading.Event()
    loop = ReconcileLoop(wallet.store, lambda: wallet.reader, 0.1, 30, stop,
                         funds=(wallet.address, cache))  # fmt: skip
    loop.start()
    try:
        deadline = time.monotonic() + 30
        while cache.balance() != FUNDS:
            assert time.monotonic() < deadline
            time.sleep(0.05)
        admin.set_budget(wallet.store, "svc", admin.BudgetChange(daily=10 * FUNDS))
        service = WalletService(wallet.store, wallet.signer, Limits(), funds=cache)
        url, demand = wallet.api.url("/v1/chat/completions"), wallet.demand(http)
        for i in range(FUNDS // 3000):
            service.pay(wallet.caller, PayCommand(f"k{i}", "POST", url, demand))
        with pytest.raises(InsufficientFundsError):
            service.pay(wallet.caller, PayCommand("one-too-many", "POST", url, demand))
    finally:
        stop.set()
        loop.join(10)
