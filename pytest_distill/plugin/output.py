"""What a finished run shows and writes: the terminal summary, the report files, and the
--distill-bench results. Renderers live in report/; this module only hands them the RunResult."""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_distill.bench import load as bench
from pytest_distill.bench import runner
from pytest_distill.plugin import lifecycle, misses
from pytest_distill.plugin.collect import ExampleItem
from pytest_distill.plugin.state import RunState
from pytest_distill.report import terminal
from pytest_distill.report.replicas_view import replica_lines
from pytest_distill.report.write import append_step_summary, write_reports


def publish(state: RunState) -> None:
    """Write --distill-report's files and the GitHub step summary; notes what was written."""
    result = state.result
    # A shard writes its results.json even when none of the examples fell to it: merge needs every shard.
    if result is None or (not (result.summaries or result.serving) and state.options.shard is None):
        return
    report_dir = state.options.report_dir
    if report_dir is None and not os.environ.get("GITHUB_STEP_SUMMARY"):
        return
    try:
        if report_dir is not None:
            state.notes += [(f"distill report: {path}", False) for path in write_reports(report_dir, result)]
        append_step_summary(result)
    except OSError as exc:
        state.notes.append((f"distill report not written: {exc.filename or report_dir}: {exc.strerror}", True))


def terminal_summary(state: RunState, reporter: Any) -> None:
    folded = misses.terminal_lines(state)
    if folded:
        reporter.write_sep("=", "distill misses")
        for line in folded:
            reporter.write_line(line, red=line.startswith("FAILED"))
    result = state.result
    if result is not None and result.summaries:
        reporter.write_sep("=", "pytest-distill")
        for line in terminal.render(result) + replica_lines(result.replicas):
            reporter.write_line(line)
        for line, problem in state.notes:
            reporter.write_line(line, red=problem)
    if state.serving.bench_results:
        reporter.write_sep("=", "pytest-distill bench")
        for line in bench.summary_lines(
            state.serving.bench_results, dict(state.models.entries), state.serving.measured
        ):
            reporter.write_line(line)


def run_bench(state: RunState, items: list[pytest.Item]) -> None:
    """--distill-bench: replay the collected items' requests under load instead of running them."""
    options = state.options.bench
    assert options is not None
    requests = {
        name: [state.evaluator.request_for(i) for i in items if isinstance(i, ExampleItem) and i.model == name]
        for name in state.models.entries
    }
    reporter = state.config.pluginmanager.get_plugin("terminalreporter")
    plan = runner.BenchPlan(
        concurrency=options.concurrency,
        count=options.requests,
        duration_s=options.duration_s,
        warmup=options.warmup,
        saturation=options.saturation,
    )
    state.serving.bench_results, state.serving.measured = runner.run_models(
        state.models.entries,
        requests,
        plan,
        pytest_cache=getattr(state.config, "cache", None),
        servers=state.servers,
        log_dir=lambda: lifecycle.log_dir(state),
        say=reporter.write_line if reporter is not None else None,
    )
