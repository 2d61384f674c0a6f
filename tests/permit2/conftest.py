"""A MegaETH-id anvil with our Permit2, the x402 proxies and TestUSD18 at MegaUSD's address,
a walletd Pay service over a real SQLite ledger signing for a funded dev account, and the
reference x402 facilitator (exact and upto schemes) settling on that anvil."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.plugins.lazy import LazyModule
from tests.service.conftest import CountingSigner
from walletd.domain.networks import BASE, MEGAETH

if TYPE_CHECKING:
    from web3 import Web3
    from x402 import x402FacilitatorSync

    from walletd.chain.reader import Web3ChainReader
    from walletd.db.ledger import Store
    from walletd.devnet import chain as devchain
    from walletd.domain.payment import Caller
    from walletd.service.wallet import WalletService
else:
    devchain = LazyModule("walletd.devnet.chain")

PAY_TO = "0x90F79bf6Eb2c4f870365E96051896F3aC51Fb01A"  # dev account 3
URL = "http://127.0.0.1:9/v1/chat/completions"
FUNDS = 10 * 10**18  # 10 MegaUSD
PER_REQUEST = 50_000  # $0.05


@dataclass
class Bed:
    w3: Web3
    rpc_url: str
    store: Store
    service: WalletService
    caller: Caller
    signer: CountingSigner
    facilitator: x402FacilitatorSync
    facilitator_address: str
    reader: Web3ChainReader

    def token_balance(self, address: str) -> int:
        return int(devchain.usd18_contract(self.w3).functions.balanceOf(address).call())

    def report(self, payment_id: str, settled: Any, **override: Any) -> str:
        """Report the facilitator's settle result as the client would (PAYMENT-RESPONSE)."""
        doc = {**settled.model_dump(mode="json", by_alias=True, exclude_none=True), **override}
        value = base64.b64encode(json.dumps(doc).encode()).decode()
        return self.service.report_outcome(self.caller, payment_id, 200, value)

    def reconcile(self) -> None:
        from walletd.service.reconcile import Reconciler

        Reconciler(self.store, self.reader, margin_s=30).run_once()

    def row(self, payment_id: str) -> Any:
        with self.store.read() as tx:
            return tx.tracked_payment(payment_id)

    def spent_today(self) -> int:
        windows = self.service.get_budget(self.caller).windows
        return next(w.spent for w in windows if w.window == "daily")


@pytest.fixture(scope="module")
def mega_anvil() -> Iterator[Any]:
    node = devchain.Anvil(MEGAETH.chain_id)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="module")
def bed(mega_anvil: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Bed]:
    from x402 import x402FacilitatorSync
    from x402.mechanisms.evm import FacilitatorWeb3Signer
    from x402.mechanisms.evm.exact import ExactEvmFacilitatorScheme
    from x402.mechanisms.evm.upto import UptoEvmFacilitatorScheme

    from walletd.chain.reader import Web3ChainReader
    from walletd.chain.sender import Web3ChainSender
    from walletd.db import migrate
    from walletd.db.engine import make_engines
    from walletd.db.ledger import Store
    from walletd.domain.policy import Limits
    from walletd.service import admin
    from walletd.service.wallet import WalletService

    w3 = devchain.connect(mega_anvil.rpc_url)
    devchain.install_permit2(w3)
    devchain.install_usd18(w3)
    payer = CountingSigner(devchain.dev_account(5))
    devchain.mint_usd18(w3, payer.address, FUNDS)
    reader = Web3ChainReader.open(mega_anvil.rpc_url, (MEGAETH.caip2,))
    Web3ChainSender(reader).approve_permit2(payer, devchain.USD18_ADDRESS, 2**256 - 1)
    path: Path = tmp_path_factory.mktemp("permit2") / "walletd.db"
    engines = make_engines(f"sqlite:///{path}")
    migrate.upgrade(engines.write)
    store = Store(engines)
    token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
    admin.set_budget(store, "svc", admin.BudgetChange(per_request=PER_REQUEST, daily=1_000_000))
    service = WalletService(store, payer, Limits(networks=(BASE.caip2, MEGAETH.caip2)))
    key = "0x" + bytes(devchain.dev_account(1).key).hex()
    fsigner = FacilitatorWeb3Signer(private_key=key, rpc_url=mega_anvil.rpc_url)
    facilitator = x402FacilitatorSync()
    facilitator.register([MEGAETH.caip2], ExactEvmFacilitatorScheme(fsigner))
    facilitator.register([MEGAETH.caip2], UptoEvmFacilitatorScheme(fsigner))
    try:
        yield Bed(w3, mega_anvil.rpc_url, store, service, service.authenticate(token), payer,
                  facilitator, devchain.dev_account(1).address, reader)  # fmt: skip
    finally:
        engines.dispose()
