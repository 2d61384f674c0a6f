"""Crashes: kill -9 the real daemon at random moments under concurrent Pay load.

On each backend, three clients (two caller threads each, in two caller
processes) pay fresh keys while the daemon is SIGKILLed at a seeded random
moment 0.1-0.6 s after it serves, 20 times, and restarted each time; callers
retry an unanswered key with the same key. While the daemon is down, budgets
are checked against the ledger and refilled by about what the daemon can pay
before the next kill, so it is killed mostly while paying and runs into a
budget in almost every round. Afterwards (``tests/adversarial/crash.py`` does the work and the checks):
every header a client received has its ledger row, every row reached a
client, no budget was ever exceeded, every accepted key replays the same
header, SQLite's integrity_check is ok, the audit chains verify, and after a
few authorizations are settled on anvil and chain time passes validBefore,
the reconciler leaves no row open.

The seed is printed (``pytest -s``); ``WALLETD_CRASH_SEED=N`` repeats the kill
schedule and amounts, ``WALLETD_CRASH_KILLS=N`` changes the count. The long run
is ``make stress``.
"""

from __future__ import annotations

import os

import pytest

from tests.adversarial.crash import CrashPlan, run_crash_loop, seed_from_env
from tests.plugins.chain import Chain
from tests.plugins.pg import BACKENDS

pytestmark = pytest.mark.slow

KILLS = max(20, int(os.environ.get("WALLETD_CRASH_KILLS", "20")))


@pytest.mark.parametrize("backend", BACKENDS)
def test_kill_9_under_load_loses_no_row_and_overspends_nothing(
    backend: str, chain: Chain, request: pytest.FixtureRequest
) -> None:
    db_url = str(request.getfixturevalue("pg_url")) if backend == "postgres" else ""
    result = run_crash_loop(
        CrashPlan(kills=KILLS, seed=seed_from_env()), db_url=db_url, chain=chain
    )
    assert result.problems() == [], result.summary()
    assert result.kills == KILLS, result.summary()
    assert (result.overspend, result.lost_rows, result.unreceived_rows) == (0, 0, 0)
    # The run proved something: payments were made, budgets ran out, kills cut calls.
    assert result.accepted > 0 and result.budget_refusals > 0, result.summary()
    assert result.retried >= result.kills, result.summary()  # every kill cut calls short
    settled_or_expired = result.reconciled["settled"] + result.reconciled["expired"]
    assert settled_or_expired == result.rows > 0, result.summary()
    if backend == "sqlite":
        assert result.integrity == ["ok", "ok"]
