"""``[chain] max_fee_per_gas_wei``: the node's fee is not taken on trust, on the session anvil."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest

from tests.direct.conftest import direct_header
from tests.plugins.chain import Chain
from tests.plugins.daemon import Daemon, WalletHome
from walletd.chain.reader import Web3ChainReader
from walletd.chain.sender import Web3ChainSender
from walletd.client import FeeTooHighError, WalletClient
from walletd.domain.networks import DEFAULT_ENABLED
from walletd.keys.signer import LocalSigner

CAP = 1000  # wei per gas: far under anvil's base fee (about 1 gwei)


@pytest.fixture
def capped_daemon(chain: Chain, wallet_home: WalletHome) -> Iterator[Daemon]:
    (wallet_home.data_dir / "walletd.toml").write_text(
        f'[chain]\nrpc_url = "{chain.rpc_url}"\nmax_fee_per_gas_wei = {CAP}\n'
    )
    chain.mint(wallet_home.address, 1_000_000)
    chain.set_eth_balance(wallet_home.address, 10**18)
    wallet_home.add_client("svc")
    wallet_home.admin("budget", "set", "svc", "--daily", "1")
    running = Daemon(wallet_home)
    yield running
    assert running.stop() == 0, running.logs()


def test_a_direct_transfer_above_the_fee_cap_is_refused_with_its_reason(
    chain: Chain, capped_daemon: Daemon
) -> None:
    home = capped_daemon.home
    sent_before = chain.w3.eth.get_transaction_count(home.address)  # type: ignore[arg-type]
    token = home.root / "svc.token"
    with WalletClient(socket=home.socket, token_file=token, timeout=60) as wallet:
        with pytest.raises(FeeTooHighError) as info:
            wallet.pay("k1", "POST", "http://api.example/v1/chat", payment_required=direct_header())
        assert info.value.reason == "FEE_TOO_HIGH"
        assert f"max_fee_per_gas_wei = {CAP}" in str(info.value)
        assert info.value.details["cap"] == str(CAP)
        assert int(info.value.details["needed"]) > CAP
        assert wallet.list_payments() == []  # nothing recorded, nothing counted as spent
        assert all(w.spent == 0 for w in wallet.get_budget().windows)
    assert chain.w3.eth.get_transaction_count(home.address) == sent_before  # type: ignore[arg-type]


def test_a_cancel_above_the_fee_cap_is_refused_before_signing(chain: Chain) -> None:
    signer = LocalSigner(os.urandom(32))
    chain.set_eth_balance(signer.address, 10**18)
    reader = Web3ChainReader.open(chain.rpc_url, DEFAULT_ENABLED)
    with pytest.raises(FeeTooHighError, match="nothing was signed"):
        Web3ChainSender(reader, max_fee_per_gas=CAP).cancel_authorization(signer, "0x" + "11" * 32)
    assert chain.w3.eth.get_transaction_count(signer.address) == 0  # type: ignore[arg-type]


def test_a_fee_ceiling_over_the_cap_is_lowered_to_it_but_never_under_base_plus_tip() -> None:
    from walletd.chain.sender import capped_fees

    fees = capped_fees(base=10, tip=2, cap=25, jitter=7)  # 2 * 10 + 2 + 7 = 29 > 25
    assert 12 <= fees.max_fee_per_gas <= 25
    assert fees.max_priority_fee_per_gas == 2
    assert capped_fees(base=10, tip=2, cap=10**9, jitter=7).max_fee_per_gas == 29
    with pytest.raises(FeeTooHighError):
        capped_fees(base=24, tip=2, cap=25)
