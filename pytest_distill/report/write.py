"""Writes a finished run's report files: the one place that calls every file renderer."""

from __future__ import annotations

import os
from pathlib import Path

from pytest_distill.core.result import RunResult
from pytest_distill.report import html, json_report, markdown
from pytest_distill.report.results_file import write_results, write_text_atomically


def write_reports(directory: Path, result: RunResult) -> list[Path]:
    """results.json, report.html and summary.md in `directory` (created if needed)."""
    document = json_report.document(result)
    directory.mkdir(parents=True, exist_ok=True)
    return [
        write_results(directory, document),
        write_text_atomically(directory / "report.html", html.render(document)),
        write_text_atomically(directory / "summary.md", markdown.render(document)),
    ]


def append_step_summary(result: RunResult) -> Path | None:
    """Append the Markdown summary to $GITHUB_STEP_SUMMARY when GitHub Actions sets it."""
    target = os.environ.get("GITHUB_STEP_SUMMARY")
    if not target:
        return None
    with open(target, "a", encoding="utf-8") as fh:
        fh.write(markdown.render(json_report.document(result)) + "\n")
    return Path(target)
