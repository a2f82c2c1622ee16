"""Text lines for the terminal (and Markdown) about comparisons and the baseline."""

from __future__ import annotations

from pytest_distill.core.baseline import BaselineDelta
from pytest_distill.core.compare import Ranked, SuiteComparison
from pytest_distill.report.fmt import percent


def cost_ratio_text(ratio: float | None) -> str:
    if ratio is None:
        return "cost of the best unknown"
    if ratio == 0:
        return "free"
    if ratio <= 0.5:
        return f"1/{1 / ratio:,.0f} of the cost"
    if ratio < 2:
        return f"{100 * ratio:.0f}% of the cost"
    return f"{ratio:,.1f}x the cost"


def route_text(comparison: SuiteComparison) -> str:
    r = comparison.route
    if r is None:
        return (
            f"{comparison.suite}: no routing advice (no cost for the models within "
            f"{comparison.tolerance_pp:g} pp of the best)"
        )
    if r.is_best:
        tied = [x.model for x in comparison.ranking if x.model != r.model and x.rate == comparison.ranking[0].rate]
        if tied:  # a cheaper measured cost among them does not decide: it is a timing (core/compare.py)
            return (
                f"{comparison.suite}: route to {r.model} (the same pass rate as {', '.join(tied)}: "
                "equal rates go by listed price or GPU $/hour, then name, not by a measured cost)"
            )
        return (
            f"{comparison.suite}: route to {r.model} (the most accurate is also the cheapest "
            f"within {comparison.tolerance_pp:g} pp)"
        )
    return f"{comparison.suite}: route to {r.model} ({r.delta_pp:+.1f} pp, {cost_ratio_text(r.cost_ratio)})"


def significance_text(entry: Ranked, alpha: float) -> str:
    if entry.p_value is None:
        return "best"
    verdict = "significant" if entry.significant else "not significant"
    return (
        f"p={entry.p_value:.3g} {verdict} (paired on {entry.paired}: {entry.best_only} vs {entry.this_only} discordant)"
    )


def format_comparison(comparison: SuiteComparison) -> list[str]:
    """Lines for the terminal: the ranking, then the routing advice."""
    lines = [
        (
            f"{comparison.suite}: ranking, each vs the best by exact McNemar on shared examples "
            f"(alpha {comparison.alpha:g})"
        )
    ]
    width = max(len(r.model) for r in comparison.ranking)
    for r in comparison.ranking:
        delta = "" if r.delta_pp is None or r.p_value is None else f"{r.delta_pp:+.1f} pp"
        lines.append(
            f"  {r.rank}. {r.model.ljust(width)}  {percent(r.rate):>6}  {delta:>9}  "
            f"{significance_text(r, comparison.alpha)}".rstrip()
        )
    lines.append(route_text(comparison))
    return lines


def format_delta(delta: BaselineDelta) -> str:
    change = "-" if delta.delta_pp is None else f"{delta.delta_pp:+.1f} pp"
    line = (
        f"baseline: {delta.suite} x {delta.model}: {percent(delta.baseline_rate)} -> {percent(delta.rate)} "
        f"({change} on {delta.shared} shared examples"
    )
    line += f", p={delta.p_value:.3g})" if delta.p_value is not None else ")"
    if delta.newly_failing:
        shown = ", ".join(delta.newly_failing[:10]) + (", ..." if len(delta.newly_failing) > 10 else "")
        line += f"; {len(delta.newly_failing)} newly failing: {shown}"
    return line
