"""The controller's end of a run: records -> summaries -> costs -> baseline -> gates ->
exit status -> comparisons, as one RunResult that every report renders.

With a gate, misses inside a passing gate don't fail the run; a pytest-distill internal
error always does (docs/gates.md).
"""

from __future__ import annotations

import time

import pytest

from pytest_distill.bench.load import saved_rate
from pytest_distill.core.baseline import compare_to_baseline
from pytest_distill.core.compare import DEFAULT_ALPHA, compare
from pytest_distill.core.cost import cost_notes, summary_costs, tie_key
from pytest_distill.core.gates import (
    EXIT_OK,
    EXIT_TESTS_FAILED,
    check_gate,
    exit_status,
)
from pytest_distill.core.matrix import build_matrix
from pytest_distill.core.records import ERROR, INTERNAL, MISS, Record, summarize
from pytest_distill.core.result import BaselineRun, RunInfo, RunResult, SuiteGate
from pytest_distill.core.routing import plan_routing
from pytest_distill.plugin import xdist
from pytest_distill.plugin.state import RunState
from pytest_distill.plugin.suite_gates import SuiteGates
from pytest_distill.report.junit import add_gate_testcases
from pytest_distill.report.results_file import records_of


def add_report(state: RunState, report: pytest.TestReport) -> None:
    """The controller collects each item's Record from its teardown report."""
    if report.when != "teardown":
        return
    record = Record.from_properties(report.user_properties)
    if record is not None:
        state.records.append(record)


def finish(state: RunState, session: pytest.Session) -> RunResult:
    """Decide the run: sets session.exitstatus, adds the gate testcases to --junitxml."""
    options, records = state.options, list(state.records)
    summaries = summarize(records)
    bench_rates = {name: rate for name, entry in state.entries.items()
                   if (rate := saved_rate(getattr(state.config, "cache", None), entry)) is not None}
    costs = summary_costs(summaries, records, state.entries, bench_rates)
    deltas = compare_to_baseline(records, records_of(state.baseline)) if state.baseline is not None else []
    regressions = {(d.suite, d.model): d.regression_pp for d in deltas if d.regression_pp is not None}
    gates = SuiteGates(options)
    gate_results = []
    for s in summaries:
        key = (s.suite, s.model)
        gate = gates.gate_for(s.suite_path, baseline=key in regressions)
        if gate.active and s.n > s.internal:  # all skipped (no scorer yet): nothing to gate on
            gate_results.append(check_gate(s, gate, regressions.get(key)))
    gated_ok = {(g.suite, g.model) for g in gate_results if g.passed}
    excused = sum(1 for r in records if r.outcome in (MISS, ERROR) and (r.suite, r.model) in gated_ok)
    status = exit_status(int(session.exitstatus), gate_results, session.testsfailed, excused,
                         stopped_early=bool(session.shouldfail or session.shouldstop))
    if status == EXIT_OK and any(r.outcome == INTERNAL for r in records):
        status = EXIT_TESTS_FAILED  # a plugin bug never passes, whatever the gates say
    if status != session.exitstatus:
        session.exitstatus = pytest.ExitCode(status)
    add_gate_testcases(state.config, gate_results)  # before junitxml writes its file
    tie_keys = {name: tie_key(entry, name) for name, entry in state.entries.items()}
    comparisons = compare(summaries, records, {k: c.per_request for k, c in costs.items()}, options.route_tolerance,
                          tie_keys=tie_keys)
    baseline = None
    if state.baseline is not None:
        baseline = BaselineRun(path=str(options.baseline_path), created_at=state.baseline.get("created_at"),
                               deltas=tuple(deltas))
    suites: dict[str, SuiteGate] = {}
    for s in summaries:
        if s.suite not in suites:
            suites[s.suite] = SuiteGate(s.suite_path, gates.gate_for(s.suite_path, baseline=state.baseline is not None))
    run = RunInfo(
        args=tuple(str(a) for a in state.config.invocation_params.args), rootdir=str(options.rootdir),
        models=options.models, limit=options.limit, repeat=options.repeat, constrain=options.constrain,
        min_pass_rate=options.min_pass_rate, max_regression=options.max_regression,
        route_tolerance_pp=options.route_tolerance,
        alpha=comparisons[0].alpha if comparisons else DEFAULT_ALPHA, baseline=options.baseline_path,
        workers=xdist.workers_for_report(state.config), exit_status=int(session.exitstatus),
        duration_s=max(0.0, time.time() - state.started_at),
    )
    per_million = {k: c.per_million for k, c in costs.items()}
    matrix = build_matrix(summaries, records, comparisons, per_million, state.entries, options.models)
    routing = plan_routing(summaries, comparisons, per_million, state.entries, tie_keys, dict(options.traffic_mix))
    return RunResult(
        run=run, records=tuple(records), summaries=tuple(summaries), costs=costs, gates=tuple(gate_results),
        suites=suites, comparisons=tuple(comparisons), baseline=baseline,
        models={name: entry.public_dict() for name, entry in state.entries.items()},
        cost_notes=tuple(cost_notes(state.entries.values(), sum(r.cached for r in records))),
        matrix=matrix, routing=routing,
    )

