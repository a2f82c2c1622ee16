"""The suite x model matrix and the routing table, as terminal lines, Markdown and HTML.

Every renderer reads the results.json form (Matrix.to_dict(), Routing.to_dict()), so the
terminal, summary.md and report.html show the same figures.
"""

from __future__ import annotations

import html
from typing import Any

from pytest_distill.report.fmt import money, percent

MARK = {"best": "*", "tie": "=", "loss": "", "none": ""}


def rate_text(cell: dict[str, Any]) -> str:
    """'91.0%', or '91.0±1.2%' over repetitions."""
    if cell["rate"] is None:
        return "-"
    if cell["std"] is not None and cell["repetitions"] > 1:
        return f"{100 * cell['rate']:.1f}±{100 * cell['std']:.1f}%"
    return percent(cell["rate"])


def cell_text(cell: dict[str, Any] | None) -> str:
    """'*91.0% $1.20': the mark, the rate, $ per million requests."""
    if cell is None:
        return "n/a"
    return f"{MARK[cell['status']]}{rate_text(cell)} {money(cell['per_million'])}"


def legend(matrix: dict[str, Any]) -> str:
    return (
        f"* best of the row; = not significantly different from the best (exact McNemar on shared examples, "
        f"alpha {matrix['alpha']:g}); then $ per million requests"
    )


def headline_text(matrix: dict[str, Any]) -> str:
    if matrix["headline"]:
        return str(matrix["headline"])
    return (
        "headline: none (no API-priced model under $1/MTok input, or no self-hosted model, scored a suite in this run)"
    )


def _cells(matrix: dict[str, Any]) -> dict[tuple[str, str], dict[str, Any]]:
    return {(c["suite"], c["model"]): c for c in matrix["cells"]}


def tally_text(tally: dict[str, Any]) -> str:
    return f"{tally['wins']}/{tally['ties']}/{tally['losses']}"


def matrix_rows(matrix: dict[str, Any]) -> list[list[str]]:
    """Header, one row per suite, then the wins/ties/losses row."""
    cells = _cells(matrix)
    rows = [["suite", *matrix["models"]]]
    rows += [[suite, *(cell_text(cells.get((suite, m))) for m in matrix["models"])] for suite in matrix["suites"]]
    tallies = {t["model"]: t for t in matrix["tallies"]}
    rows.append(["wins/ties/losses", *(tally_text(tallies[m]) for m in matrix["models"])])
    return rows


def terminal_matrix(matrix: dict[str, Any]) -> list[str]:
    rows = matrix_rows(matrix)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["matrix: pass rate and $ per million requests, suites x models"]
    for index, row in enumerate(rows):
        lines.append(
            "  ".join(c.ljust(widths[0]) if i == 0 else c.rjust(widths[i]) for i, c in enumerate(row)).rstrip()
        )
        if index == 0 or index == len(rows) - 2:
            lines.append("  ".join("-" * w for w in widths))
    lines.append(legend(matrix))
    lines.append(headline_text(matrix))
    return lines


def _share(routing: dict[str, Any]) -> str:
    return "traffic mix --distill-traffic-mix" if routing["mix_given"] else "equal traffic per suite"


def _delta(row: dict[str, Any]) -> str:
    return "-" if row["delta_pp"] is None else f"{row['delta_pp']:+.1f}pp"


def routing_rows(routing: dict[str, Any]) -> list[list[str]]:
    head = ["suite", "served by", "traffic", "pass rate", "vs best", "$/1M req"]
    return [head] + [
        [r["suite"], r["model"], f"{100 * r['share']:.0f}%", percent(r["rate"]), _delta(r), money(r["per_million"])]
        for r in routing["rows"]
    ]


def routing_summary(routing: dict[str, Any]) -> list[str]:
    lines = [f"blended: {money(routing['blended_per_million'])} per million requests ({_share(routing)})"]
    frontier = routing["frontier_model"]
    if frontier is not None:
        saving = routing["saving"]
        said = (
            "-"
            if saving is None
            else (f"saves {100 * saving:.1f}%" if saving >= 0 else f"costs {-100 * saving:.1f}% more")
        )
        lines.append(
            f"all traffic to the best frontier model ({frontier}): "
            f"{money(routing['frontier_per_million'])} per million requests; routing {said}"
        )
    lines += list(routing["notes"])
    return lines


def terminal_routing(routing: dict[str, Any]) -> list[str]:
    rows = routing_rows(routing)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = [f"routing: which model serves which task ({_share(routing)})"]
    for index, row in enumerate(rows):
        lines.append("  ".join(c.ljust(widths[i]) if i < 2 else c.rjust(widths[i]) for i, c in enumerate(row)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines + routing_summary(routing)


# --- Markdown -----------------------------------------------------------------


def _md(text: str) -> str:
    return text.replace("|", "\\|")


def _md_table(rows: list[list[str]], right_from: int) -> list[str]:
    head, *body = rows
    lines = [
        "| " + " | ".join(_md(c) for c in head) + " |",
        "|" + "|".join("---:" if i >= right_from else "---" for i in range(len(head))) + "|",
    ]
    return lines + ["| " + " | ".join(_md(c) for c in row) + " |" for row in body]


def markdown(matrix: dict[str, Any] | None, routing: dict[str, Any] | None) -> list[str]:
    lines: list[str] = []
    if matrix:
        rows = [[c.replace("*", "\\*") for c in row] for row in matrix_rows(matrix)]  # the mark is no emphasis
        cells = _cells(matrix)
        for row, suite in zip(rows[1:-1], matrix["suites"], strict=True):  # the best in bold
            for i, model in enumerate(matrix["models"], start=1):
                cell = cells.get((suite, model))
                if cell is not None and cell["status"] == "best":
                    row[i] = f"**{row[i]}**"
        rows[-1][0] = "**wins/ties/losses**"
        lines += [
            "",
            "**Matrix** (pass rate and $ per million requests)",
            "",
            *_md_table(rows, 1),
            "",
            legend(matrix),
            "",
            f"**{headline_text(matrix)}**",
        ]
    if routing:
        lines += ["", f"**Routing** ({_share(routing)})", "", *_md_table(routing_rows(routing), 2), ""]
        lines += [f"- {line}" for line in routing_summary(routing)]
    return lines


# --- HTML ---------------------------------------------------------------------


def _e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def rate_colour(rate: float | None) -> str:
    """Red (0%) through yellow to green (100%), light enough for dark text."""
    if rate is None:
        return "#eeeeee"
    hue = 120 * max(0.0, min(1.0, rate))
    return f"hsl({hue:.0f}, 70%, 80%)"


def html_matrix(matrix: dict[str, Any]) -> str:
    cells = _cells(matrix)
    head = "".join(f'<th class="num">{_e(m)}</th>' for m in matrix["models"])
    out = [f'<table class="matrix"><thead><tr><th>suite</th>{head}</tr></thead><tbody>']
    for suite in matrix["suites"]:
        out.append(f"<tr><td>{_e(suite)}</td>")
        for model in matrix["models"]:
            cell = cells.get((suite, model))
            if cell is None:
                out.append('<td class="num">n/a</td>')
                continue
            tip = f"{model} on {suite}: {cell['status']}" + (
                "" if cell["p_value"] is None else f", exact McNemar p={cell['p_value']:.3g} vs the best"
            )
            out.append(
                f'<td class="num cell {cell["status"]}" data-model="{_e(model)}" '
                f'style="background:{rate_colour(cell["rate"])}" title="{_e(tip)}">'
                f"{_e(cell_text(cell))}</td>"
            )
        out.append("</tr>")
    tallies = {t["model"]: t for t in matrix["tallies"]}
    out.append(
        '<tr class="tally"><th>wins/ties/losses</th>'
        + "".join(f'<th class="num">{tally_text(tallies[m])}</th>' for m in matrix["models"])
        + "</tr>"
    )
    out.append("</tbody></table>")
    out.append(f'<p class="note">{_e(legend(matrix))}</p><p class="headline">{_e(headline_text(matrix))}</p>')
    return "".join(out)


def html_routing(routing: dict[str, Any]) -> str:
    rows = routing_rows(routing)
    out = [
        '<table class="routing"><thead><tr>'
        + "".join(f'<th class="{"num" if i >= 2 else ""}">{_e(h)}</th>' for i, h in enumerate(rows[0]))
        + "</tr></thead><tbody>"
    ]
    out += [
        "<tr>" + "".join(f'<td class="{"num" if i >= 2 else ""}">{_e(c)}</td>' for i, c in enumerate(row)) + "</tr>"
        for row in rows[1:]
    ]
    out.append("</tbody></table><ul>" + "".join(f"<li>{_e(line)}</li>" for line in routing_summary(routing)) + "</ul>")
    return "".join(out)
