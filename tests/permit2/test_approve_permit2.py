"""`walletd chain approve-permit2`: the one explicit allowance Permit2 payments need."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from typing import Any

import pytest
from web3 import Web3
from web3.types import RPCEndpoint

from tests.plugins.daemon import WalletHome, init_home
from walletd.devnet import chain as devchain
from walletd.domain.networks import MEGAETH
from walletd.domain.permit2 import PERMIT2_ADDRESS

pytestmark = pytest.mark.chain  # a MegaETH-id anvil of its own (tests/permit2/conftest.py)


@pytest.fixture
def home(mega_anvil: Any) -> Iterator[tuple[WalletHome, Web3]]:
    w3 = devchain.connect(mega_anvil.rpc_url)
    devchain.install_permit2(w3)
    devchain.install_usd18(w3)
    snap = devchain.snapshot(w3)
    wallet = init_home()
    (wallet.data_dir / "walletd.toml").write_text(
        f'[policy]\nnetworks = ["{MEGAETH.caip2}"]\n[chain]\nrpc_url = "{mega_anvil.rpc_url}"\n'
    )
    devchain.set_eth_balance(w3, wallet.address, 10**18)
    try:
        yield wallet, w3
    finally:
        devchain.revert(w3, snap)
        shutil.rmtree(wallet.root, ignore_errors=True)


def _approve(wallet: WalletHome, *extra: str, check: bool = True) -> Any:
    return wallet.admin(
        "chain", "approve-permit2", "--network", MEGAETH.caip2, "--token", "MegaUSD",
        "--passphrase-file", str(wallet.passphrase_file), "--json", *extra, check=check,
    )  # fmt: skip


def _allowance(w3: Web3, owner: str) -> int:
    token = devchain.usd18_contract(w3)
    return int(token.functions.allowance(owner, PERMIT2_ADDRESS).call())


def test_approve_permit2_sets_the_capped_allowance_in_token_units(
    home: tuple[WalletHome, Web3],
) -> None:
    wallet, w3 = home
    out = _approve(wallet, "--cap", "50")
    doc = json.loads(out.stdout)
    assert doc["cap_units"] == str(50 * 10**18) and doc["symbol"] == "MegaUSD"
    assert _allowance(w3, wallet.address) == 50 * 10**18


def test_token_whose_decimals_disagree_with_the_table_is_not_approved(
    home: tuple[WalletHome, Web3],
) -> None:
    wallet, w3 = home
    usdc_runtime = w3.eth.get_code(devchain.install_usdc(w3).address)  # a 6-decimal token
    w3.provider.make_request(
        RPCEndpoint("anvil_setCode"), [devchain.USD18_ADDRESS, "0x" + bytes(usdc_runtime).hex()]
    )
    out = _approve(wallet, "--cap", "50", check=False)
    assert out.returncode != 0 and "reports 6 decimals" in out.stdout + out.stderr
