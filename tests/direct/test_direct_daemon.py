"""The real daemon: direct transfers from two caller processes, the client's auth flow, config."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.direct.conftest import CHAT, PRICE, RECIPIENT, DirectApi, direct_header
from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from walletd.client import ChainError, WalletClient, WalletdAuth, WalletdSettings
from walletd.domain.payment import PaymentStatus as S

PROCESSES, THREADS = 2, 6


@pytest.fixture
def home(chain: Chain, wallet_home: WalletHome) -> WalletHome:
    """A wallet with an RPC, ETH for gas, 1 USDC, a client ``svc`` and a per-host proof header."""
    (wallet_home.data_dir / "walletd.toml").write_text(
        f'[chain]\nrpc_url = "{chain.rpc_url}"\nreconcile_interval_seconds = 0.2\n'
        "[direct]\nreceipt_timeout_seconds = 60\n"
        '[direct.hosts]\n"api.example" = "X-Other-Proof"\n'
    )
    chain.mint(wallet_home.address, 1_000_000)
    chain.set_eth_balance(wallet_home.address, 10**18)
    wallet_home.add_client("svc")
    return wallet_home


@pytest.fixture
def daemon_on_chain(home: WalletHome) -> Iterator[Daemon]:
    running = Daemon(home)
    yield running
    assert running.stop() == 0, running.logs()


def _client(home: WalletHome) -> WalletClient:
    return WalletClient(socket=home.socket, token_file=home.root / "svc.token", timeout=120)


def _callers(home: WalletHome, header: str) -> tuple[list[str], dict[str, int]]:
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                "tests.direct.pay_worker",
                str(home.socket),
                str(home.root / "svc.token"),
                str(THREADS),
                f"p{p}",
                header,
            ],
            stdout=subprocess.PIPE,
            text=True,
            env=home.env,
        )
        for p in range(PROCESSES)
    ]
    outputs = [p.communicate(timeout=240)[0] for p in procs]
    assert all(p.returncode == 0 for p in procs)
    results = [json.loads(out) for out in outputs]
    refused: dict[str, int] = {}
    for r in results:
        for reason, count in r["refused"].items():
            refused[reason] = refused.get(reason, 0) + count
    return [h for r in results for h in r["paid"]], refused


def _nonces(chain: Chain, hashes: list[str]) -> list[int]:
    return sorted(int(chain.w3.eth.get_transaction(h)["nonce"]) for h in hashes)  # type: ignore[arg-type]


@pytest.mark.slow
def test_two_processes_pay_direct_demands_through_one_daemon_without_nonce_clashes(
    chain: Chain, home: WalletHome, daemon_on_chain: Daemon
) -> None:
    home.admin("budget", "set", "svc", "--daily", "1")
    before = chain.usdc_balance(RECIPIENT)
    paid, refused = _callers(home, direct_header())
    total = PROCESSES * THREADS
    assert (len(paid), refused) == (total, {})
    assert _nonces(chain, paid) == list(range(total))
    assert chain.usdc_balance(RECIPIENT) == before + total * PRICE
    with _client(home) as wallet:
        assert {p.status for p in wallet.list_payments()} == {S.SETTLED}


@pytest.mark.slow
def test_concurrent_direct_pays_past_the_budget_pay_exactly_the_budget(
    chain: Chain, home: WalletHome, daemon_on_chain: Daemon
) -> None:
    home.admin("budget", "set", "svc", "--daily", str(10 * PRICE / 1_000_000))
    before = chain.usdc_balance(RECIPIENT)
    paid, refused = _callers(home, direct_header())
    assert (len(paid), refused) == (10, {"BUDGET_EXCEEDED": PROCESSES * THREADS - 10})
    assert _nonces(chain, paid) == list(range(10))
    assert chain.usdc_balance(RECIPIENT) == before + 10 * PRICE


def test_the_client_auth_flow_pays_the_devnet_direct_mode(
    chain: Chain, home: WalletHome, daemon_on_chain: Daemon, direct_api: DirectApi
) -> None:
    home.admin("budget", "set", "svc", "--daily", "1")
    before = chain.usdc_balance(direct_api.pay_to)
    settings = WalletdSettings(socket=home.socket, token_file=home.root / "svc.token")
    auth = WalletdAuth(walletd=settings, client_follows_redirects=False)
    with httpx.Client(auth=auth, timeout=120) as http:
        response = http.post(direct_api.url(), json=CHAT)
    assert response.status_code == 200, response.text
    assert chain.usdc_balance(direct_api.pay_to) == before + PRICE
    with _client(home) as wallet:
        (payment,) = wallet.list_payments()
        assert (payment.status, payment.amount) == (S.SETTLED, PRICE)
        other = wallet.pay("k-other", "POST", "http://api.example/v1/chat",
                           payment_required=direct_header())  # fmt: skip
        assert other.header_name == "X-Other-Proof"  # the per-host name from [direct.hosts]


def test_a_direct_pay_answers_with_its_hash_before_the_callers_deadline_when_not_yet_mined(
    chain: Chain, home: WalletHome, daemon_on_chain: Daemon
) -> None:
    home.admin("budget", "set", "svc", "--daily", "1")
    before = chain.usdc_balance(RECIPIENT)
    chain.w3.provider.make_request("evm_setAutomine", [False])  # type: ignore[arg-type]
    try:
        with WalletClient(socket=home.socket, token_file=home.root / "svc.token",
                          timeout=4) as wallet:  # fmt: skip
            started = time.monotonic()
            receipt = wallet.pay("k-slow", "POST", "http://127.0.0.1:9/v1/chat",
                                 payment_required=direct_header())  # fmt: skip
            waited = time.monotonic() - started
            (payment,) = wallet.list_payments()
        assert waited < 4  # not the configured 60 s receipt wait: the client's deadline ruled
        assert payment.status == S.SIGNED  # sent, not mined: the reconciler follows it
        tx_hash = receipt.header_value
        assert chain.w3.eth.get_transaction(tx_hash)["blockNumber"] is None  # type: ignore[arg-type]
    finally:
        chain.w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]
    chain.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]
    with _client(home) as wallet:
        deadline = time.monotonic() + 30
        while wallet.list_payments()[0].status != S.SETTLED and time.monotonic() < deadline:
            time.sleep(0.1)
        assert wallet.list_payments()[0].status == S.SETTLED
    assert chain.usdc_balance(RECIPIENT) == before + PRICE


def test_a_daemon_without_an_rpc_refuses_direct_demands_and_records_nothing(
    wallet_home: WalletHome, daemon: Daemon
) -> None:
    wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    with _client(wallet_home) as wallet:
        with pytest.raises(ChainError) as refused:
            wallet.pay("k1", "POST", "http://api.example/v1/chat",
                       payment_required=direct_header())  # fmt: skip
        assert refused.value.reason == "CHAIN_UNAVAILABLE"
        assert wallet.list_payments() == []
