"""summary.md (and the GitHub Actions step summary), rendered from the results.json document."""

from __future__ import annotations

from typing import Any

from pytest_distill.core.compare import SuiteComparison
from pytest_distill.report import classes, serving
from pytest_distill.report.comparison_text import route_text
from pytest_distill.report.fmt import money, ms, percent, sample_text, thousands
from pytest_distill.report.matrix_view import markdown as matrix_markdown
from pytest_distill.report.results_file import records_of

MAX_LISTED = 20  # newly failing examples named per suite x model


def _cell(value: Any) -> str:
    text = "" if value is None else str(value)
    return text.replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]], right: set[int]) -> list[str]:
    lines = [
        "| " + " | ".join(head) + " |",
        "|" + "|".join("---:" if i in right else "---" for i in range(len(head))) + "|",
    ]
    lines += ["| " + " | ".join(_cell(c) for c in row) + " |" for row in rows]
    return lines


def render(document: dict[str, Any]) -> str:
    run = document["run"]
    status = run["exit_status"]
    lines = [f"## pytest-distill: {'passed' if status == 0 else 'failed'} (exit status {status})", ""]
    warning = document.get("judge_warning")
    if warning:
        lines += [f"> ⚠️ **Offline judge:** {warning['message']}", ""]
    rows = []
    samples = {name: suite["sample"] for name, suite in document["suites"].items() if suite.get("sample")}
    for s in document["summaries"]:
        rate = (
            f"{100 * s['rep_mean']:.1f} ± {100 * (s['rep_std'] or 0):.1f}%"
            if s["repetitions"] > 1 and s["rep_mean"] is not None
            else percent(s["pass_rate"])
        )
        ci = f"{percent(s['ci_low'])}–{percent(s['ci_high'])}" if s["pass_rate"] is not None else "-"
        gate = s.get("gate")
        verdict = "" if gate is None else ("✅ pass" if gate["passed"] else "❌ FAIL")
        rows.append(
            [
                s["suite"],
                s["model"],
                f"{s['n']} of {thousands(samples[s['suite']]['total'])}"
                if s["suite"] in samples and s["repetitions"] <= 1
                else s["n"],
                rate,
                ci,
                s["errors"],
                ms(s["latency_p50"]),
                ms(s["latency_p95"]),
                money(s["cost"]["per_million"]),
                verdict,
            ]
        )
    if rows:  # a --distill-bench run evaluates nothing: its serving rows follow
        lines += _table(
            ["suite", "model", "n", "pass rate", "95% CI", "errors", "p50", "p95", "$/1M req", "gate"],
            rows,
            {2, 3, 5, 6, 7, 8},
        )
        lines += (
            [""] + [f"- {sample_text(name, sample)}" for name, sample in sorted(samples.items())] if samples else []
        )
    lines += classes.markdown_lines(records_of(document))
    gates = document["gates"]
    if gates:
        failed = [g for g in gates if not g["passed"]]
        lines += ["", f"**Gates:** {len(gates) - len(failed)} passed, {len(failed)} failed"]
        lines += [f"- ❌ {g['suite']} × {g['model']}: {g['reason']}" for g in failed]
    if document["comparisons"]:
        lines += ["", "**Comparison** (each model vs the best: exact McNemar on shared examples)", ""]
        for c in document["comparisons"]:
            ranking = "; ".join(
                f"{r['rank']}. {r['model']} {percent(r['rate'])}"
                + (
                    ""
                    if r["p_value"] is None or r["delta_pp"] is None
                    else f" ({r['delta_pp']:+.1f} pp, p={r['p_value']:.3g}"
                    f"{', significant' if r['significant'] else ''})"
                )
                for r in c["ranking"]
            )
            lines.append(f"- **{c['suite']}**: {ranking}")
            lines.append(f"  - {_route(c)}")
    lines += matrix_markdown(document.get("matrix"), document.get("routing"))
    baseline = document.get("baseline")
    if baseline:
        lines += ["", f"**Against the baseline** `{baseline['path']}`", ""]
        brows = []
        for d in baseline["deltas"]:
            failing = d["newly_failing"]
            named = ", ".join(failing[:MAX_LISTED]) + (", …" if len(failing) > MAX_LISTED else "")
            brows.append(
                [
                    d["suite"],
                    d["model"],
                    d["shared"],
                    percent(d["baseline_rate"]),
                    percent(d["rate"]),
                    "-" if d["delta_pp"] is None else f"{d['delta_pp']:+.1f} pp",
                    f"{len(failing)}" + (f": {named}" if failing else ""),
                ]
            )
        lines += _table(["suite", "model", "shared", "baseline", "now", "change", "newly failing"], brows, {2, 3, 4, 5})
    lines += serving.markdown_lines(document)
    misses = sum(1 for r in document["records"] if r["outcome"] == "miss")
    errors = sum(1 for r in document["records"] if r["outcome"] == "error")
    internal = sum(1 for r in document["records"] if r["outcome"] == "internal")
    lines += [
        "",
        f"{len(document['records'])} items: {misses} misses, {errors} errors"
        + (f", {internal} pytest-distill internal errors (plugin bugs, not the model's)." if internal else "."),
    ]
    return "\n".join(lines) + "\n"


def _route(comparison: dict[str, Any]) -> str:
    return route_text(SuiteComparison.from_dict(comparison))
