"""The end-of-run table: one row per suite x model."""

from __future__ import annotations

from collections.abc import Iterable

from pytest_distill.core.records import Summary


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.0f}ms" if value < 10 else f"{value:.1f}s"


def _num(value: float | None, digits: int = 0) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def money(value: float | None) -> str:
    if value is None:
        return "-"
    if value == 0:
        return "$0"
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:.2f}"
    return f"${value:.2g}"


def summary_rows(summaries: Iterable[Summary], extra: dict[tuple[str, str], dict[str, str]] | None = None):
    extra = extra or {}
    summaries = list(summaries)
    # With --repeat: the pass rate is mean ± std over repetitions, and "flips" counts the
    # examples whose outcome changed between repetitions.
    repeated = any(s.repetitions > 1 for s in summaries)
    header = ["suite", "model", "n", "pass", "miss", "err", "pass rate", *(["flips"] if repeated else []),
              "95% CI", "p50", "p95", "p99", "tok in", "tok out"]
    extra_columns: list[str] = []
    for values in extra.values():
        for column in values:
            if column not in extra_columns:
                extra_columns.append(column)
    rows = [header + extra_columns]
    for s in summaries:
        rate = _pct(s.pass_rate)
        if s.repetitions > 1 and s.rep_mean is not None:
            rate = f"{100 * s.rep_mean:.1f}±{100 * (s.rep_std or 0):.1f}%"
        row = [
            s.suite, s.model, str(s.n), str(s.passed), str(s.missed), str(s.errors), rate,
            *([str(s.flips) if s.repetitions > 1 else "-"] if repeated else []),
            f"{100 * s.ci_low:.1f}-{100 * s.ci_high:.1f}%" if s.pass_rate is not None else "-",
            _ms(s.latency_p50), _ms(s.latency_p95), _ms(s.latency_p99),
            _num(s.mean_input_tokens), _num(s.mean_output_tokens),
        ]
        values = extra.get((s.suite, s.model), {})
        rows.append(row + [values.get(column, "") for column in extra_columns])
    return rows


def format_table(rows: list[list[str]]) -> list[str]:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    numeric = {i for i in range(2, len(widths))}
    lines = []
    for index, row in enumerate(rows):
        cells = [cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i]) for i, cell in enumerate(row)]
        lines.append("  ".join(cells).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines
