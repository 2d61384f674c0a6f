"""The real daemon and CLI: the reconciler loop, `walletd reconcile`, `status`, `payment cancel`.

The daemon reads ``[chain]`` from DIR/walletd.toml, so the CLI commands run
against the same data dir pick up the same RPC and margin.
"""

from __future__ import annotations

import json
import time
from typing import Any

import httpx

from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from tests.plugins.devnet import DevnetApi
from tests.reconcile.conftest import CHAT, MARGIN_S, settled_tx, svc_client
from walletd.client import WalletClient
from walletd.domain.payment import PaymentStatus as S


def _pay(wallet: WalletClient, api: DevnetApi, http: httpx.Client, key: str):
    url = api.url("/v1/chat/completions")
    demand = http.post(url, json=CHAT).headers["payment-required"]
    return wallet.pay(key, "POST", url, payment_required=demand)


def _send(api: DevnetApi, http: httpx.Client, receipt) -> httpx.Response:
    headers = {receipt.header_name: receipt.header_value}
    return http.post(api.url("/v1/chat/completions"), json=CHAT, headers=headers)


def _spent(wallet: WalletClient) -> int:
    return next(w.spent for w in wallet.get_budget().windows if w.window == "daily")


def _statuses(wallet: WalletClient) -> dict[str, str]:
    return {p.payment_id: p.status for p in wallet.list_payments()}


def _wait_for(wallet: WalletClient, payment_id: str, status: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while _statuses(wallet)[payment_id] != status:
        assert time.monotonic() < deadline, f"{payment_id} never became {status}"
        time.sleep(0.1)


def _cli_json(home: WalletHome, *args: str) -> Any:
    return json.loads(home.admin(*args, "--json").stdout)


def test_restart_in_the_middle_stays_consistent(
    chain: Chain, devnet_api: DevnetApi, home: WalletHome, http: httpx.Client
) -> None:
    daemon = Daemon(home)
    try:
        with svc_client(home) as wallet:
            settled = _pay(wallet, devnet_api, http, "settles")
            paid = _send(devnet_api, http, settled)
            assert paid.status_code == 200, paid.text
            wallet.report_outcome(settled.payment_id, 200, paid.headers["payment-response"])
            _wait_for(wallet, settled.payment_id, S.SETTLED)  # the daemon's own loop
            never = _pay(wallet, devnet_api, http, "never-sent")
            assert _spent(wallet) == 6000
    finally:
        assert daemon.stop() == 0, daemon.logs()
    assert _cli_json(home, "reconcile") == {"checked": 1, "moved": {}, "elsewhere": {}}
    chain.increase_time(never.valid_before + MARGIN_S - chain.timestamp())
    expired = {"checked": 1, "moved": {S.EXPIRED: 1}, "elsewhere": {}}
    assert _cli_json(home, "reconcile") == expired
    assert _cli_json(home, "reconcile") == {"checked": 0, "moved": {}, "elsewhere": {}}
    daemon = Daemon(home)
    try:
        with svc_client(home) as wallet:
            assert _statuses(wallet) == {settled.payment_id: S.SETTLED, never.payment_id: S.EXPIRED}
            assert _spent(wallet) == 3000
    finally:
        assert daemon.stop() == 0, daemon.logs()


def test_the_daemon_loop_expires_after_time_travel_and_budget_comes_back(
    chain: Chain, devnet_api: DevnetApi, home: WalletHome, http: httpx.Client
) -> None:
    daemon = Daemon(home)
    try:
        with svc_client(home) as wallet:
            receipt = _pay(wallet, devnet_api, http, "k1")
            time.sleep(1)  # several loop intervals: still counted before validBefore
            assert (_statuses(wallet)[receipt.payment_id], _spent(wallet)) == (S.SIGNED, 3000)
            chain.increase_time(receipt.valid_before + MARGIN_S - chain.timestamp())
            _wait_for(wallet, receipt.payment_id, S.EXPIRED)
            assert _spent(wallet) == 0
    finally:
        assert daemon.stop() == 0, daemon.logs()


def test_status_and_cli_cancel_with_the_daemon_running(
    chain: Chain, devnet_api: DevnetApi, home: WalletHome, http: httpx.Client
) -> None:
    config = home.data_dir / "walletd.toml"
    config.write_text(config.read_text() + 'low_balance = "5.00"\n')  # over the 1 USDC held
    chain.set_eth_balance(home.address, 10**18)
    daemon = Daemon(home)
    try:
        with svc_client(home) as wallet:
            receipt = _pay(wallet, devnet_api, http, "k1")
            assert wallet.report_outcome(receipt.payment_id, 402, "") == S.REJECTED
            status = _cli_json(home, "status")
            assert status == {
                "address": home.address, "frozen": False, "network": "eip155:8453",
                "usdc": "1000000", "eth_wei": str(10**18),
                "outstanding": {"count": 1, "amount": "3000"}, "chain_error": None,
                "low_balance": True, "outstanding_retired_keys": {"count": 0, "amount": "0"},
            }  # fmt: skip
            out = _cli_json(home, "payment", "cancel", receipt.payment_id,
                            "--passphrase-file", str(home.passphrase_file))  # fmt: skip
            assert out == {"payment_id": receipt.payment_id, "status": S.CANCELLED}
            assert chain.timestamp() < receipt.valid_before
            assert (_statuses(wallet)[receipt.payment_id], _spent(wallet)) == (S.CANCELLED, 0)
            assert _cli_json(home, "status")["outstanding"] == {"count": 0, "amount": "0"}
    finally:
        assert daemon.stop() == 0, daemon.logs()


def test_without_an_rpc_reconcile_fails_closed_and_status_shows_the_ledger(
    wallet_home: WalletHome,
) -> None:
    proc = wallet_home.admin("reconcile", "--json", check=False)
    assert proc.returncode == 1
    assert json.loads(proc.stderr)["error"]["reason"] == "CHAIN_UNAVAILABLE"
    status = _cli_json(wallet_home, "status")
    assert (status["address"], status["usdc"], status["outstanding"]["count"]) == (
        wallet_home.address, None, 0,
    )  # fmt: skip


def test_settled_payment_is_found_by_the_cli_with_an_explicit_rpc_url(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, http: httpx.Client
) -> None:
    chain.mint(wallet_home.address, 1_000_000)
    token = wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    daemon = Daemon(wallet_home)
    try:
        with WalletClient(socket=wallet_home.socket, token_file=token) as wallet:
            receipt = _pay(wallet, devnet_api, http, "k1")
            paid = _send(devnet_api, http, receipt)
            chain.increase_time(receipt.valid_before + MARGIN_S - chain.timestamp())
            out = _cli_json(wallet_home, "reconcile", "--rpc-url", chain.rpc_url)
            assert out == {"checked": 1, "moved": {S.SETTLED: 1}, "elsewhere": {}}
            assert _statuses(wallet)[receipt.payment_id] == S.SETTLED
            assert settled_tx(paid).startswith("0x")
    finally:
        assert daemon.stop() == 0, daemon.logs()


def test_cli_cancel_of_a_payment_that_settled_on_chain_exits_non_zero(
    chain: Chain, devnet_api: DevnetApi, wallet_home: WalletHome, http: httpx.Client
) -> None:
    """The ledger says rejected (a daemon without an RPC), the chain says the server settled it."""
    chain.mint(wallet_home.address, 1_000_000)
    chain.set_eth_balance(wallet_home.address, 10**18)
    wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    daemon = Daemon(wallet_home)
    try:
        with svc_client(wallet_home) as wallet:
            receipt = _pay(wallet, devnet_api, http, "k1")
            paid = _send(devnet_api, http, receipt)
            assert paid.status_code == 200, paid.text
            assert wallet.report_outcome(receipt.payment_id, 402, "") == S.REJECTED
            proc = wallet_home.admin(
                "payment", "cancel", receipt.payment_id, "--rpc-url", chain.rpc_url,
                "--passphrase-file", str(wallet_home.passphrase_file), "--json", check=False,
            )  # fmt: skip
            assert proc.returncode != 0, proc.stdout
            error = json.loads(proc.stderr)["error"]
            assert "already settled on chain" in error["message"]
            assert error["details"]["tx"] == settled_tx(paid)
            assert _statuses(wallet)[receipt.payment_id] == S.SETTLED
    finally:
        assert daemon.stop() == 0, daemon.logs()


def test_cli_cancel_of_an_unknown_payment_says_it_does_not_exist(
    wallet_home: WalletHome,
) -> None:
    proc = wallet_home.admin("payment", "cancel", "pay_nonexistent", "--json", check=False)
    assert proc.returncode != 0
    error = json.loads(proc.stderr)["error"]
    assert error["reason"] == "NOT_FOUND"
    assert "pay_nonexistent" in error["message"]
