"""Counts the adversarial suite publishes: demands tried by family, accepted, refused by reason.

One process-wide :data:`FIGURES` collects what the hostile-server table, the fuzz
properties and the long campaign did; a later ``make stress`` adds crash and fault
counts and prints everything. Figures can be saved as JSON and merged, so runs in
several processes (pytest workers, the campaign, the crash harness) add up::

    from tests.adversarial.figures import FIGURES, outcome_of
    FIGURES.demand("policy/wrong_chain", outcome_of(err))   # one demand, its outcome
    FIGURES.example("parser_text")                          # one property example
    print(FIGURES.render())

An *outcome* is ``"ACCEPTED"`` or the refusal's reason, refined by the rule
(``POLICY_DENIED/network``) or the window (``BUDGET_EXCEEDED/per_request``).
``signed`` counts signatures the suite saw made; ``overspend`` (atomic units) and
``lost_rows`` must stay 0, ``crashes``/``faults`` count what was survived.
"""

from __future__ import annotations

import json
import os
import threading
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from walletd.errors import WalletdError, all_error_classes

ACCEPTED = "ACCEPTED"
ENV_FILE = "WALLETD_FIGURES_FILE"
"""When set, the pytest plugin merges this session's figures into that JSON file."""


def outcome_of(error: BaseException | None) -> str:
    """``ACCEPTED`` for None, else the reason with its rule or window when it has one."""
    if error is None:
        return ACCEPTED
    if not isinstance(error, WalletdError):
        return f"UNEXPECTED:{type(error).__name__}"
    detail = error.details.get("rule") or error.details.get("window")
    return f"{error.reason}/{detail}" if detail else error.reason


@dataclass
class Figures:
    """Counters; every method is thread-safe."""

    tried: Counter[str] = field(default_factory=Counter)
    """Demands tried, by family."""
    outcomes: Counter[tuple[str, str]] = field(default_factory=Counter)
    """(family, outcome) -> count."""
    examples: Counter[str] = field(default_factory=Counter)
    """Property examples run, by property."""
    failures: Counter[str] = field(default_factory=Counter)
    """Property failures, by property (must stay empty)."""
    signed: int = 0
    overspend: int = 0
    lost_rows: int = 0
    crashes: int = 0
    faults: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # ---- recording ---------------------------------------------------------

    def demand(self, family: str, outcome: str) -> None:
        """Count one demand of ``family`` and what became of it."""
        with self._lock:
            self.tried[family] += 1
            self.outcomes[(family, outcome)] += 1

    def example(self, prop: str, n: int = 1) -> None:
        """Count ``n`` examples of property ``prop``."""
        with self._lock:
            self.examples[prop] += n

    def failure(self, prop: str) -> None:
        """Count one failed property run."""
        with self._lock:
            self.failures[prop] += 1

    def add(self, **counts: int) -> None:
        """Add to the scalar counters: ``signed``, ``overspend``, ``lost_rows``, ..."""
        with self._lock:
            for name, n in counts.items():
                if name not in _SCALARS:
                    raise KeyError(name)
                setattr(self, name, getattr(self, name) + n)

    def reset(self) -> None:
        """Forget everything."""
        with self._lock:
            for name in _COUNTERS:
                getattr(self, name).clear()
            for name in _SCALARS:
                setattr(self, name, 0)

    # ---- reading -----------------------------------------------------------

    @property
    def accepted(self) -> int:
        return sum(n for (_, o), n in self.outcomes.items() if o == ACCEPTED)

    def refused_by_reason(self) -> Counter[str]:
        """Refusals (outcomes that are a walletd reason) summed over families."""
        return self._by_outcome(lambda o: o.split("/", 1)[0] in _REASONS)

    def other_outcomes(self) -> Counter[str]:
        """Outcomes that are neither accepted nor a refusal (PARSED, REUSED, NOT_CARRIED...)."""
        return self._by_outcome(lambda o: o != ACCEPTED and o.split("/", 1)[0] not in _REASONS)

    def _by_outcome(self, keep: Callable[[str], bool]) -> Counter[str]:
        out: Counter[str] = Counter()
        for (_, outcome), n in self.outcomes.items():
            if keep(outcome):
                out[outcome] += n
        return out

    def families(self) -> Counter[str]:
        """Demands tried by top-level family (the part before the first ``/``)."""
        out: Counter[str] = Counter()
        for family, n in self.tried.items():
            out[family.split("/", 1)[0]] += n
        return out

    def is_empty(self) -> bool:
        return not (self.tried or self.examples or any(getattr(self, s) for s in _SCALARS))

    # ---- persistence -------------------------------------------------------

    def to_json(self) -> dict[str, Any]:
        with self._lock:
            return {
                "tried": dict(self.tried),
                "outcomes": [[f, o, n] for (f, o), n in sorted(self.outcomes.items())],
                "examples": dict(self.examples),
                "failures": dict(self.failures),
                **{s: getattr(self, s) for s in _SCALARS},
            }

    @classmethod
    def from_json(cls, doc: dict[str, Any]) -> Figures:
        figures = cls()
        figures.tried.update(doc.get("tried", {}))
        figures.outcomes.update({(f, o): n for f, o, n in doc.get("outcomes", [])})
        figures.examples.update(doc.get("examples", {}))
        figures.failures.update(doc.get("failures", {}))
        for name in _SCALARS:
            setattr(figures, name, int(doc.get(name, 0)))
        return figures

    def merge(self, other: Figures) -> None:
        """Add ``other``'s counts to these."""
        doc = other.to_json()
        with self._lock:
            for name in _COUNTERS:
                getattr(self, name).update(getattr(other, name))
            for name in _SCALARS:
                setattr(self, name, getattr(self, name) + doc[name])

    def save(self, path: Path) -> None:
        """Merge these figures into the JSON file at ``path`` (created if missing)."""
        total = load(path) if path.exists() else Figures()
        total.merge(self)
        tmp = path.with_suffix(path.suffix + ".tmp")
        tmp.write_text(json.dumps(total.to_json(), indent=1, sort_keys=True))
        os.replace(tmp, path)

    # ---- printing ----------------------------------------------------------

    def render(self) -> str:
        """A plain-text report (the format ``make stress`` prints)."""
        lines: list[str] = []
        if self.tried:
            lines.append(f"demands tried: {sum(self.tried.values())}  accepted: {self.accepted}")
            for family, n in sorted(self.families().items()):
                accepted = sum(
                    c
                    for (f, o), c in self.outcomes.items()
                    if f.split("/", 1)[0] == family and o == ACCEPTED
                )
                lines.append(f"  {family:<28} {n:>9}  accepted {accepted}")
            refused = self.refused_by_reason()
            lines.append(f"refused by reason: {sum(refused.values())}")
            lines += [f"  {o:<40} {n:>9}" for o, n in sorted(refused.items())]
            other = self.other_outcomes()
            if other:
                lines.append("other outcomes:")
                lines += [f"  {o:<40} {n:>9}" for o, n in sorted(other.items())]
        if self.examples:
            lines.append("property examples:")
            for prop, n in sorted(self.examples.items()):
                lines.append(f"  {prop:<40} {n:>9}  failures {self.failures.get(prop, 0)}")
            lines.append(
                f"  {'total':<40} {sum(self.examples.values()):>9}  "
                f"failures {sum(self.failures.values())}"
            )
        lines.append(
            f"signed: {self.signed}  overspend (atomic): {self.overspend}  "
            f"ledger rows lost: {self.lost_rows}  crashes survived: {self.crashes}  "
            f"faults survived: {self.faults}"
        )
        return "\n".join(lines)


_REASONS = frozenset(cls.reason for cls in all_error_classes())
_COUNTERS = ("tried", "outcomes", "examples", "failures")
_SCALARS = ("signed", "overspend", "lost_rows", "crashes", "faults")


def load(path: Path) -> Figures:
    """Figures saved by :meth:`Figures.save`."""
    return Figures.from_json(json.loads(path.read_text()))


FIGURES = Figures()
"""The process-wide collector the suite feeds."""
