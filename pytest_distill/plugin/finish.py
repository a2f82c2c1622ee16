"""The controller's end of a run: records -> summaries -> costs -> baseline -> gates ->
exit status -> comparisons, as one RunResult that every report renders.

With a gate, misses inside a passing gate don't fail the run; a pytest-distill internal
error always does (docs/gates.md).
"""

from __future__ import annotations

import time

import pytest

from pytest_distill.bench.load import fingerprint_id, saved_rate
from pytest_distill.core.compare import DEFAULT_ALPHA
from pytest_distill.core.cost import (
    BenchRate,
    cost_notes,
    gpu_hourly,
    hardware_label,
    tie_key,
    volume_models,
    volume_report,
)
from pytest_distill.core.decide import PytestOutcome, decide
from pytest_distill.core.errors import DistillError
from pytest_distill.core.matrix import build_matrix
from pytest_distill.core.records import Record
from pytest_distill.core.result import BaselineRun, RunInfo, RunResult, SuiteGate
from pytest_distill.core.routing import plan_routing
from pytest_distill.core.sampling import SuiteSample
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.core.variants import VariantComparison, compare_variants, variant_pairs
from pytest_distill.models.registry import ModelEntry, eval_concurrency
from pytest_distill.plugin import xdist
from pytest_distill.plugin.collect import suite_sample
from pytest_distill.plugin.shard import run_definition, shard_info
from pytest_distill.plugin.state import RunState
from pytest_distill.plugin.suite_gates import SuiteGates
from pytest_distill.report.junit import add_gate_testcases
from pytest_distill.report.results_file import records_of
from pytest_distill.runtime.replicas import merge_stats
from pytest_distill.suite import is_suite_dir, load_suite


def add_report(state: RunState, report: pytest.TestReport) -> None:
    """The controller collects each item's Record from its teardown report."""
    if report.when != "teardown":
        return
    state.gathered.records.extend(Record.all_from_properties(report.user_properties))


def finish(state: RunState, session: pytest.Session) -> RunResult:
    """Decide the run: sets session.exitstatus, adds the gate testcases to --junitxml."""
    options, records = state.options, list(state.gathered.records)
    for model in dict.fromkeys(r.model for r in records):
        if model not in state.models.entries:  # planned by the workers only (a suite of @examples tests)
            state.models.entries[model] = state.models.registry.get(model)
    planned = state.models.plan.models if state.models.plan is not None else ()
    # models planned only by workers follow in name order: records arrive in timing order
    run_models = tuple(dict.fromkeys([*planned, *sorted({r.model for r in records})])) or options.models
    bench_rates = serving_rates(state)
    gates = SuiteGates(options)
    outcome = PytestOutcome(
        int(session.exitstatus), session.testsfailed, stopped_early=bool(session.shouldfail or session.shouldstop)
    )
    decision = decide(
        records,
        state.models.entries,
        gates.gate_for,
        outcome,
        options.route_tolerance,
        baseline_records=records_of(state.baseline) if state.baseline is not None else None,
        bench_rates=bench_rates,
        concurrency=eval_concurrency(state.models.entries),
    )
    if decision.exit_status != session.exitstatus:
        session.exitstatus = pytest.ExitCode(decision.exit_status)
    add_gate_testcases(state.config, list(decision.gates))  # before junitxml writes its file
    summaries, comparisons = decision.summaries, decision.comparisons
    baseline = None
    if state.baseline is not None:
        baseline = BaselineRun(
            path=str(options.baseline_path), created_at=state.baseline.get("created_at"), deltas=decision.deltas
        )
    suites: dict[str, SuiteGate] = {}
    for s in summaries:
        if s.suite not in suites:
            suites[s.suite] = SuiteGate(s.suite_path, gates.gate_for(s.suite_path, baseline=state.baseline is not None))
    run = RunInfo(
        args=tuple(str(a) for a in state.config.invocation_params.args),
        rootdir=str(options.rootdir),
        models=run_models,
        limit=options.limit,
        repeat=options.repeat,
        constrain=options.constrain,
        min_pass_rate=options.min_pass_rate,
        max_regression=options.max_regression,
        route_tolerance_pp=options.route_tolerance,
        alpha=comparisons[0].alpha if comparisons else DEFAULT_ALPHA,
        baseline=options.baseline_path,
        workers=xdist.workers_for_report(state.config),
        exit_status=int(session.exitstatus),
        duration_s=max(0.0, time.time() - state.started_at),
        definition=run_definition(state.config, options),
        shard=shard_info(options.shard, outcome),
        sample=options.sample,
        sample_seed=options.sample_seed if options.sample is not None else None,
    )
    per_million = {k: c.per_million for k, c in decision.costs.items()}
    tie_keys = {name: tie_key(entry, name) for name, entry in state.models.entries.items()}
    matrix = build_matrix(summaries, records, comparisons, per_million, state.models.entries, run_models)
    routing = plan_routing(
        summaries, comparisons, per_million, state.models.entries, tie_keys, dict(options.traffic_mix)
    )
    return RunResult(
        run=run,
        records=tuple(records),
        summaries=summaries,
        costs=decision.costs,
        gates=decision.gates,
        suites=suites,
        comparisons=comparisons,
        baseline=baseline,
        models={name: entry.public_dict() for name, entry in state.models.entries.items()},
        cost_notes=tuple(
            cost_notes(state.models.entries.values(), sum(r.cached for r in records))
            + serving_notes(state.models.entries, bench_rates)
        ),
        serving=tuple(state.serving.measured),
        priced_with={k: v for k, v in bench_rates.items() if isinstance(v, ServingMeasurement)},
        variants=tuple(variant_comparisons(state, records, bench_rates)),
        volume=volume_report(
            volume_models(
                records,
                state.models.entries,
                {k: v for k, v in bench_rates.items() if isinstance(v, ServingMeasurement)},
            ),
            options.traffic,
            options.peak_factor,
        )
        if summaries or state.serving.measured
        else None,
        matrix=matrix,
        routing=routing,
        replicas={
            model: tuple(rows)
            for model, rows in merge_stats(state.gathered.replica_parts, state.models.replica_layout).items()
        },
        samples=suite_samples(state, records),
    )


def suite_samples(state: RunState, records: list[Record]) -> dict[str, SuiteSample]:
    """--sample: each suite row's sample size of its full size. The controller of an xdist run
    collected nothing: the suite folders are read again here."""
    options = state.options
    if options.sample is None:
        return {}
    samples: dict[str, SuiteSample] = {}
    for label, path in sorted({(r.suite, r.suite_path) for r in records}):
        folder = options.rootdir / path
        if label in samples or not is_suite_dir(folder):  # a plain test's module
            continue
        try:
            sample = suite_sample(load_suite(folder, options.rootdir), options)
        except DistillError:
            continue
        if sample is not None:
            samples[label] = sample
    return samples


def serving_rates(state: RunState) -> dict[str, ServingMeasurement | BenchRate]:
    """The rate that prices each self-hosted model, first found: --distill-serving FILE, this
    run's --distill-bench, the rate an earlier --distill-bench saved in pytest's cache."""
    measured_now = {m.model: m for m in state.serving.measured if m.requests_per_s}
    rates: dict[str, ServingMeasurement | BenchRate] = {}
    for name, entry in state.models.entries.items():
        if not entry.self_hosted:
            continue
        found = (
            state.serving.stored.get(name)
            or measured_now.get(name)
            or saved_rate(getattr(state.config, "cache", None), entry)
        )
        if found is not None:
            rates[name] = found
    return rates


def serving_notes(entries: dict[str, ModelEntry], rates: dict[str, ServingMeasurement | BenchRate]) -> list[str]:
    """Say plainly where a self-hosted rate was measured on a CPU but priced as other hardware."""
    notes = []
    for name, rate in rates.items():
        if isinstance(rate, ServingMeasurement) and rate.device == "CPU":
            label = hardware_label(entries[name])
            notes.append(
                f"{name}: the rate was measured on a CPU; ${gpu_hourly(entries[name]):.2f}/h is the "
                f"entry's {label} price"
                + (" (set hourly_usd and hardware for the machine measured)" if label == "GPU" else "")
            )
    return notes


def variant_comparisons(
    state: RunState, records: list[Record], rates: dict[str, ServingMeasurement | BenchRate]
) -> list[VariantComparison]:
    """Self-hosted entries on the same weights with other serving settings, side by side."""
    hosted = {name: e for name, e in state.models.entries.items() if e.self_hosted}
    pairs = variant_pairs(
        {name: (e.provider, e.model) for name, e in hosted.items()},
        {name: fingerprint_id(e) for name, e in hosted.items()},
    )
    serving = {k: v for k, v in rates.items() if isinstance(v, ServingMeasurement)}
    return compare_variants(pairs, serving, records)
