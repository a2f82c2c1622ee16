"""Classification suites in the reports: the most frequent confusions under the table
(terminal, summary.md) and per-class precision, recall and F1 (report.html)."""

from __future__ import annotations

import html
from collections.abc import Iterable

from pytest_distill.core.classes import by_suite_model, class_metrics, confusions, macro_f1
from pytest_distill.core.records import Record
from pytest_distill.report.fmt import percent


def _e(value: object) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def terminal_lines(records: Iterable[Record]) -> list[str]:
    """`confusions banking77 x m (macro-F1 41.2%): card_arrival → card_linking 12, ...`: one line per row with misses."""
    lines = []
    for (suite, model), group in by_suite_model(records).items():
        found = confusions(group)
        if found:
            shown = ", ".join(f"{c.expected} → {c.got} {c.count}" for c in found)
            lines.append(f"confusions {suite} x {model} (macro-F1 {percent(macro_f1(class_metrics(group)))}): {shown}")
    return lines


def markdown_lines(records: Iterable[Record]) -> list[str]:
    rows = []
    for (suite, model), group in by_suite_model(records).items():
        for c in confusions(group):
            rows.append(f"| {_md(suite)} | {_md(model)} | {_md(c.expected)} → {_md(c.got)} | {c.count} |")
    if not rows:
        return []
    return [
        "",
        "**Most frequent confusions** (classification suites, expected → got)",
        "",
        "| suite | model | confusion | count |",
        "|---|---|---|---:|",
        *rows,
    ]


def _md(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def html_section(records: Iterable[Record], suite: str) -> str:
    """The suite's per-class table for each model (and its top confusions); empty for other suites."""
    parts = []
    for (name, model), group in by_suite_model(records).items():
        if name != suite:
            continue
        metrics = class_metrics(group)
        rows = "".join(
            f'<tr><td>{_e(m.label)}</td><td class="num">{m.support}</td><td class="num">{m.predicted}</td>'
            f'<td class="num">{percent(m.precision)}</td><td class="num">{percent(m.recall)}</td>'
            f'<td class="num">{percent(m.f1)}</td></tr>'
            for m in metrics
        )
        found = confusions(group)
        confused = (
            '<p class="confusions">Most frequent confusions: '
            + ", ".join(f"{_e(c.expected)} → {_e(c.got)} ({c.count})" for c in found)
            + "</p>"
            if found
            else ""
        )
        parts.append(
            f'<details class="classes"><summary>{_e(model)}: per-class precision, recall and F1 '
            f"(macro-F1 {percent(macro_f1(metrics))}, {len(metrics)} classes)</summary>{confused}"
            '<table class="per-class"><thead><tr><th>class</th><th class="num">support</th>'
            '<th class="num">predicted</th><th class="num">precision</th><th class="num">recall</th>'
            f'<th class="num">F1</th></tr></thead><tbody>{rows}</tbody></table></details>'
        )
    return "".join(parts)
