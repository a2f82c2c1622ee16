"""The serving part of report.html and summary.md, from results.json's `bench` and `volume`
sections: the serving table, throughput and latency against concurrency, monthly cost
against traffic (log axes) with the break-even volumes.

Charts are inline SVG computed here, like html.py's.
"""

from __future__ import annotations

import html
import math
from typing import Any

from pytest_distill.report.fmt import gib, money, ms

PALETTE = ("#4878d0", "#ee854a", "#6acc64", "#d65f5f", "#956cb4", "#8c613c", "#dc7ec0", "#797979")


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def _f(x: float) -> str:
    return f"{x:.1f}"


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _mib(value: int | None) -> str:
    return "-" if value is None else f"{value}MiB"


def per_day(value: float) -> str:
    """10000 -> '10k', 1e6 -> '1M'."""
    for size, unit in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= size:
            return f"{value / size:g}{unit}"
    return f"{value:g}"


def serving_rows(bench: list[dict[str, Any]]) -> list[list[str]]:
    """One row per measurement: what prices the model, and the memory it took."""
    rows = []
    for m in bench:
        hourly = "-" if m.get("hourly_usd") is None else f"${m['hourly_usd']:.2f}/h {m.get('hardware') or 'GPU'}"
        rows.append(
            [
                m["model"],
                m["mode"],
                m.get("device", "unknown"),
                str(m["concurrency"]),
                _rate(m["requests_per_s"]),
                ms(m.get("latency_p50")),
                ms(m.get("latency_p95")),
                ms(m.get("latency_p99")),
                ms(m.get("ttft_p50")),
                gib(m.get("server_rss_bytes")),
                _mib(m.get("gpu_memory_mib")),
                hourly,
                money(m.get("cost_per_million")),
                m.get("knee_reason", ""),
            ]
        )
    return rows


SERVING_HEAD = [
    "model",
    "mode",
    "device",
    "c",
    "req/s",
    "p50",
    "p95",
    "p99",
    "TTFT p50",
    "server RSS",
    "GPU mem",
    "$/hour",
    "$/1M req",
    "why this concurrency",
]


VARIANT_HEAD = [
    "variant",
    "vs",
    "suite",
    "RPS",
    "memory",
    "Δ accuracy",
    "p (McNemar)",
    "$/1M req (vs)",
    "$/1M req (variant)",
]


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value * 100:+.1f}%"


# --- charts -----------------------------------------------------------------------


def _log_ticks(low: float, high: float) -> list[float]:
    lo, hi = math.floor(math.log10(low)), math.ceil(math.log10(high))
    return [10.0**k for k in range(lo, max(hi, lo + 1) + 1)]


def curve_chart(bench: list[dict[str, Any]], metric: str) -> str:
    """Throughput (metric 'requests_per_s') or latency p95 ('latency_p95') against concurrency
    (log2 axis), one line per model; the knee ringed."""
    series = [(m, [s for s in m.get("curve") or [] if s.get(metric) is not None]) for m in bench]
    series = [(m, steps) for m, steps in series if steps]
    if not series:
        return '<p class="note">No load curve measured.</p>'
    left, plot_w, plot_h, top, right, bottom = 56, 330, 200, 14, 130, 40
    width, height = left + plot_w + right, top + plot_h + bottom
    scale = 1000.0 if metric == "latency_p95" else 1.0
    unit = "latency p95 (ms)" if metric == "latency_p95" else "requests/s"
    cmax = max(s["concurrency"] for _, steps in series for s in steps)
    hi_exp = max(1, math.ceil(math.log2(cmax)))
    ymax = max(s[metric] for _, steps in series for s in steps) * scale * 1.1 or 1.0
    step = 10 ** math.floor(math.log10(ymax / 5)) if ymax > 0 else 1
    step = next(m * step for m in (1, 2, 2.5, 5, 10) if m * step * 5 >= ymax)
    y_ticks = [k * step for k in range(math.ceil(ymax / step) + 1)]
    ytop = y_ticks[-1] or 1

    def xs(c: float) -> float:
        return left + plot_w * math.log2(c) / hi_exp

    def ys(v: float) -> float:
        return top + plot_h * (1 - v * scale / ytop)

    kind = "throughput" if metric == "requests_per_s" else "latency"
    parts = [
        f'<svg class="chart serving {kind}" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        f"<title>{_e(unit)} against concurrency; ringed: the knee</title>",
        '<g class="axis">',
    ]
    for k in range(hi_exp + 1):
        c = 2**k
        parts.append(
            f'<line class="grid" x1="{_f(xs(c))}" x2="{_f(xs(c))}" y1="{top}" y2="{top + plot_h}"/>'
            f'<text x="{_f(xs(c))}" y="{top + plot_h + 14}" text-anchor="middle">{c}</text>'
        )
    for t in y_ticks:
        y = top + plot_h * (1 - t / ytop)
        parts.append(
            f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_f(y)}" y2="{_f(y)}"/>'
            f'<text x="{left - 6}" y="{_f(y + 4)}" text-anchor="end">{t:g}</text>'
        )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">concurrency (requests in '
        f"flight, log scale); y: {_e(unit)}</text></g>"
    )
    for i, (m, steps) in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        points = " ".join(f"{_f(xs(s['concurrency']))},{_f(ys(s[metric]))}" for s in steps)
        parts.append(
            f'<g class="series" data-model="{_e(m["model"])}">'
            f'<polyline class="curve" fill="none" stroke="{color}" stroke-width="2" points="{points}"/>'
        )
        for s in steps:
            value = f"{s[metric] * scale:.0f} ms" if metric == "latency_p95" else f"{s[metric]:.2f} req/s"
            knee = s["concurrency"] == m["concurrency"]
            parts.append(
                f'<circle class="{"step knee" if knee else "step"}" cx="{_f(xs(s["concurrency"]))}" '
                f'cy="{_f(ys(s[metric]))}" r="{6 if knee else 3}" fill="{"none" if knee else color}" '
                f'stroke="{color}" stroke-width="2"><title>{_e(m["model"])}: c={s["concurrency"]}, '
                f"{_e(value)}{' (knee)' if knee else ''}</title></circle>"
            )
        last = steps[-1]
        parts.append(
            f'<text x="{_f(xs(last["concurrency"]) + 8)}" y="{_f(ys(last[metric]) + 4)}" '
            f'fill="{color}">{_e(m["model"])}</text></g>'
        )
    parts.append("</svg>")
    return "".join(parts)


def volume_chart(volume: dict[str, Any]) -> str:
    """Monthly cost against requests/day, both log scales: API models are straight lines,
    self-hosted ones steps (one more server each time the peak outgrows them)."""
    from pytest_distill.core.cost import VolumeModel  # the same formula as the table

    traffic = volume["traffic_per_day"]
    models = [m for m in volume["models"] if any(v is not None for v in m["monthly_usd"])]
    if not models or not traffic:
        return '<p class="note">No cost figures to chart.</p>'
    low, high = min(traffic), max(traffic)
    if high <= low:
        low, high = low / 10, high * 10
    samples = [low * (high / low) ** (k / 120) for k in range(121)]
    known = set(VolumeModel.__dataclass_fields__)
    lines = []
    for m in models:
        model = VolumeModel(**{k: v for k, v in m.items() if k in known})
        values = [(t, model.monthly(t, volume["peak_factor"])) for t in samples]
        lines.append((m, [(t, v) for t, v in values if v is not None and v > 0]))
    lines = [(m, pts) for m, pts in lines if pts]
    if not lines:
        return '<p class="note">No cost figures to chart.</p>'
    all_costs = [v for _, pts in lines for _, v in pts]
    y_ticks = _log_ticks(min(all_costs), max(all_costs))
    x_ticks = _log_ticks(low, high)
    left, plot_w, plot_h, top, right, bottom = 64, 360, 220, 14, 150, 40
    width, height = left + plot_w + right, top + plot_h + bottom
    lx0, lx1 = math.log10(x_ticks[0]), math.log10(x_ticks[-1])
    ly0, ly1 = math.log10(y_ticks[0]), math.log10(y_ticks[-1])

    def xs(t: float) -> float:
        return left + plot_w * (math.log10(t) - lx0) / (lx1 - lx0)

    def ys(v: float) -> float:
        return top + plot_h * (1 - (math.log10(v) - ly0) / (ly1 - ly0))

    parts = [
        f'<svg class="chart volume" role="img" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" xmlns="http://www.w3.org/2000/svg">',
        "<title>Monthly cost against requests per day (log scales); dots: break-even volumes</title>",
        '<g class="axis">',
    ]
    parts.extend(
        f'<line class="grid" x1="{_f(xs(t))}" x2="{_f(xs(t))}" y1="{top}" y2="{top + plot_h}"/>'
        f'<text x="{_f(xs(t))}" y="{top + plot_h + 14}" text-anchor="middle">{per_day(t)}</text>'
        for t in x_ticks
    )
    parts.extend(
        f'<line class="grid" x1="{left}" x2="{left + plot_w}" y1="{_f(ys(v))}" y2="{_f(ys(v))}"/>'
        f'<text x="{left - 6}" y="{_f(ys(v) + 4)}" text-anchor="end">{_e(money(v))}</text>'
        for v in y_ticks
    )
    parts.append(
        f'<text x="{left + plot_w / 2}" y="{height - 6}" text-anchor="middle">requests per day '
        f"(log scale); y: USD per month (log scale)</text></g>"
    )
    for i, (m, pts) in enumerate(lines):
        color = PALETTE[i % len(PALETTE)]
        path = " ".join(f"{_f(xs(t))},{_f(ys(v))}" for t, v in pts)
        kind = "self-hosted" if m["self_hosted"] else "API"
        parts.append(
            f'<g class="series" data-model="{_e(m["model"])}"><title>{_e(m["model"])} ({kind})</title>'
            f'<polyline class="cost-line" fill="none" stroke="{color}" stroke-width="2" points="{path}"/>'
            f'<text x="{_f(xs(pts[-1][0]) + 6)}" y="{_f(ys(pts[-1][1]) + 4)}" fill="{color}">'
            f"{_e(m['model'])}</text></g>"
        )
    api = {m["model"]: m for m, _ in lines if not m["self_hosted"]}
    for b in volume["break_even"]:
        first = b["first"]
        if first is None or not low <= first <= high or b["api"] not in api:
            continue
        cost = VolumeModel(**{k: v for k, v in api[b["api"]].items() if k in known}).monthly(first)
        if cost:
            parts.append(
                f'<circle class="break-even" cx="{_f(xs(first))}" cy="{_f(ys(cost))}" r="5">'
                f"<title>{_e(b['text'])}</title></circle>"
            )
    parts.append("</svg>")
    return "".join(parts)


# --- sections ---------------------------------------------------------------------


def _html_table(head: list[str], rows: list[list[str]], cls: str) -> str:
    out = [f'<table class="{cls}"><thead><tr>' + "".join(f"<th>{_e(h)}</th>" for h in head) + "</tr></thead><tbody>"]
    out += ["<tr>" + "".join(f"<td>{_e(c)}</td>" for c in row) + "</tr>" for row in rows]
    out.append("</tbody></table>")
    return "".join(out)


def volume_rows(volume: dict[str, Any]) -> tuple[list[str], list[list[str]]]:
    head = ["model", "kind", "basis"] + [f"{per_day(t)}/day" for t in volume["traffic_per_day"]]
    rows = []
    for m in volume["models"]:
        if m["self_hosted"]:
            basis = f"${m['hourly_usd']:.2f}/h {m['hardware']} x servers x 730 h; {m['rate_basis'] or 'no rate'}" + (
                "; rate measured on a CPU" if m.get("on_cpu") else ""
            )
            cells = [
                money(v) + (f" ({n}x)" if n else "") if v is not None else "-"
                for v, n in zip(m["monthly_usd"], m["servers"], strict=True)
            ]
        else:
            basis = "measured tokens/request x listed prices" if m["per_request"] is not None else "no price"
            cells = [money(v) for v in m["monthly_usd"]]
        rows.append([m["model"], "self-hosted" if m["self_hosted"] else "API", basis, *cells])
    return head, rows


def html_section(document: dict[str, Any]) -> str:
    """The report.html section: serving table and curves, cost at volume and break-even."""
    bench = document.get("bench") or []
    borrowed = not bench and bool(document.get("priced_with"))
    bench = bench or document.get("priced_with") or []
    volume = document.get("volume")
    out = []
    if bench:
        where = (
            " Measured in another run: " + ", ".join(sorted({_e(m.get("source")) for m in bench})) + "."
            if borrowed
            else ""
        )
        out.append(
            '<section class="serving" id="serving"><h2>Serving</h2>'
            '<p class="note">Sustained requests/s at the knee of the load curve (saturation search) or at '
            f"the fixed concurrency; memory is the peak of the managed server's own processes.{where}</p>"
            + _html_table(SERVING_HEAD, serving_rows(bench), "serving")
            + '<div class="charts">'
            f"<figure>{curve_chart(bench, 'requests_per_s')}<figcaption>Throughput against concurrency"
            "</figcaption></figure>"
            f"<figure>{curve_chart(bench, 'latency_p95')}<figcaption>Latency p95 against concurrency"
            "</figcaption></figure></div></section>"
        )
    variants = document.get("variants") or []
    if variants:
        rows = [
            [
                v["variant"],
                v["base"],
                v.get("suite") or "-",
                _pct(v.get("rps_change")),
                _pct(v.get("memory_change")) + (f" ({v['memory_kind']})" if v.get("memory_change") is not None else ""),
                "-" if v.get("accuracy_delta_pp") is None else f"{v['accuracy_delta_pp']:+.1f} pp",
                "-" if v.get("p_value") is None else f"{v['p_value']:.3g}",
                money(v.get("cost_per_million_base")),
                money(v.get("cost_per_million_variant")),
            ]
            for v in variants
        ]
        out.append(
            '<section class="variants" id="variants"><h2>Serving variants</h2>'
            + _html_table(VARIANT_HEAD, rows, "variants")
            + "<ul>"
            + "".join(f"<li>{_e(v['text'])}</li>" for v in variants)
            + "</ul></section>"
        )
    if volume and volume["models"]:
        head, rows = volume_rows(volume)
        flat = "flat traffic" if volume["peak_factor"] == 1 else f"peak {volume['peak_factor']:g}x the mean"
        out.append(
            '<section class="volume" id="volume"><h2>Cost at volume</h2>'
            f'<p class="note">USD per month (730 h), {flat}: API = measured cost per request x requests; '
            "self-hosted = servers needed for the peak rate x $/hour x 730.</p>"
            + _html_table(head, rows, "volume")
            + "<ul>"
            + "".join(f"<li>{_e(b['text'])}</li>" for b in volume["break_even"])
            + "</ul>"
            + f"<figure>{volume_chart(volume)}<figcaption>Monthly cost against traffic; dots: "
            "break-even</figcaption></figure></section>"
        )
    return "".join(out)


def _md_cell(value: Any) -> str:
    return ("" if value is None else str(value)).replace("|", "\\|").replace("\n", " ")


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "|".join("---" for _ in head) + "|"] + [
        "| " + " | ".join(_md_cell(c) for c in row) + " |" for row in rows
    ]


def markdown_lines(document: dict[str, Any]) -> list[str]:
    """summary.md's serving rows, cost at volume and break-even volumes."""
    lines: list[str] = []
    bench = document.get("bench") or []
    borrowed = not bench and bool(document.get("priced_with"))
    bench = bench or document.get("priced_with") or []
    if bench:
        where = (
            ", measured in another run: " + ", ".join(sorted({str(m.get("source")) for m in bench})) if borrowed else ""
        )
        lines += ["", f"**Serving** (sustained at the knee of the load curve, or at the fixed concurrency{where})", ""]
        lines += _md_table(SERVING_HEAD, serving_rows(bench))
    variants = document.get("variants") or []
    if variants:
        lines += ["", "**Serving variants** (same weights, other serving settings)", ""]
        lines += [f"- {v['text']}" for v in variants]
    volume = document.get("volume")
    if volume and volume["models"]:
        head, rows = volume_rows(volume)
        flat = "flat traffic" if volume["peak_factor"] == 1 else f"peak {volume['peak_factor']:g}x the mean"
        lines += ["", f"**Cost per month** (730 h, {flat})", ""]
        lines += _md_table(head, rows)
        lines += [f"- {b['text']}" for b in volume["break_even"]]
    return lines
