"""The terminal's compact list of suite misses: one line each, the rest counted.

A 3,080-row suite would otherwise print a failure section and a FAILED line per wrong
answer; the detail stays in JUnit and results.json (plugin/misses.py decides what is folded).
"""

from __future__ import annotations

from collections.abc import Sequence

from pytest_distill.core.records import Record
from pytest_distill.report.fmt import thousands

_WIDTH = 240  # characters of a miss's explanation shown


def miss_line(record: Record) -> str:
    """pytest's own short-summary line for the item: `FAILED <nodeid> - miss: expected 'a', got 'b'`."""
    explanation = " ".join(record.explanation.split()) or f"expected {record.expected!r}, got {record.output!r}"
    if len(explanation) > _WIDTH:
        explanation = explanation[: _WIDTH - 1] + "…"
    return f"FAILED {record.nodeid} - miss: {explanation}"


def miss_lines(records: Sequence[Record], shown: int, where: str) -> list[str]:
    """The first `shown` misses (in suite, model, row order: serial and -n N alike), then a count of the rest."""
    ordered = sorted(records, key=lambda r: (r.suite, r.model, r.example_id, r.repetition, r.nodeid))
    lines = [miss_line(r) for r in ordered[:shown]]
    rest = len(ordered) - len(lines)
    if rest:
        more = "more" if lines else f"miss{'es' if rest > 1 else ''} not listed"
        lines.append(f"… and {thousands(rest)} {more}: see {where} or --distill-show-misses=all")
    return lines
