"""After `walletd key rotate`: new payments use the new key, the old key's are still followed.

The real daemon and CLI on anvil. Authorizations signed by the old key before
the rotation are settled, expired and cancelled by their own payer (the row's
``payer``), not by whatever key the daemon now holds.
"""

from __future__ import annotations

import base64
import json
import time
from typing import Any

import httpx
import pytest

from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from tests.plugins.devnet import DevnetApi
from tests.reconcile.conftest import CHAT, MARGIN_S, svc_client
from walletd.client import WalletClient
from walletd.domain.payment import PaymentStatus as S, PayReceipt


@pytest.fixture
def home(home: WalletHome, chain: Chain) -> WalletHome:
    chain.set_eth_balance(home.address, 10**18)  # gas for the old key's cancel
    return home


def _pay(wallet: WalletClient, api: DevnetApi, http: httpx.Client, key: str) -> PayReceipt:
    url = api.url("/v1/chat/completions")
    demand = http.post(url, json=CHAT).headers["payment-required"]
    return wallet.pay(key, "POST", url, payment_required=demand)


def _send(api: DevnetApi, http: httpx.Client, receipt: PayReceipt) -> httpx.Response:
    headers = {receipt.header_name: receipt.header_value}
    return http.post(api.url("/v1/chat/completions"), json=CHAT, headers=headers)


def _payer_of(receipt: PayReceipt) -> str:
    return str(
        json.loads(base64.b64decode(receipt.header_value))["payload"]["authorization"]["from"]
    )


def _statuses(wallet: WalletClient) -> dict[str, str]:
    return {p.payment_id: p.status for p in wallet.list_payments()}


def _wait_for(wallet: WalletClient, payment_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _statuses(wallet)[payment_id] != status:
        assert time.monotonic() < deadline, f"{payment_id} never became {status}"
        time.sleep(0.1)


def _spent(wallet: WalletClient) -> int:
    return next(w.spent for w in wallet.get_budget().windows if w.window == "daily")


def _cli_json(home: WalletHome, *args: str) -> Any:
    return json.loads(home.admin(*args, "--json").stdout)


def _old_key_payments(
    home: WalletHome, api: DevnetApi, http: httpx.Client
) -> dict[str, PayReceipt]:
    """With the original key: one the server settles (nobody reports it), one never sent,
    one the server refused (``rejected``, cancellable)."""
    daemon = Daemon(home)
    try:
        with svc_client(home) as wallet:
            made = {key: _pay(wallet, api, http, key) for key in ("settles", "expires", "cancels")}
            assert _send(api, http, made["settles"]).status_code == 200
            assert wallet.report_outcome(made["cancels"].payment_id, 402, "") == S.REJECTED
    finally:
        assert daemon.stop() == 0, daemon.logs()
    return made


def test_after_rotation_new_payments_use_the_new_key_and_old_ones_are_still_reconciled(
    chain: Chain, devnet_api: DevnetApi, home: WalletHome, http: httpx.Client
) -> None:
    old = _old_key_payments(home, devnet_api, http)
    assert {_payer_of(r) for r in old.values()} == {home.address}
    rotated = _cli_json(home, "key", "rotate", "--passphrase-file", str(home.passphrase_file),
                        "--kdf-log-n", "10")  # fmt: skip
    new_address = rotated["new_address"]
    chain.mint(new_address, 1_000_000)
    daemon = Daemon(home)
    try:
        with svc_client(home) as wallet:
            fresh = _pay(wallet, devnet_api, http, "after-rotation")
            assert _payer_of(fresh) == new_address != home.address
            cancel = _cli_json(home, "payment", "cancel", old["cancels"].payment_id,
                               "--passphrase-file", str(home.passphrase_file))  # fmt: skip
            assert cancel["status"] == S.CANCELLED  # signed by the retired key
            last = max(old["settles"].valid_before, old["expires"].valid_before)
            chain.increase_time(last + MARGIN_S - chain.timestamp())
            _wait_for(wallet, old["settles"].payment_id, S.SETTLED)
            _wait_for(wallet, old["expires"].payment_id, S.EXPIRED)
            assert _spent(wallet) == old["settles"].amount + fresh.amount
            assert _cli_json(home, "status")["address"] == new_address
    finally:
        assert daemon.stop() == 0, daemon.logs()
    assert _cli_json(home, "audit", "verify")["ok"] is True
