"""--distill-show-misses: a suite item's miss is folded to one line in the terminal.

The report itself is untouched (outcome failed, exit status, JUnit's full message,
results.json): only while pytest prints its FAILURES section and short summary are the
folded reports taken out of the terminal reporter's "failed" list, and put back before
the final counts line. Errors are never folded.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import pytest

from pytest_distill.core.records import MISS, Record
from pytest_distill.plugin.collect import ExampleItem
from pytest_distill.plugin.evaluate import Miss
from pytest_distill.plugin.state import RunState
from pytest_distill.report.misses import miss_lines

MISS_ATTRIBUTE = "distill_miss"  # set on a suite item's call report when the model answered wrongly


def mark(item: pytest.Item, report: pytest.TestReport, call: pytest.CallInfo[Any]) -> None:
    """pytest_runtest_makereport: flag a suite item's wrong answer; the flag travels with the report under xdist."""
    if (
        isinstance(item, ExampleItem)
        and call.when == "call"
        and report.failed
        and call.excinfo is not None
        and call.excinfo.errisinstance(Miss)
    ):
        setattr(report, MISS_ATTRIBUTE, True)


def _record(report: pytest.TestReport) -> Record | None:
    return next((r for r in Record.all_from_properties(report.user_properties) if r.outcome == MISS), None)


@contextlib.contextmanager
def folded(state: RunState, reporter: Any) -> Iterator[None]:
    """Around the terminal summary: the folded misses out of reporter.stats["failed"], and their
    records kept for terminal_lines(); everything put back afterwards."""
    failed = reporter.stats.get("failed")
    if state.options.show_misses is None or not failed:
        yield
        return
    kept, records = [], []
    for report in failed:
        record = _record(report) if getattr(report, MISS_ATTRIBUTE, False) else None
        if record is None:
            kept.append(report)
        else:
            records.append(record)
    state.gathered.folded_misses = records
    reporter.stats["failed"] = kept
    try:
        yield
    finally:
        reporter.stats["failed"] = failed


def terminal_lines(state: RunState) -> list[str]:
    """The folded misses, one line each up to --distill-show-misses, then how many more."""
    if not state.gathered.folded_misses or state.options.show_misses is None:
        return []
    report_dir = state.options.report_dir
    where = f"{report_dir / 'results.json'}" if report_dir is not None else "JUnit (--junitxml), --distill-report"
    return miss_lines(state.gathered.folded_misses, state.options.show_misses, where)
