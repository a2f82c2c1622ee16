"""A run's verdict from its records: summaries -> costs -> baseline -> gates -> exit status ->
comparisons. Pure: plugin/finish.py calls it at the end of a run, and `pytest-distill merge`
calls it on the records of a run's CI shards, so a merged run decides exactly as one run.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace

from pytest_distill.core.baseline import BaselineDelta, compare_to_baseline
from pytest_distill.core.compare import SuiteComparison, compare
from pytest_distill.core.cost import BenchRate, Cost, Priced, summary_costs, tie_key
from pytest_distill.core.gates import EXIT_OK, EXIT_TESTS_FAILED, Gate, GateResult, check_gate, exit_status
from pytest_distill.core.records import ERROR, INTERNAL, MISS, Record, Summary, summarize
from pytest_distill.core.serving import ServingMeasurement

# suite_path, whether the baseline has this suite x model -> the suite's gate
GateFor = Callable[[str, bool], Gate]


@dataclass(frozen=True)
class PytestOutcome:
    """What pytest itself concluded, before gates: its exit status, failed reports, -x/--maxfail."""

    status: int
    tests_failed: int
    stopped_early: bool


@dataclass(frozen=True)
class Decision:
    summaries: tuple[Summary, ...]
    costs: dict[tuple[str, str], Cost]
    deltas: tuple[BaselineDelta, ...]
    gates: tuple[GateResult, ...]
    exit_status: int
    comparisons: tuple[SuiteComparison, ...]


def decide(
    records: Sequence[Record],
    entries: Mapping[str, Priced],
    gate_for: GateFor,
    pytest_outcome: PytestOutcome,
    route_tolerance_pp: float,
    baseline_records: list[Record] | None = None,
    bench_rates: Mapping[str, BenchRate | ServingMeasurement] | None = None,
    concurrency: Mapping[str, int] | None = None,
) -> Decision:
    """With a gate, misses inside a passing gate don't fail the run; a pytest-distill internal
    error always does (docs/gates.md)."""
    records = list(records)
    summaries = summarize(records)
    costs = summary_costs(summaries, records, entries, bench_rates, concurrency)
    deltas = compare_to_baseline(records, baseline_records) if baseline_records is not None else []
    regressions = {(d.suite, d.model): d.regression_pp for d in deltas if d.regression_pp is not None}
    gate_results = []
    for s in summaries:
        key = (s.suite, s.model)
        gate = gate_for(s.suite_path, key in regressions)
        if gate.active and s.n > s.internal:  # all skipped (no scorer yet): nothing to gate on
            gate_results.append(check_gate(s, gate, regressions.get(key)))
    gated_ok = {(g.suite, g.model) for g in gate_results if g.passed}
    excused = sum(1 for r in records if r.outcome in (MISS, ERROR) and (r.suite, r.model) in gated_ok)
    status = exit_status(
        pytest_outcome.status,
        gate_results,
        pytest_outcome.tests_failed,
        excused,
        stopped_early=pytest_outcome.stopped_early,
    )
    if status == EXIT_OK and any(r.outcome == INTERNAL for r in records):
        status = EXIT_TESTS_FAILED  # a plugin bug never passes, whatever the gates say
    tie_keys = {name: tie_key(entry, name) for name, entry in entries.items()}
    comparisons = compare(
        summaries, records, {k: c.per_request for k, c in costs.items()}, route_tolerance_pp, tie_keys=tie_keys
    )
    return Decision(tuple(summaries), costs, tuple(deltas), tuple(gate_results), status, tuple(comparisons))


def without_regression_limit(gate: Gate) -> Gate:
    """A suite's gate for a suite x model the baseline lacks."""
    return replace(gate, max_regression=None)
