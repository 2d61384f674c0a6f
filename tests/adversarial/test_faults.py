"""Faults against real daemons: Pay fails closed with a clear error, and serves on once it is gone.

The scenarios live in :mod:`tests.adversarial.faults` (``make stress`` runs the
same ones through ``run_faults``); here each is one test on a module-wide
:class:`~tests.adversarial.faults.Lab` whose on-chain wallet pays through a
proxy in front of the session anvil. The chain is rolled back after the module.
Each test prints what it showed (``pytest -s``).
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from web3 import Web3

from tests.adversarial.faults import FAULTS, ChainHandle, Lab, render, run_one
from tests.adversarial.figures import FIGURES
from walletd.devnet import chain as devchain


@pytest.fixture(scope="module")
def lab(anvil: devchain.Anvil, w3: Web3, usdc: object) -> Iterator[Lab]:
    snap = devchain.snapshot(w3)
    try:
        with Lab(ChainHandle(w3, anvil.rpc_url)) as shared:
            yield shared
    finally:
        devchain.revert(w3, snap)
        latest = int(w3.eth.get_block("latest")["timestamp"])  # as tests.plugins.chain does
        w3.provider.make_request("evm_setTime", [max(int(time.time()), latest)])  # type: ignore[arg-type]


@pytest.mark.parametrize("name", list(FAULTS))
def test_fault(lab: Lab, name: str) -> None:
    detail = FAULTS[name](lab)
    FIGURES.add(faults=1)
    print(f"\n{name}: {detail}")


def test_a_failing_scenario_is_an_outcome_not_a_crash(
    lab: Lab, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(_: Lab) -> str:
        raise AssertionError("the ledger lost a row")

    monkeypatch.setitem(FAULTS, "broken", broken)
    outcome = run_one(lab, "broken")
    assert (outcome.survived, outcome.detail) == (False, "AssertionError: the ledger lost a row")
    assert render([outcome]).endswith("faults survived: 0/1")
