"""A server's PAYMENT-RESPONSE that lies: success, for someone else's transaction.

The client's report is only a hint (``walletd/service/outcome.py``): a claimed
success may move a payment to ``settlement_pending`` but never to ``settled``,
and never gives budget back. Only the reconciler, reading the chain, may settle
or dispute it; the second test checks that end to end, through the daemon's own
reconcile loop on anvil.
"""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.adversarial.demands import URL, b64, v2_doc
from tests.adversarial.figures import FIGURES
from tests.plugins.adversarial import add_clients, new_wallet_home, running_daemon
from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from tests.plugins.devnet import DevnetApi
from walletd.client import WalletClient
from walletd.domain.payment import PaymentStatus as S

CHAT = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hello"}]}
SOMEONE_ELSE = "0x15d34AAf54267DB7D7c367839AAf71A00a2C6A65"


def claim(tx_hash: str, payer: str, network: str = "eip155:8453") -> str:
    """A PAYMENT-RESPONSE claiming a successful settlement."""
    doc = {"success": True, "transaction": tx_hash, "payer": payer, "network": network}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def _daily(wallet: WalletClient) -> int:
    return next(w.spent for w in wallet.get_budget().windows if w.window == "daily")


def _status(wallet: WalletClient, payment_id: str) -> str:
    return next(p.status for p in wallet.list_payments(limit=1000) if p.payment_id == payment_id)


@pytest.fixture(scope="module")
def payer(module_wallet_home: WalletHome, module_daemon: Daemon) -> Iterator[WalletClient]:
    token = add_clients(module_wallet_home, {"liar-victim": "pay,read"})["liar-victim"]
    with WalletClient(socket=module_wallet_home.socket, token_file=token) as wallet:
        yield wallet


@pytest.mark.parametrize(
    "lie",
    [
        claim("0x" + "ab" * 32, SOMEONE_ELSE),  # a transaction hash of someone else's
        claim("0x" + "cd" * 32, SOMEONE_ELSE, network="eip155:1"),  # on another chain
        claim("not-a-hash", ""),  # garbage
    ],
    ids=["other_payer", "other_chain", "garbage_hash"],
)
def test_a_claimed_success_is_a_hint_never_a_settlement(
    request: pytest.FixtureRequest, payer: WalletClient, lie: str
) -> None:
    before = _daily(payer)
    key = f"lie-{request.node.callspec.id}"
    receipt = payer.pay(key, "POST", URL, payment_required=b64(v2_doc()))
    assert not receipt.reused
    assert payer.report_outcome(receipt.payment_id, 200, lie) == S.SETTLEMENT_PENDING
    # A second, contradictory report does not move it either way.
    assert payer.report_outcome(receipt.payment_id, 200, claim("0x" + "ef" * 32, "")) == (
        S.SETTLEMENT_PENDING
    )
    assert _status(payer, receipt.payment_id) == S.SETTLEMENT_PENDING
    assert _daily(payer) == before + receipt.amount  # still counted
    FIGURES.demand("receipt/lying_success_claim", "NOT_SETTLED")


def _pay_devnet(wallet: WalletClient, api: DevnetApi, http: httpx.Client, key: str):
    url = api.url("/v1/chat/completions")
    demand = http.post(url, json=CHAT).headers["payment-required"]
    return wallet.pay(key, "POST", url, payment_required=demand)


@pytest.fixture
def chain_home(chain: Chain) -> Iterator[WalletHome]:
    with new_wallet_home() as home:
        (home.data_dir / "walletd.toml").write_text(
            f'[chain]\nrpc_url = "{chain.rpc_url}"\n'
            "reconcile_interval_seconds = 0.2\nexpiry_margin_seconds = 30\n"
        )
        chain.mint(home.address, 1_000_000)
        add_clients(home, {"svc": "pay,read"})
        yield home


def test_a_success_claim_for_someone_elses_transaction_is_disputed(
    chain_home: WalletHome, devnet_api: DevnetApi
) -> None:
    with (
        running_daemon(chain_home),
        httpx.Client(timeout=30) as http,
        WalletClient(socket=chain_home.socket, token_file=chain_home.root / "svc.token") as w,
    ):
        honest = _pay_devnet(w, devnet_api, http, "honest")
        headers = {honest.header_name: honest.header_value}
        paid = http.post(devnet_api.url("/v1/chat/completions"), json=CHAT, headers=headers)
        assert paid.status_code == 200, paid.text
        real_tx = json.loads(base64.b64decode(paid.headers["payment-response"]))["transaction"]
        # The same server, asked again, answers the new payment with the old transaction.
        lied_to = _pay_devnet(w, devnet_api, http, "lied-to")
        w.report_outcome(lied_to.payment_id, 200, claim(real_tx, chain_home.address))
        w.report_outcome(honest.payment_id, 200, paid.headers["payment-response"])
        deadline = time.monotonic() + 60
        while (_status(w, lied_to.payment_id), _status(w, honest.payment_id)) != (
            S.DISPUTED,
            S.SETTLED,
        ):
            assert time.monotonic() < deadline, w.list_payments()
            time.sleep(0.1)
        assert _daily(w) == honest.amount + lied_to.amount  # a disputed payment stays counted
    FIGURES.demand("receipt/someone_elses_transaction", "DISPUTED")
