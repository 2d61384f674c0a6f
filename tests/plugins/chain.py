"""Fixtures: a real local chain (anvil) with test USDC at Base's USDC address.

One anvil runs per test session (it starts in ~50 ms, but deploying per test would add up);
tests are isolated from each other by ``evm_snapshot``/``evm_revert`` around each one, which
also rewinds chain time moved by ``increase_time``.

Nothing here skips: if anvil is not installed the fixtures fail with the ``npm ci`` hint,
because a silently skipped chain suite looks exactly like a passing one.

web3 is imported on first use (``tests/plugins/lazy.py``); tests/conftest.py marks every
test that uses one of these fixtures ``chain``.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pytest

from tests.plugins.lazy import LazyModule

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount
    from web3 import Web3
    from web3.contract import Contract
    from web3.contract.contract import ContractFunction
    from web3.types import TxReceipt

    from walletd.devnet import chain as devchain
else:
    devchain = LazyModule("walletd.devnet.chain")

# Every test that uses one of these (directly or through another fixture) is marked
# ``chain`` by tests/conftest.py.
CHAIN_FIXTURES = frozenset({"anvil", "w3", "usdc", "chain"})


@dataclass(frozen=True)
class Chain:
    """What a chain test needs, bound to the session's node: w3, the token and helpers."""

    w3: Web3
    usdc: Contract
    rpc_url: str

    def dev_account(self, index: int) -> LocalAccount:
        return devchain.dev_account(index)

    def mint(self, to: str, amount: int) -> TxReceipt:
        return devchain.mint(self.w3, to, amount)

    def usdc_balance(self, addr: str) -> int:
        return devchain.usdc_balance(self.w3, addr)

    def eth_balance(self, addr: str) -> int:
        return devchain.eth_balance(self.w3, addr)

    def set_eth_balance(self, addr: str, wei: int) -> None:
        devchain.set_eth_balance(self.w3, addr, wei)

    def increase_time(self, seconds: int) -> int:
        return devchain.increase_time(self.w3, seconds)

    def timestamp(self) -> int:
        """The latest block's timestamp: use this, not the wall clock, for validity windows."""
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def snapshot(self) -> str:
        return devchain.snapshot(self.w3)

    def revert(self, snap_id: str) -> None:
        devchain.revert(self.w3, snap_id)

    def transact(
        self, account: LocalAccount, fn: ContractFunction, *, gas: int | None = None
    ) -> TxReceipt:
        return devchain.transact(self.w3, account, fn, gas=gas)


@pytest.fixture(scope="session")
def anvil() -> Iterator[devchain.Anvil]:
    """One anvil (chain id 8453) for the whole session, stopped at the end."""
    try:
        node = devchain.Anvil()
    except devchain.AnvilNotInstalledError as exc:
        pytest.fail(f"{exc}\n(run npm ci at the repo root; CI does)", pytrace=False)
    try:
        yield node
    finally:
        node.stop()


@pytest.fixture(scope="session")
def w3(anvil: devchain.Anvil) -> Web3:
    return devchain.connect(anvil.rpc_url)


@pytest.fixture(scope="session")
def usdc(w3: Web3) -> Contract:
    """TestUSDC at Base's USDC address, minter = dev account 0; Permit2 and the x402 proxies."""
    devchain.install_permit2(w3)
    return devchain.install_usdc(w3)


@pytest.fixture
def chain(anvil: devchain.Anvil, w3: Web3, usdc: Contract) -> Iterator[Chain]:
    """The session chain, rolled back to its pre-test state after the test."""
    snap_id = devchain.snapshot(w3)
    try:
        yield Chain(w3=w3, usdc=usdc, rpc_url=anvil.rpc_url)
    finally:
        devchain.revert(w3, snap_id)
        _resync_clock(w3)


def _resync_clock(w3: Web3) -> None:
    """Put the chain clock back on the wall clock after a revert.

    anvil's ``evm_revert`` rewinds its clock to the snapshot's time, so without
    this the chain falls behind the wall clock by the length of every chain
    test so far, and after ~10 minutes of them authorizations signed with the
    wall clock (validAfter = now - 600 s) are "not yet valid" on chain.
    """
    latest = int(w3.eth.get_block("latest")["timestamp"])
    w3.provider.make_request("evm_setTime", [max(int(time.time()), latest)])  # type: ignore[arg-type]
