"""A real daemon under stalled connections and oversized requests (bounded ``make stress``).

300 connections each hold a Pay call that sent HEADERS and nothing more (no
token, no message), oversized Pays arrive alongside, and a real client pays
all the while: every one of its Pays is signed, in well under a second at the
median, and the oversized ones are refused without a decision row. ``make
stress`` runs the same at 1,200 connections (docs/reliability.md).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.adversarial.stalls import run_against_own_daemon
from tests.plugins.daemon import Daemon, WalletHome


@pytest.mark.slow
def test_real_client_pays_while_300_stalled_connections_are_held() -> None:
    figures = run_against_own_daemon(stalls=300, seconds=8, oversized=20)
    assert figures.problems() == [], figures.render()
    assert figures.paid() >= 20, figures.render()
    assert figures.quantile(0.5) < 2.0, figures.render()  # blocked, Pays wait out 10 s
    assert figures.oversized == {"RESOURCE_EXHAUSTED": 5, "INVALID_REQUEST": 15}
    assert figures.extra_decisions == 0


def test_daemon_raises_its_soft_fd_limit_to_the_hard_one(wallet_home: WalletHome) -> None:
    daemon = Daemon(wallet_home, nofile=(512, 4096))
    try:
        limits = Path(f"/proc/{daemon.proc.pid}/limits").read_text()
        (line,) = [x for x in limits.splitlines() if x.startswith("Max open files")]
        assert line.split()[3:5] == ["4096", "4096"]
        assert "at most 3840 connections" in daemon.logs()
    finally:
        assert daemon.stop() == 0, daemon.logs()
