"""``make stress`` works end to end, tiny: ``python -m tests.adversarial.stress --smoke``.

Runs the command's ``main`` in this process with the smoke sizes (200 demands,
one kill -9 on SQLite with its own anvil, 100 stalled connections for 4 s) so
CI proves every phase is wired and
the report carries every figure. The fault phase goes through the real hook
with ``run_faults`` stubbed (the scenarios themselves are ``test_faults.py``).
The full run and its figures are in docs/reliability.md.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import pytest

from tests.adversarial import faults, stress
from tests.adversarial.figures import FIGURES, Figures

pytestmark = [pytest.mark.slow, pytest.mark.chain]


@pytest.fixture
def _own_figures() -> Iterator[None]:
    """The command resets the process-wide figures; give the session's back afterwards."""
    saved = FIGURES.to_json()
    yield
    FIGURES.reset()
    FIGURES.merge(Figures.from_json(saved))


@pytest.mark.usefixtures("_own_figures")
def test_stress_smoke_prints_every_figure_and_passes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    asked: list[Sequence[str]] = []

    def fake_run_faults(chain: object, *, only: Sequence[str] = ()) -> list[faults.FaultOutcome]:
        asked.append(only)
        return [faults.FaultOutcome("db_locked", True, "stub")]

    monkeypatch.setattr(faults, "run_faults", fake_run_faults)
    code = stress.main(["--smoke", "--faults", "db_locked"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert asked == [["db_locked"]]
    for line in (
        "demands tried: ",
        "refused by reason: ",
        "  valid ",
        "  crash ",
        "overspend (atomic units): 0\n",
        "ledger rows lost: 0\n",
        "crashes survived: 1 (sqlite 1)\n",
        "faults survived: 1/1\n",
        "| sqlite | 1 | 1 |",
        "stalled connections held: 100 for ",
        "decision rows they wrote: 0\n",
        "verdict: PASS",
    ):
        assert line in out, out
