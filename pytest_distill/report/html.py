"""report.html: one self-contained file rendered from the results.json document.

Charts are inline SVG computed here (no JS library, no network): per-suite accuracy bars
with 95% Wilson whiskers, accuracy against cost with the Pareto front, latency box plots
with every sample. The only script (report.js) filters the misses table.
"""

from __future__ import annotations

import html
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

from pytest_distill.core import stats
from pytest_distill.core.compare import SuiteComparison
from pytest_distill.report import classes, serving
from pytest_distill.report.comparison_text import route_text, significance_text
from pytest_distill.report.fmt import money, ms, percent, sample_text, thousands
from pytest_distill.report.matrix_view import html_matrix, html_routing
from pytest_distill.report.results_file import records_of

HERE = Path(__file__).parent
MAX_TABLE_ROWS = 2000  # misses / errors shown; the rest stay in results.json
MAX_SAMPLES = 400  # latency dots drawn per model; the box uses every sample


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _f(x: float) -> str:
    """SVG coordinates: short and locale-free."""
    return f"{x:.1f}"


def _money_tick(value: float) -> str:
    if value >= 1:
        return f"${value:,.0f}" if value == int(value) else f"${value:,.2f}"
    return f"${value:.2g}"


def nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    """Round tick values covering [low, high]."""
    if high <= low:
        high = low + 1
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    # From the last step at or below low to the first at or above high: the data always fits.
    first, last = math.floor(low / step + 1e-9), math.ceil(high / step - 1e-9)
    return [round(k * step, 12) for k in range(first, last + 1)]


def pareto_front(points: list[tuple[str, float, float]]) -> list[str]:
    """Names of the points (name, cost, rate) no other point beats on both cost and rate."""
    front, best_rate = [], -math.inf
    for name, _cost, rate in sorted(points, key=lambda p: (p[1], -p[2], p[0])):
        if rate > best_rate:
            front.append(name)
            best_rate = rate
    return front


# --- charts -------------------------------------------------------------------


def accuracy_chart(suite: str, rows: list[dict[str, Any]], gate: float | None) -> str:
    label_w, plot_w, right_w, row_h, top, bottom = 150, 300, 60, 26, 22, 10
    height = top + row_h * len(rows) + bottom
    width = label_w + plot_w + right_w

    def x(rate: float) -> float:
        return label_w + plot_w * rate

    parts = [
        f'<svg class="chart accuracy" data-suite="{_e(suite)}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_e(suite)}: pass rate per model with 95% confidence interval</title>",
        '<g class="axis">',
    ]
    for tick in (0, 0.25, 0.5, 0.75, 1):
        parts.append(
            f'<line class="grid" x1="{_f(x(tick))}" x2="{_f(x(tick))}" y1="{top - 4}" y2="{height - bottom}"/>'
            f'<text x="{_f(x(tick))}" y="{top - 8}" text-anchor="middle">{tick * 100:.0f}%</text>'
        )
    parts.append("</g>")
    for i, s in enumerate(rows):
        y = top + i * row_h
        mid = y + row_h / 2
        rate = s["rep_mean"] if s["repetitions"] > 1 and s["rep_mean"] is not None else s["pass_rate"]
        tip = (
            f"{s['model']}: {percent(rate)} (95% CI {percent(s['ci_low'])}-{percent(s['ci_high'])}), "
            f"{s['passed']} passed, {s['missed']} missed, {s['errors']} errors"
        )
        parts.append(f'<g class="row" data-model="{_e(s["model"])}"><title>{_e(tip)}</title>')
        parts.append(f'<text x="{label_w - 8}" y="{_f(mid + 4)}" text-anchor="end">{_e(s["model"])}</text>')
        if rate is not None:
            parts.append(
                f'<rect class="bar" x="{label_w}" y="{_f(y + 5)}" width="{_f(plot_w * rate)}" height="{row_h - 10}"/>'
            )
            lo, hi = x(s["ci_low"]), x(s["ci_high"])
            parts.append(
                f'<line class="whisker" x1="{_f(lo)}" x2="{_f(hi)}" y1="{_f(mid)}" y2="{_f(mid)}"/>'
                f'<line class="whisker" x1="{_f(lo)}" x2="{_f(lo)}" y1="{_f(mid - 5)}" y2="{_f(mid + 5)}"/>'
                f'<line class="whisker" x1="{_f(hi)}" x2="{_f(hi)}" y1="{_f(mid - 5)}" y2="{_f(mid + 5)}"/>'
            )
        parts.append(f'<text x="{label_w + plot_w + 6}" y="{_f(mid + 4)}">{percent(rate)}</text></g>')
    if gate is not None:
        parts.append(
            f'<line class="gate" x1="{_f(x(gate))}" x2="{_f(x(gate))}" y1="{top - 2}" y2="{height - bottom}">'
            f"<title>gate: {percent(gate)}</title></line>"
        )
    parts.append("</svg>")
    return "".join(parts)


def cost_chart(suite: str, rows: list[dict[str, Any]]) -> tuple[str, list[str]]:
    """The SVG (or a note) and the names of models with no known cost."""
    points = []
    unknown = []
    for s in rows:
        rate = s["rep_mean"] if s["repetitions"] > 1 and s["rep_mean"] is not None else s["pass_rate"]
        per_million = s["cost"]["per_million"]
        if per_million is None or rate is None:
            unknown.append(s["model"])
        else:
            points.append((s["model"], per_million, rate))
    if not points:
        return '<p class="note">No cost data for this suite\'s models.</p>', unknown
    left, plot_w, plot_h, top, right, bottom = 50, 330, 200, 14, 120, 40
    width, height = left + plot_w + right, top + plot_h + bottom
    costs = [p[1] for p in points]
    positive = [c for c in costs if c > 0]
    log = len(positive) == len(costs)  # costs span orders of magnitude; linear only when one is $0
    if log:
        lo_exp, hi_exp = math.floor(math.log10(min(costs))), math.ceil(math.log10(max(costs)))
        hi_exp = max(hi_exp, lo_exp + 1)
        x_ticks = [10.0**k for k in range(lo_exp, hi_exp + 1)]

        def xs(c: float) -> float:
            return left + plot_w * (math.log10(c) - lo_exp) / (hi_exp - lo_exp)
    else:
        x_ticks = nice_ticks(0, max(costs) * 1.1 or 1)

        def xs(c: float) -> float:
            return left + plot_w * c / (x_ticks[-1] or 1)

    rates = [p[2] for p in points]
    y_low = max(0.0, math.floor((min(rates) - 0.05) * 10) / 10)
    y_ticks = nice_ticks(y_low, 1.0, 4)
    y_low = y_ticks[0]

    def ys(rate: float) -> float:
        return top + plot_h * (1 - (rate - y_low) / ((1.0 - y_low) or 1))

    parts = [
        f'<svg class="chart cost" data-suite="{_e(suite)}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_e(suite)}: pass rate against cost per million requests, Pareto front dashed</title>",
        '<g class="axis">',
    ]
    for t in x_ticks:
        parts.append(
            f'<line class="grid" x1="{_f(xs(t))}" x2="{_f(xs(t))}" y1="{top}" y2="{top + plot_h}"/>'
            f'<text x="{_f(xs(t))}" y="{top + plot_h + 14}" text-anchor="middle">{_e(_money_tick(t))}</text>'
        )
    for t in y_ticks:
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_f(ys(t))}" y2="{_f(ys(t))}"/>'
            f'<text x="{left - 6}" y="{_f(ys(t) + 4)}" text-anchor="end">{t * 100:.0f}%</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">'
        f"cost per million requests{' (log scale)' if log else ''}</text></g>"
    )
    front = pareto_front(points)
    by_name = {p[0]: p for p in points}
    path = " ".join(f"{_f(xs(by_name[n][1]))},{_f(ys(by_name[n][2]))}" for n in front)
    if len(front) > 1:
        parts.append(f'<polyline class="front" points="{path}"/>')
    for name, cost, rate in points:
        cls = "point pareto" if name in front else "point"
        tip = f"{name}: {percent(rate)} at {money(cost)} per million requests" + (
            " (Pareto front)" if name in front else ""
        )
        parts.append(
            f'<g data-model="{_e(name)}"><title>{_e(tip)}</title>'
            f'<circle class="{cls}" cx="{_f(xs(cost))}" cy="{_f(ys(rate))}" r="5"/>'
            f'<text x="{_f(xs(cost) + 8)}" y="{_f(ys(rate) + 4)}">{_e(name)}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts), unknown


def latency_chart(suite: str, models: list[str], samples: dict[str, list[float]]) -> str:
    rows = [m for m in models if samples.get(m)]
    if not rows:
        return '<p class="note">No latency measured (all answers cached or failed).</p>'
    label_w, plot_w, right_w, row_h, top, bottom = 150, 330, 30, 34, 12, 36
    width, height = label_w + plot_w + right_w, top + row_h * len(rows) + bottom
    high = max(max(samples[m]) for m in rows)
    scale, unit = (1.0, "seconds") if high >= 10 else (1000.0, "milliseconds")  # readable tick labels
    ticks = nice_ticks(0, high * scale or 1, 5)

    def x(seconds: float) -> float:
        return label_w + plot_w * seconds * scale / (ticks[-1] or 1)

    parts = [
        f'<svg class="chart latency" data-suite="{_e(suite)}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_e(suite)}: latency per request (box: p25-p75, line: median, whiskers: p5-p95, "
        f"dots: requests)</title>",
        '<g class="axis">',
    ]
    for t in ticks:
        px = label_w + plot_w * t / (ticks[-1] or 1)
        parts.append(
            f'<line class="grid" x1="{_f(px)}" x2="{_f(px)}" y1="{top}" y2="{top + row_h * len(rows)}"/>'
            f'<text x="{_f(px)}" y="{top + row_h * len(rows) + 14}" text-anchor="middle">{t:g}</text>'
        )
    parts.append(f'<text x="{label_w + plot_w / 2}" y="{height - 6}" text-anchor="middle">{unit}</text></g>')
    for i, model in enumerate(rows):
        values = sorted(samples[model])
        q = {p: stats.percentile(values, p) or 0.0 for p in (5, 25, 50, 75, 95, 99)}  # values: never empty
        mid = top + i * row_h + row_h / 2
        tip = f"{model}: n={len(values)}, p50 {ms(q[50])}, p95 {ms(q[95])}, p99 {ms(q[99])}, max {ms(values[-1])}"
        parts.append(
            f'<g class="row" data-model="{_e(model)}"><title>{_e(tip)}</title>'
            f'<text x="{label_w - 8}" y="{_f(mid + 4)}" text-anchor="end">{_e(model)}</text>'
        )
        step = max(1, len(values) // MAX_SAMPLES)
        for j, v in enumerate(values[::step]):
            jitter = ((j * 7919) % 13 - 6) * 0.9  # deterministic spread, so equal values stay visible
            parts.append(f'<circle class="sample" cx="{_f(x(v))}" cy="{_f(mid + jitter)}" r="1.8"/>')
        parts.append(
            f'<line class="whisker" x1="{_f(x(q[5]))}" x2="{_f(x(q[95]))}" y1="{_f(mid)}" y2="{_f(mid)}"/>'
            f'<rect class="box" x="{_f(x(q[25]))}" y="{_f(mid - 8)}" '
            f'width="{_f(max(1.0, x(q[75]) - x(q[25])))}" height="16"/>'
            f'<line class="median" x1="{_f(x(q[50]))}" x2="{_f(x(q[50]))}" y1="{_f(mid - 8)}" '
            f'y2="{_f(mid + 8)}"/></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


# --- page ---------------------------------------------------------------------


def _rate_cell(s: dict[str, Any]) -> str:
    if s["repetitions"] > 1 and s["rep_mean"] is not None:
        return f"{100 * s['rep_mean']:.1f} ± {100 * (s['rep_std'] or 0):.1f}%"
    return percent(s["pass_rate"])


def _summary_table(summaries: list[dict[str, Any]], samples: dict[str, dict[str, Any]]) -> str:
    head = (
        "suite",
        "model",
        "n",
        "pass",
        "miss",
        "err",
        "pass rate",
        "95% CI",
        "p50",
        "p95",
        "p99",
        "$/1M req",
        "cost basis",
        "gate",
    )
    numeric = set(range(2, 12))
    out = ['<table class="summary"><thead><tr>']
    out += [f'<th class="{"num" if i in numeric else ""}">{h}</th>' for i, h in enumerate(head)]
    out.append("</tr></thead><tbody>")
    for s in summaries:
        gate = s.get("gate")
        verdict = (
            ""
            if gate is None
            else (
                f'<span class="badge {"pass" if gate["passed"] else "fail"}" title="{_e(gate["reason"])}">'
                f"{'PASS' if gate['passed'] else 'FAIL'}</span>"
            )
        )
        ci = f"{percent(s['ci_low'])}-{percent(s['ci_high'])}" if s["pass_rate"] is not None else "-"
        cells = (
            s["suite"],
            s["model"],
            f"{s['n']} of {thousands(samples[s['suite']]['total'])}"
            if s["suite"] in samples and s["repetitions"] <= 1
            else s["n"],
            s["passed"],
            s["missed"],
            s["errors"],
            _rate_cell(s),
            ci,
            ms(s["latency_p50"]),
            ms(s["latency_p95"]),
            ms(s["latency_p99"]),
            money(s["cost"]["per_million"]),
            s["cost"]["basis"],
        )
        out.append(
            "<tr>"
            + "".join(f'<td class="{"num" if i in numeric else ""}">{_e(c)}</td>' for i, c in enumerate(cells))
            + f"<td>{verdict}</td></tr>"
        )
    out.append("</tbody></table>")
    return "".join(out)


def _comparison(comparison: dict[str, Any]) -> str:
    obj = SuiteComparison.from_dict(comparison)
    ranking = obj.ranking
    rows = "".join(
        f'<tr><td class="num">{r.rank}</td><td>{_e(r.model)}</td><td class="num">{percent(r.rate)}</td>'
        f'<td class="num">{"" if r.p_value is None or r.delta_pp is None else f"{r.delta_pp:+.1f} pp"}</td>'
        f'<td>{_e(significance_text(r, obj.alpha))}</td><td class="num">'
        f"{_e(money(None if r.cost_per_request is None else r.cost_per_request * 1e6))}</td></tr>"
        for r in ranking
    )
    return (
        f'<p class="route">{_e(route_text(obj))}</p>'
        f'<table class="ranking"><thead><tr><th class="num">rank</th><th>model</th><th class="num">pass rate</th>'
        f'<th class="num">vs best</th><th>exact McNemar vs best (alpha {obj.alpha:g})</th>'
        f'<th class="num">$/1M req</th></tr></thead><tbody>{rows}</tbody></table>'
    )


def _records_table(table_id: str, records: list[dict[str, Any]], columns: list[tuple[str, str]], what: str) -> str:
    if not records:
        return f'<p class="note">No {what}.</p>'
    shown = records[:MAX_TABLE_ROWS]
    note = (
        f' <span class="note">(first {MAX_TABLE_ROWS} of {len(records)}; all are in results.json)</span>'
        if len(records) > MAX_TABLE_ROWS
        else ""
    )
    out = [
        f'<p><input type="search" placeholder="filter {what}" data-filter="{table_id}" '
        f'data-count="{table_id}-count" aria-label="filter {what}"> '
        f'<span class="note" id="{table_id}-count">{len(shown)} of {len(shown)}</span>{note}</p>',
        f'<table id="{table_id}"><thead><tr>'
        + "".join(f"<th>{_e(h)}</th>" for h, _ in columns)
        + "</tr></thead><tbody>",
    ]
    for r in shown:
        cells = []
        for _, key in columns:
            value = r.get(key)
            cells.append(
                f"<td><pre>{_e(value)}</pre></td>"
                if key in ("expected", "output", "explanation", "error")
                else f"<td>{_e(value)}</td>"
            )
        out.append("<tr>" + "".join(cells) + "</tr>")
    out.append("</tbody></table>")
    return "".join(out)


def _baseline(baseline: dict[str, Any]) -> str:
    rows = []
    for d in baseline["deltas"]:
        failing = ", ".join(d["newly_failing"][:30]) + (" ..." if len(d["newly_failing"]) > 30 else "")
        change = "-" if d["delta_pp"] is None else f"{d['delta_pp']:+.1f} pp"
        p_value = "-" if d["p_value"] is None else f"{d['p_value']:.3g}"
        rows.append(
            f'<tr><td>{_e(d["suite"])}</td><td>{_e(d["model"])}</td><td class="num">{d["shared"]}</td>'
            f'<td class="num">{percent(d["baseline_rate"])}</td><td class="num">{percent(d["rate"])}</td>'
            f'<td class="num">{change}</td><td class="num">{p_value}</td>'
            f"<td>{len(d['newly_failing'])}</td><td>{_e(failing)}</td></tr>"
        )
    return (
        f'<p class="meta">Baseline <code>{_e(baseline["path"])}</code> from {_e(baseline.get("created_at"))}; '
        "compared on the examples both runs share.</p>"
        '<table class="baseline"><thead><tr><th>suite</th><th>model</th><th class="num">shared</th>'
        '<th class="num">baseline</th><th class="num">now</th><th class="num">change</th><th class="num">p</th>'
        "<th>newly failing</th><th>examples</th></tr></thead><tbody>" + "".join(rows) + "</tbody></table>"
    )


def render(document: dict[str, Any]) -> str:
    run = document["run"]
    summaries = document["summaries"]
    records = document["records"]
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for s in summaries:
        by_suite[s["suite"]].append(s)
    comparisons = {c["suite"]: c for c in document["comparisons"]}
    typed_records = records_of(document)
    latencies: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in records:
        # Cached answers took no time and errors never answered: neither is a latency.
        if r["outcome"] in ("pass", "miss") and r["latency_s"] is not None and not r["cached"]:
            latencies[(r["suite"], r["model"])].append(r["latency_s"])

    status = run["exit_status"]
    gates = document["gates"]
    failed_gates = [g for g in gates if not g["passed"]]
    body = [
        f'<h1>pytest-distill report</h1><p class="meta">{_e(document["created_at"])} · '
        f"pytest-distill {_e(document['versions'].get('pytest-distill'))} · exit status "
        f'<span class="{"status-ok" if status == 0 else "status-fail"}">{status}</span> · '
        f"{len(records)} records · models: {_e(', '.join(run['models']))}<br>"
        f"<code>pytest {_e(' '.join(run['args']))}</code></p>"
    ]
    warning = document.get("judge_warning")
    if warning:
        body.append(
            f'<p class="judge-warning" role="alert"><strong>Offline judge:</strong> {_e(warning["message"])}</p>'
        )
    if gates:
        body.append(f"<p>Gates: {len(gates) - len(failed_gates)} passed, {len(failed_gates)} failed.</p>")
    samples = {name: suite["sample"] for name, suite in document["suites"].items() if suite.get("sample")}
    body.append("<h2>Summary</h2>" + _summary_table(summaries, samples))
    if samples:
        body.append(
            '<ul class="samples">'
            + "".join(f"<li>{_e(sample_text(name, sample))}</li>" for name, sample in sorted(samples.items()))
            + "</ul>"
        )
    if document.get("matrix"):
        body.append('<h2>Matrix</h2><section id="matrix">' + html_matrix(document["matrix"]) + "</section>")
    if document.get("routing"):
        body.append('<h2>Routing</h2><section id="routing">' + html_routing(document["routing"]) + "</section>")
    if document.get("baseline"):
        body.append("<h2>Against the baseline</h2>" + _baseline(document["baseline"]))
    for suite, rows in sorted(by_suite.items()):
        order = (
            [r["model"] for r in comparisons[suite]["ranking"]] if suite in comparisons else [r["model"] for r in rows]
        )
        rows = sorted(rows, key=lambda s: order.index(s["model"]))
        gate = (document["suites"].get(suite) or {}).get("gate") or {}
        body.append(f'<section class="suite" id="suite-{_e(suite)}"><h2>{_e(suite)}</h2>')
        if suite in comparisons:
            body.append(_comparison(comparisons[suite]))
        cost_svg, unknown = cost_chart(suite, rows)
        missing = (
            f'<p class="note">No cost for: {_e(", ".join(unknown))}.</p>' if unknown and "<svg" in cost_svg else ""
        )
        body.append(
            '<div class="charts">'
            f"<figure>{accuracy_chart(suite, rows, gate.get('min_pass_rate'))}"
            "<figcaption>Pass rate, 95% Wilson interval"
            f"{'; dashed line: the gate' if gate.get('min_pass_rate') is not None else ''}</figcaption></figure>"
            f"<figure>{cost_svg}<figcaption>Accuracy against cost; red: the Pareto front</figcaption>{missing}</figure>"
            f"<figure>{latency_chart(suite, order, {m: latencies[(suite, m)] for m in order})}"
            "<figcaption>Latency per request (cached answers excluded)</figcaption></figure></div>"
            f"{classes.html_section(typed_records, suite)}</section>"
        )
    body.append(serving.html_section(document))  # the bench and volume sections, when present
    misses = [r for r in records if r["outcome"] == "miss"]
    errors = [r for r in records if r["outcome"] == "error"]
    body.append(
        "<h2>Misses</h2>"
        + _records_table(
            "misses",
            misses,
            [
                ("suite", "suite"),
                ("model", "model"),
                ("example", "example_id"),
                ("rep", "repetition"),
                ("expected", "expected"),
                ("got", "output"),
                ("why", "explanation"),
            ],
            "misses",
        )
    )
    body.append(
        "<h2>Errors</h2>"
        + _records_table(
            "errors",
            errors,
            [
                ("suite", "suite"),
                ("model", "model"),
                ("example", "example_id"),
                ("rep", "repetition"),
                ("error", "error"),
            ],
            "errors",
        )
    )
    internal = [r for r in records if r["outcome"] == "internal"]
    if internal:  # plugin bugs: kept apart from the model's errors
        body.append(
            "<h2>pytest-distill internal errors</h2>"
            + _records_table(
                "internal",
                internal,
                [
                    ("suite", "suite"),
                    ("model", "model"),
                    ("example", "example_id"),
                    ("rep", "repetition"),
                    ("traceback", "error"),
                ],
                "internal errors",
            )
        )
    if gates:
        body.append(
            "<h2>Gates</h2><ul>"
            + "".join(
                f'<li><span class="badge {"pass" if g["passed"] else "fail"}">{"PASS" if g["passed"] else "FAIL"}</span> '
                f"{_e(g['suite'])} × {_e(g['model'])}: {_e(g['reason'])}</li>"
                for g in gates
            )
            + "</ul>"
        )
    template = (HERE / "template.html").read_text(encoding="utf-8")
    script = (HERE / "report.js").read_text(encoding="utf-8")
    # Split on the markers rather than str.replace, so user text that happens to contain
    # a marker can't be substituted into.
    head, rest = template.split("__BODY__", 1)
    middle, tail = rest.split("__SCRIPT__", 1)
    head = head.replace("__TITLE__", _e(f"pytest-distill report · {', '.join(sorted(by_suite))}"))
    return head + "\n".join(body) + middle + script + tail
