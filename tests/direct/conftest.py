"""Direct-transfer payments on the session anvil: an in-process wallet and the devnet direct mode.

``direct_api`` is the devnet paid API with its ``/direct/...`` routes switched
on (it checks the proof header on chain). ``direct_wallet`` is a WalletService
with a fresh key holding ETH for gas and test USDC, paying through web3 for real.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from web3 import Web3

from tests.plugins.chain import Chain
from tests.plugins.devnet import DevnetApi
from walletd.chain.reader import Web3ChainReader
from walletd.chain.sender import Web3TransferSender
from walletd.db import migrate
from walletd.db.engine import make_engines, sqlite_url
from walletd.db.ledger import Store, TrackedPayment
from walletd.devnet import chain as devchain
from walletd.devnet.api import ApiSettings, create_api_app
from walletd.devnet.servers import serve_in_thread
from walletd.domain.direct import ProofHeaders
from walletd.domain.networks import BASE, DEFAULT_ENABLED
from walletd.domain.payment import Caller, PayCommand, PayReceipt
from walletd.domain.policy import Limits
from walletd.keys.signer import LocalSigner
from walletd.service import admin
from walletd.service.direct import DirectPayments
from walletd.service.ports import TransferChain
from walletd.service.reconcile import Reconciler
from walletd.service.wallet import WalletService

CHAT = {"model": "llama-3.3-70b", "messages": [{"role": "user", "content": "hello"}]}
DIRECT_CHAT = "/direct/v1/chat/completions"
PRICE = 3000  # the devnet's "$0.003"
RECIPIENT = "0x90F79bf6Eb2c4f870365E96051896F3aC51Fb01A"  # anvil dev account 3
FUNDS = 1_000_000
GAS_ETH = 10**18


def direct_header(amount: str = "0.003", **overrides: Any) -> str:
    """A direct ``PAYMENT-REQUIRED`` value, fields overridden (None removes a field)."""
    doc: dict[str, Any] = {
        "recipient": RECIPIENT,
        "amount": amount,
        "chainId": BASE.chain_id,
        "token": BASE.usdc,
    }
    doc.update(overrides)
    doc = {k: v for k, v in doc.items() if v is not None}
    return base64.b64encode(json.dumps(doc).encode()).decode()


@dataclass(frozen=True)
class DirectApi:
    """The devnet API with direct mode on."""

    base_url: str
    pay_to: str

    def url(self, path: str = DIRECT_CHAT) -> str:
        return self.base_url + path


@pytest.fixture(scope="session")
def direct_api(anvil: devchain.Anvil, devnet_api: DevnetApi) -> Iterator[DirectApi]:
    """A second paid API (sharing the session facilitator) with ``/direct/`` routes."""
    settings = ApiSettings(
        facilitator_url=devnet_api.facilitator_url,
        pay_to=devnet_api.pay_to,
        direct_rpc_url=anvil.rpc_url,
    )
    running = serve_in_thread(create_api_app(settings))
    try:
        yield DirectApi(running.url, settings.pay_to)
    finally:
        running.stop()


@dataclass
class DirectWallet:
    """An in-process walletd whose key has ETH and test USDC on the session anvil."""

    store: Store
    signer: LocalSigner
    service: WalletService
    caller: Caller
    chain: Chain
    reader: Web3ChainReader

    @property
    def address(self) -> str:
        return self.signer.address

    def pay(
        self, key: str, header: str | None = None, url: str = "http://api.example/v1/chat"
    ) -> PayReceipt:
        cmd = PayCommand(key, "POST", url, header if header is not None else direct_header())
        return self.service.pay(self.caller, cmd)

    def row(self, payment_id: str) -> TrackedPayment:
        with self.store.read() as tx:
            return tx.tracked_payment(payment_id)

    def rows(self) -> list[TrackedPayment]:
        with self.store.read() as tx:
            return [tx.tracked_payment(v.payment_id) for v in tx.list_payments(None, 1000)]

    def spent(self) -> int:
        (daily,) = [w for w in self.service.get_budget(self.caller).windows if w.window == "daily"]
        return daily.spent

    def sent_count(self) -> int:
        """Transactions the wallet's key has mined (its account nonce)."""
        return int(self.chain.w3.eth.get_transaction_count(Web3.to_checksum_address(self.address)))

    def tx_nonce(self, tx_hash: str) -> int:
        return int(self.chain.w3.eth.get_transaction(tx_hash)["nonce"])  # type: ignore[arg-type]

    def reconcile(self) -> dict[str, int]:
        return Reconciler(self.store, self.reader).run_once().moved


def open_sender(rpc_url: str) -> Callable[[], TransferChain]:
    return lambda: Web3TransferSender(Web3ChainReader.open(rpc_url, DEFAULT_ENABLED))


WalletFactory = Callable[..., "DirectWallet"]


def _make_wallet(
    chain: Chain,
    cleanup: list[Callable[[], None]],
    *,
    usdc: int = FUNDS,
    eth: int = GAS_ETH,
    daily: int = 100_000,
    wrap: Callable[[TransferChain], TransferChain] | None = None,
    receipt_timeout_s: float = 30.0,
    rpc: bool = True,
) -> DirectWallet:
    """A fresh ledger and key; ``wrap`` lets a test stand between walletd and the node."""
    root = Path(tempfile.mkdtemp(prefix="wd-dir-", dir="/tmp"))
    engines = make_engines(sqlite_url(root))
    cleanup.append(lambda: shutil.rmtree(root, ignore_errors=True))
    cleanup.append(engines.dispose)
    migrate.upgrade(engines.write)
    store = Store(engines)
    token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
    admin.set_budget(store, "svc", admin.BudgetChange(daily=daily))
    signer = LocalSigner(os.urandom(32))
    if usdc:
        chain.mint(signer.address, usdc)
    if eth:
        chain.set_eth_balance(signer.address, eth)
    opener = open_sender(chain.rpc_url)
    if wrap is not None:
        inner = opener
        opener = lambda: wrap(inner())  # noqa: E731
    direct = DirectPayments(
        store, signer, Limits(), ProofHeaders(), opener if rpc else None,
        receipt_timeout_s=receipt_timeout_s,
    )  # fmt: skip
    service = WalletService(store, signer, Limits(), direct=direct)
    reader = Web3ChainReader.open(chain.rpc_url, DEFAULT_ENABLED)
    return DirectWallet(store, signer, service, service.authenticate(token), chain, reader)


@pytest.fixture
def make_wallet(chain: Chain) -> Iterator[WalletFactory]:
    """Build wallets (see ``_make_wallet`` for the options); disposed after the test."""
    cleanup: list[Callable[[], None]] = []
    yield lambda **options: _make_wallet(chain, cleanup, **options)
    for step in reversed(cleanup):
        step()


@pytest.fixture
def direct_wallet(make_wallet: WalletFactory) -> DirectWallet:
    return make_wallet()


@pytest.fixture
def http() -> Iterator[httpx.Client]:
    with httpx.Client(timeout=30) as client:
        yield client
