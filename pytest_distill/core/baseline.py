"""Compare a run with a stored results.json (--distill-baseline): deltas, newly failing examples.

Pure functions, no pytest. Only examples present in both runs with the same expected
answer are compared, so a run with --limit, or a baseline from an edited data set, is
compared like with like. Rates are passes / scored items over those shared examples;
which examples newly fail uses the per-example majority rule of compare.py.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_distill.core import stats
from pytest_distill.core.compare import example_outcomes
from pytest_distill.core.records import MISS, PASS, Record


@dataclass
class BaselineDelta:
    suite: str
    model: str
    shared: int  # examples in both runs (same id, same expected answer)
    baseline_rate: float | None
    rate: float | None
    delta_pp: float | None  # rate - baseline_rate, in percentage points
    newly_failing: list[str] = field(default_factory=list)  # example ids: passed before, missed now
    newly_passing: list[str] = field(default_factory=list)
    p_value: float | None = None  # exact McNemar on the shared examples

    @property
    def regression_pp(self) -> float | None:
        return None if self.delta_pp is None else -self.delta_pp

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rate(records: list[Record]) -> float | None:
    scored = [r for r in records if r.outcome in (PASS, MISS)]
    return sum(r.outcome == PASS for r in scored) / len(scored) if scored else None


def compare_to_baseline(records: list[Record], baseline: list[Record]) -> list[BaselineDelta]:
    """One delta per suite x model present in both runs."""
    now: dict[tuple[str, str], list[Record]] = defaultdict(list)
    before: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        now[(r.suite, r.model)].append(r)
    for r in baseline:
        before[(r.suite, r.model)].append(r)
    deltas = []
    for key in sorted(now.keys() & before.keys()):
        expected_now = {r.example_id: r.expected for r in now[key]}
        expected_before = {r.example_id: r.expected for r in before[key]}
        shared = {e for e in expected_now.keys() & expected_before.keys() if expected_now[e] == expected_before[e]}
        current = [r for r in now[key] if r.example_id in shared]
        previous = [r for r in before[key] if r.example_id in shared]
        rate, base_rate = _rate(current), _rate(previous)
        outcomes_now, outcomes_before = example_outcomes(current), example_outcomes(previous)
        both = outcomes_now.keys() & outcomes_before.keys()
        failing = sorted(e for e in both if outcomes_before[e] and not outcomes_now[e])
        passing = sorted(e for e in both if outcomes_now[e] and not outcomes_before[e])
        deltas.append(
            BaselineDelta(
                suite=key[0],
                model=key[1],
                shared=len(shared),
                baseline_rate=base_rate,
                rate=rate,
                delta_pp=None if rate is None or base_rate is None else 100 * (rate - base_rate),
                newly_failing=failing,
                newly_passing=passing,
                p_value=stats.mcnemar_exact(len(failing), len(passing)) if both else None,
            )
        )
    return deltas
