"""The README's first command runs to the end, agrees with the chain, and leaves no process behind."""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with open(f"/proc/{pid}/stat") as stat:  # a zombie is gone for our purposes
        return stat.read().split()[2] != "Z"


@pytest.mark.slow
@pytest.mark.chain  # the demo starts its own anvil
@pytest.mark.timeout(240)
def test_demo_pays_three_requests_and_stops_everything() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "walletd.devnet.demo"], capture_output=True, text=True, timeout=180
    )
    assert proc.returncode == 0, proc.stderr + proc.stdout
    out = proc.stdout
    assert "moved on chain: 0.026000 USDC; ledger says 0.026000 USDC" in out
    assert out.count("settled in tx 0x") == 3
    pids = [int(p) for p in re.findall(r"\(pid (\d+)", out)]
    assert len(pids) == 2  # anvil and walletd serve
    assert not any(_alive(pid) for pid in pids)
    _assert_ledger_agrees_with_the_chain(out)


def _assert_ledger_agrees_with_the_chain(out: str) -> None:
    """The ledger the demo prints shows each payment settled, confirmed by its transaction."""
    ledger = out.split("== the ledger", 1)[1]
    rows = [line.split() for line in ledger.splitlines() if line.strip().startswith("pay_")]
    assert [(r[1], r[2], r[3]) for r in rows] == [
        ("settled", "0.003000", "llama-3.3-70b"),
        ("settled", "0.003000", "llama-3.3-70b"),
        ("settled", "0.020000", "flux-dev"),
    ]
    assert "settlement_pending" not in out
    assert "confirmed on chain: 3 payments, 0.026000 USDC" in out
