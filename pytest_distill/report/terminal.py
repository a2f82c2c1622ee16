"""The end-of-run terminal summary of a RunResult: one row per suite x model, then lines."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from pytest_distill.core.records import Summary
from pytest_distill.core.result import RunResult
from pytest_distill.core.sampling import SuiteSample
from pytest_distill.report import classes
from pytest_distill.report.comparison_text import format_comparison, format_delta
from pytest_distill.report.fmt import count, money, ms, percent, sample_text, thousands
from pytest_distill.report.generation import generation_lines
from pytest_distill.report.matrix_view import terminal_matrix, terminal_routing


def summary_rows(
    summaries: Iterable[Summary],
    extra: dict[tuple[str, str], dict[str, str]] | None = None,
    samples: Mapping[str, SuiteSample] | None = None,
) -> list[list[str]]:
    extra = extra or {}
    samples = samples or {}
    summaries = list(summaries)
    # With --repeat: the pass rate is mean ± std over repetitions, and "flips" counts the
    # examples whose outcome changed between repetitions.
    repeated = any(s.repetitions > 1 for s in summaries)
    # Plugin bugs get their own column, and only when there are any: never the model's "err".
    internal = any(s.internal for s in summaries)
    header = [
        "suite",
        "model",
        "n",
        "pass",
        "miss",
        "err",
        *(["bug"] if internal else []),
        "pass rate",
        *(["flips"] if repeated else []),
        "95% CI",
        "p50",
        "p95",
        "p99",
        "tok in",
        "tok out",
    ]
    extra_columns: list[str] = []
    for values in extra.values():
        for column in values:
            if column not in extra_columns:
                extra_columns.append(column)
    rows = [header + extra_columns]
    for s in summaries:
        rate = percent(s.pass_rate)
        if s.repetitions > 1 and s.rep_mean is not None:
            rate = f"{100 * s.rep_mean:.1f}±{100 * (s.rep_std or 0):.1f}%"
        row = [
            s.suite,
            s.model,
            _n(s, samples.get(s.suite)),
            str(s.passed),
            str(s.missed),
            str(s.errors),
            *([str(s.internal)] if internal else []),
            rate,
            *([str(s.flips) if s.repetitions > 1 else "-"] if repeated else []),
            f"{100 * s.ci_low:.1f}-{100 * s.ci_high:.1f}%" if s.pass_rate is not None else "-",
            ms(s.latency_p50),
            ms(s.latency_p95),
            ms(s.latency_p99),
            count(s.mean_input_tokens),
            count(s.mean_output_tokens),
        ]
        values = extra.get((s.suite, s.model), {})
        rows.append(row + [values.get(column, "") for column in extra_columns])
    return rows


def _n(summary: Summary, sample: SuiteSample | None) -> str:
    """The n cell; a sampled row measured once says of how many: `200/3,080`."""
    if sample is None or summary.repetitions > 1:
        return str(summary.n)
    return f"{summary.n}/{thousands(sample.total)}"


def format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = set(range(2, len(widths)))
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def runs_label(result: RunResult, summary: Summary) -> str:
    """`3×`, or `1× t=0` for a row measured once at temperature 0: its rate rests on the claim
    that temperature 0 is deterministic (docs/models.md), which --repeat checks."""
    temperature = (result.models.get(summary.model) or {}).get("temperature")
    if summary.repetitions <= 1 and temperature == 0:
        return "1× t=0"
    return f"{max(summary.repetitions, 1)}×"


def render(result: RunResult) -> list[str]:
    """The lines under the '= pytest-distill =' separator."""
    extra: dict[tuple[str, str], dict[str, str]] = {}
    for s in result.summaries:
        cost = result.cost(s.suite, s.model)
        extra[(s.suite, s.model)] = {
            "$/req": money(cost.per_request),
            "$/1M req": money(cost.per_million),
            "cost basis": cost.basis,
        }
    for gate in result.gates:
        extra.setdefault((gate.suite, gate.model), {})["gate"] = "PASS" if gate.passed else "FAIL"
    if any(s.repetitions > 1 for s in result.summaries):
        for s in result.summaries:
            extra.setdefault((s.suite, s.model), {})["runs"] = runs_label(result, s)
    lines = format_table(summary_rows(result.summaries, extra, result.samples))
    lines += [sample_text(suite, sample.to_dict()) for suite, sample in sorted(result.samples.items())]
    lines += classes.terminal_lines(result.records)
    lines += [f"gate {'passed' if g.passed else 'FAILED'}: {g.suite} x {g.model}: {g.reason}" for g in result.gates]
    for comparison in result.comparisons:
        lines += format_comparison(comparison)
    if result.matrix is not None:
        lines += terminal_matrix(result.matrix.to_dict())
    if result.routing is not None:
        lines += terminal_routing(result.routing.to_dict())
    if result.baseline is not None:
        lines += [format_delta(d) for d in result.baseline.deltas]
    if result.skipped:
        lines.append(f"{result.skipped} item(s) skipped: no scorer yet for their task type")
    internal = result.internal_errors
    if internal:
        shown = ", ".join(r.nodeid for r in internal[:5]) + (", ..." if len(internal) > 5 else "")
        lines.append(
            f"{len(internal)} item(s) hit a pytest-distill internal error (a plugin bug, not counted "
            f"as the model's errors; please report it with the traceback above): {shown}"
        )
    lines += generation_lines(list(result.records))
    lines += result.cost_notes
    return lines
