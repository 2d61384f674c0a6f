"""A direct transfer pays only the network's first stablecoin, the one walletd's sender sends."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.direct.conftest import direct_header
from walletd.chain.reader import Web3ChainReader
from walletd.chain.sender import Web3TransferSender
from walletd.config import sqlite_url
from walletd.db import migrate
from walletd.db.engine import make_engines
from walletd.db.ledger import Store
from walletd.devnet import chain as devchain
from walletd.domain.direct import ProofHeaders
from walletd.domain.networks import CELO
from walletd.domain.payment import PayCommand
from walletd.domain.policy import Limits
from walletd.errors import PolicyDeniedError
from walletd.keys.signer import LocalSigner
from walletd.service import admin
from walletd.service.direct import DirectPayments
from walletd.service.wallet import WalletService

pytestmark = pytest.mark.chain  # an anvil with Celo's chain id of its own


@pytest.fixture
def celo_rpc() -> Iterator[str]:
    node = devchain.Anvil(CELO.chain_id)
    try:
        yield node.rpc_url
    finally:
        node.stop()


def test_direct_demand_in_a_second_stablecoin_is_refused_and_nothing_sent(celo_rpc: str) -> None:
    root = Path(tempfile.mkdtemp(prefix="wd-dir-", dir="/tmp"))
    engines = make_engines(sqlite_url(root))
    try:
        migrate.upgrade(engines.write)
        store = Store(engines)
        token = admin.add_client(store, "svc", frozenset({"pay", "read"}))
        admin.set_budget(store, "svc", admin.BudgetChange(daily=100_000))
        signer = LocalSigner(os.urandom(32))
        limits = Limits(networks=(CELO.caip2,))
        opener = lambda: Web3TransferSender(Web3ChainReader.open(celo_rpc, limits.networks))  # noqa: E731
        direct = DirectPayments(store, signer, limits, ProofHeaders(), opener)
        service = WalletService(store, signer, limits, direct=direct)
        usdt = CELO.assets[1]
        header = direct_header(chainId=CELO.chain_id, token=usdt.address)
        with pytest.raises(PolicyDeniedError, match="direct transfers pay USDC only"):
            service.pay(
                service.authenticate(token), PayCommand("d1", "POST", "http://a.test/", header)
            )
        with store.read() as tx:
            assert tx.list_payments(None, 10) == []
        w3 = devchain.connect(celo_rpc)
        assert w3.eth.get_transaction_count(w3.to_checksum_address(signer.address)) == 0
    finally:
        engines.dispose()
        shutil.rmtree(root, ignore_errors=True)
