"""A WalletService whose key holds test USDC on the session anvil, and the chain adapters.

The service runs in-process (fast, and the ledger can be inspected directly);
the tests that need the real daemon and CLI use the ``wallet_home`` fixtures.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.plugins.chain import Chain
from tests.plugins.daemon import WalletHome
from tests.plugins.devnet import DevnetApi
from walletd.chain.reader import Web3ChainReader
from walletd.chain.sender import Web3ChainSender
from walletd.client import WalletClient
from walletd.db import migrate
from walletd.db.engine import make_engines, sqlite_url
from walletd.db.ledger import PaymentEventRecord, Store, TrackedPayment
from walletd.domain.networks import DEFAULT_ENABLED
from walletd.domain.payment import Caller, PayCommand, PayReceipt
from walletd.domain.policy import Limits
from walletd.keys.signer import LocalSigner
from walletd.service import admin
from walletd.service.reconcile import Reconciler
from walletd.service.wallet import WalletService

CHAT = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hello"}]}
MARGIN_S = 30
FUNDS = 1_000_000


@dataclass
class Wallet:
    """An in-process walletd against the session chain and devnet."""

    store: Store
    signer: LocalSigner
    service: WalletService
    caller: Caller
    chain: Chain
    api: DevnetApi
    reader: Web3ChainReader

    @property
    def address(self) -> str:
        return self.signer.address

    def demand(self, http: httpx.Client) -> str:
        first = http.post(self.api.url("/v1/chat/completions"), json=CHAT)
        assert first.status_code == 402
        return str(first.headers["payment-required"])

    def pay(self, http: httpx.Client, key: str) -> PayReceipt:
        cmd = PayCommand(key, "POST", self.api.url("/v1/chat/completions"), self.demand(http))
        return self.service.pay(self.caller, cmd)

    def send(self, http: httpx.Client, receipt: PayReceipt) -> httpx.Response:
        """Send the paid request to the devnet (it settles on anvil)."""
        headers = {receipt.header_name: receipt.header_value}
        return http.post(self.api.url("/v1/chat/completions"), json=CHAT, headers=headers)

    def report(self, receipt: PayReceipt, status: int, payment_response: str = "") -> str:
        return self.service.report_outcome(
            self.caller, receipt.payment_id, status, payment_response
        )

    def reconcile(self, margin_s: int = MARGIN_S) -> dict[str, int]:
        return Reconciler(self.store, self.reader, margin_s).run_once().moved

    def row(self, payment_id: str) -> TrackedPayment:
        with self.store.read() as tx:
            return tx.tracked_payment(payment_id)

    def events(self, payment_id: str) -> list[PaymentEventRecord]:
        with self.store.read() as tx:
            return tx.events(payment_id)

    def spent(self) -> int:
        """What the caller's daily window counts (GetBudget's view)."""
        (daily,) = [w for w in self.service.get_budget(self.caller).windows if w.window == "daily"]
        return daily.spent

    def travel_to(self, timestamp: int) -> int:
        """Move chain time forward to at least ``timestamp``; returns the new block time."""
        return self.chain.increase_time(max(1, timestamp - self.chain.timestamp()))

    def sender(self) -> Web3ChainSender:
        return Web3ChainSender(self.reader)


def fake_response(tx_hash: str, payer: str) -> str:
    """A PAYMENT-RESPONSE claiming success with ``tx_hash``."""
    doc = {"success": True, "transaction": tx_hash, "payer": payer, "network": "eip155:8453"}
    return base64.b64encode(json.dumps(doc).encode()).decode()


def settled_tx(response: httpx.Response) -> str:
    doc = json.loads(base64.b64decode(response.headers["payment-response"]))
    assert doc["success"] is True
    return str(doc["transaction"])


@pytest.fixture
def wallet(chain: Chain, devnet_api: DevnetApi) -> Iterator[Wallet]:
    root = Path(tempfile.mkdtemp(prefix="wd-rec-", dir="/tmp"))
    engines = make_engines(sqlite_url(root))
    migrate.upgrade(engines.write)
    store = Store(engines)
    token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
    admin.set_budget(store, "svc", admin.BudgetChange(daily=100_000))
    signer = LocalSigner(os.urandom(32))
    chain.mint(signer.address, FUNDS)
    service = WalletService(store, signer, Limits())
    reader = Web3ChainReader.open(chain.rpc_url, DEFAULT_ENABLED)
    yield Wallet(store, signer, service, service.authenticate(token), chain, devnet_api, reader)
    engines.dispose()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client


@pytest.fixture
def home(chain: Chain, wallet_home: WalletHome) -> WalletHome:
    """A data dir whose daemon reconciles against anvil: client ``svc``, USDC minted."""
    (wallet_home.data_dir / "walletd.toml").write_text(
        f'[chain]\nrpc_url = "{chain.rpc_url}"\n'
        f"reconcile_interval_seconds = 0.2\nexpiry_margin_seconds = {MARGIN_S}\n"
    )
    chain.mint(wallet_home.address, 1_000_000)
    wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    return wallet_home


def svc_client(home: WalletHome) -> WalletClient:
    """``svc``'s WalletClient on ``home``'s socket."""
    return WalletClient(socket=home.socket, token_file=home.root / "svc.token")
