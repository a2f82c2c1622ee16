"""The controller's end of a run: records -> summaries -> costs -> baseline -> gates ->
exit status -> comparisons, as one RunResult that every report renders.

With a gate, misses inside a passing gate don't fail the run; a pytest-distill internal
error always does (docs/gates.md).
"""

from __future__ import annotations

import time

import pytest

from pytest_distill.bench.load import saved_rate
from pytest_distill.core.compare import DEFAULT_ALPHA
from pytest_distill.core.cost import cost_notes
from pytest_distill.core.decide import PytestOutcome, decide
from pytest_distill.core.records import Record
from pytest_distill.core.result import BaselineRun, RunInfo, RunResult, SuiteGate
from pytest_distill.plugin import xdist
from pytest_distill.plugin.shard import run_definition, shard_info
from pytest_distill.plugin.state import RunState
from pytest_distill.plugin.suite_gates import SuiteGates
from pytest_distill.report.junit import add_gate_testcases
from pytest_distill.report.results_file import records_of


def add_report(state: RunState, report: pytest.TestReport) -> None:
    """The controller collects each item's Record from its teardown report."""
    if report.when != "teardown":
        return
    state.records.extend(Record.all_from_properties(report.user_properties))


def finish(state: RunState, session: pytest.Session) -> RunResult:
    """Decide the run: sets session.exitstatus, adds the gate testcases to --junitxml."""
    options, records = state.options, list(state.records)
    for model in dict.fromkeys(r.model for r in records):
        if model not in state.entries:  # planned by the workers only (a suite of @examples tests)
            state.entries[model] = state.registry.get(model)
    planned = state.plan.models if state.plan is not None else ()
    # models planned only by workers follow in name order: records arrive in timing order
    run_models = tuple(dict.fromkeys([*planned, *sorted({r.model for r in records})])) or options.models
    bench_rates = {name: rate for name, entry in state.entries.items()
                   if (rate := saved_rate(getattr(state.config, "cache", None), entry)) is not None}
    gates = SuiteGates(options)
    outcome = PytestOutcome(int(session.exitstatus), session.testsfailed,
                            stopped_early=bool(session.shouldfail or session.shouldstop))
    decision = decide(records, state.entries, gates.gate_for, outcome, options.route_tolerance,
                      baseline_records=records_of(state.baseline) if state.baseline is not None else None,
                      bench_rates=bench_rates)
    if decision.exit_status != session.exitstatus:
        session.exitstatus = pytest.ExitCode(decision.exit_status)
    add_gate_testcases(state.config, list(decision.gates))  # before junitxml writes its file
    summaries, comparisons = decision.summaries, decision.comparisons
    baseline = None
    if state.baseline is not None:
        baseline = BaselineRun(path=str(options.baseline_path), created_at=state.baseline.get("created_at"),
                               deltas=decision.deltas)
    suites: dict[str, SuiteGate] = {}
    for s in summaries:
        if s.suite not in suites:
            suites[s.suite] = SuiteGate(s.suite_path, gates.gate_for(s.suite_path, baseline=state.baseline is not None))
    run = RunInfo(
        args=tuple(str(a) for a in state.config.invocation_params.args), rootdir=str(options.rootdir),
        models=run_models, limit=options.limit, repeat=options.repeat, constrain=options.constrain,
        min_pass_rate=options.min_pass_rate, max_regression=options.max_regression,
        route_tolerance_pp=options.route_tolerance,
        alpha=comparisons[0].alpha if comparisons else DEFAULT_ALPHA, baseline=options.baseline_path,
        workers=xdist.workers_for_report(state.config), exit_status=int(session.exitstatus),
        duration_s=max(0.0, time.time() - state.started_at),
        definition=run_definition(state.config, options), shard=shard_info(options.shard, outcome),
    )
    return RunResult(
        run=run, records=tuple(records), summaries=summaries, costs=decision.costs, gates=decision.gates,
        suites=suites, comparisons=comparisons, baseline=baseline,
        models={name: entry.public_dict() for name, entry in state.entries.items()},
        cost_notes=tuple(cost_notes(state.entries.values(), sum(r.cached for r in records))),
    )

