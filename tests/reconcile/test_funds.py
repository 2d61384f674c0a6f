"""INSUFFICIENT_FUNDS: the cached USDC balance less outstanding authorizations, and low balance."""

from __future__ import annotations

import logging
import threading
import time

import httpx
import pytest

from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome, demand_header
from tests.reconcile.conftest import FUNDS, Wallet
from walletd.client import WalletClient
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.errors import InsufficientFundsError
from walletd.service import admin
from walletd.service.reconcile import (
    REFRESH_MIN_AGE_S,
    FundsCache,
    ReconcileLoop,
    require_funds,
)
from walletd.service.wallet import WalletService

URL = "http://127.0.0.1:9/v1/chat/completions"


def test_without_a_known_balance_pay_does_not_judge_funds() -> None:
    require_funds(None, 10**12, 1)
    require_funds(FundsCache(), 10**12, 1)


def test_outstanding_plus_amount_must_fit_the_balance() -> None:
    cache = FundsCache()
    cache.update(5000)
    require_funds(cache, 2000, 3000)
    with pytest.raises(InsufficientFundsError) as info:
        require_funds(cache, 2001, 3000)
    assert info.value.details == {
        "balance": "5000", "outstanding": "2001", "available": "2999", "requested": "3000",
    }  # fmt: skip
    assert str(info.value) == (
        "insufficient USDC: 0.002999 USD available (balance 0.005000 less 0.002001 outstanding "
        "in authorizations not yet settled or released), 0.003000 USD asked"
    )


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


def _pay_once(client: WalletClient, key: str) -> str:
    return client.pay(key, "POST", URL, payment_required=demand_header("3000")).payment_id


def test_the_daemon_reads_the_balance_afresh_before_refusing_for_funds(
    chain: Chain, wallet_home: WalletHome
) -> None:
    """Funded after the loop's last pass: Pay pays at once; a real shortfall names the figures."""
    (wallet_home.data_dir / "walletd.toml").write_text(
        f'[chain]\nrpc_url = "{chain.rpc_url}"\nreconcile_interval_seconds = 3600\n'
        'low_balance = "0.5"\n'
    )
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    daemon = Daemon(wallet_home)
    try:
        deadline = time.monotonic() + 30
        while "low USDC balance" not in daemon.logs():  # the loop's one pass read 0 USDC
            assert time.monotonic() < deadline, daemon.logs()
            time.sleep(0.05)
        with WalletClient(socket=wallet_home.socket, token_file=token) as client:
            with pytest.raises(InsufficientFundsError) as info:
                _pay_once(client, "k-empty")
            assert str(info.value) == (
                "insufficient USDC: 0.000000 USD available (balance 0.000000 less 0.000000 "
                "outstanding in authorizations not yet settled or released), 0.003000 USD asked"
            )
            chain.mint(wallet_home.address, FUNDS)
            time.sleep(REFRESH_MIN_AGE_S)  # the refusal's own read is no longer recent
            assert _pay_once(client, "k-funded").startswith("pay_")
    finally:
        assert daemon.stop() == 0, daemon.logs()
