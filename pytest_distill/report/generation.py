"""Summary lines for generated-text suites: the judge's own cost, and the `also` scorers.

The judge's tokens and cost are kept apart from the evaluated model's (Record.extra["judge"]),
so the table's $/req stays the model's; these lines add what the grading cost.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from pytest_distill.core.records import Record
from pytest_distill.report.fmt import money


def _judgements(record: Record) -> list[dict[str, Any]]:
    found = []
    if isinstance(record.extra.get("judge"), dict):
        found.append(record.extra["judge"])
    for value in (record.extra.get("also") or {}).values():
        if isinstance(value, dict) and isinstance(value.get("judge"), dict):
            found.append(value["judge"])
    return found


def judge_line(suite: str, model: str, records: list[Record]) -> str | None:
    verdicts = [j for r in records for j in _judgements(r)]
    if not verdicts:
        return None
    by_model = [j for j in verdicts if j.get("by") == "model"]
    judges = ", ".join(sorted({str(j.get("model")) for j in verdicts}))
    good = sum(j.get("verdict") == "good" for j in verdicts)
    shortcut = len(verdicts) - len(by_model)
    calls = sum(int(j.get("attempts") or 0) for j in by_model)
    tokens_in = sum(int(j.get("input_tokens") or 0) for j in by_model)
    tokens_out = sum(int(j.get("output_tokens") or 0) for j in by_model)
    costs = [j.get("cost_usd") for j in by_model]
    if not by_model:
        cost = "$0"
    elif any(c is None for c in costs):
        cost = "- (no token price: self-hosted judge)"
    else:
        total = sum(float(c or 0.0) for c in costs)  # none is None here
        cost = f"{money(total)} ({money(total / len(verdicts))}/verdict)"
    return (
        f"judge {suite} x {model}: {len(verdicts)} verdict(s) by {judges}: {good} good, {len(verdicts) - good} bad"
        f" ({shortcut} without a model call); {calls} judge call(s), {tokens_in} tokens in / {tokens_out} out;"
        f" judge cost {cost}, not included in the model's $/req"
    )


def also_line(suite: str, model: str, records: list[Record]) -> str | None:
    values: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for record in records:
        for name, value in (record.extra.get("also") or {}).items():
            if isinstance(value, dict):
                values[name].append(value)
    if not values:
        return None
    parts = []
    for name, results in values.items():
        scored = [v for v in results if "value" in v]
        errors = len(results) - len(scored)
        if scored:
            mean = sum(float(v["value"]) for v in scored) / len(scored)
            passed = sum(bool(v.get("passed")) for v in scored)
            parts.append(
                f"{name} mean {mean:.2f} ({passed}/{len(scored)} pass)" + (f", {errors} error(s)" if errors else "")
            )
        else:
            parts.append(f"{name}: {errors} error(s)")
    return f"also (recorded, not gated) {suite} x {model}: " + "; ".join(parts)


# The offline default judge: it exercises the machinery, but a 135M model says "good" to
# nearly everything, so its pass rates must not be read as grades.
SMOKE_JUDGES = {"smollm2-135m"}
NAME_A_JUDGE = (
    "pass --judge MODEL, or set judge = \"claude-sonnet-4.6\" (the benchmark's judge) in the suite's "
    "distill.toml, for grades you can trust"
)


def judge_warning(records: list[Record]) -> dict[str, Any] | None:
    """When an offline/smoke judge decided any verdict: which, how many verdicts, and the line
    every artifact shows (terminal, summary.md, report.html, results.json, step summary)."""
    verdicts = [j for r in records for j in _judgements(r) if str(j.get("model")) in SMOKE_JUDGES]
    if not verdicts:
        return None
    judges = sorted({str(j.get("model")) for j in verdicts})
    graded = sum(j.get("by") == "model" for j in verdicts)
    suites = sorted({r.suite for r in records if any(str(j.get("model")) in SMOKE_JUDGES for j in _judgements(r))})
    message = (
        f"the judge {', '.join(judges)} is the offline default, a smoke test of the judging machinery that "
        f"calls almost any answer good: its {len(verdicts)} verdict(s) ({graded} graded by the model) on "
        f"{', '.join(suites)} are not grades; {NAME_A_JUDGE}"
    )
    return {
        "judges": judges,
        "suites": suites,
        "verdicts": len(verdicts),
        "graded_by_model": graded,
        "message": message,
    }


def generation_lines(records: list[Record]) -> list[str]:
    groups: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.suite, record.model)].append(record)
    lines = []
    for (suite, model), group in sorted(groups.items()):
        for line in (judge_line(suite, model, group), also_line(suite, model, group)):
            if line:
                lines.append(line)
    warning = judge_warning(records)
    if warning:
        lines.append(f"note: {warning['message']}")
    return lines
