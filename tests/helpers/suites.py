"""Write small suite folders for tests."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

TOPICS = {
    "sports": "Games, teams, athletes and matches.",
    "weather": "Rain, sun, temperature and forecasts.",
    "food": "Cooking, recipes, restaurants and meals.",
    "music": "Songs, bands, instruments and concerts.",
}

TOPIC_ROWS = [
    ("The striker scored twice in the final match of the season.", "sports"),
    ("Heavy rain and strong winds are expected tomorrow morning.", "weather"),
    ("Whisk the eggs with sugar, then fold in the flour and bake.", "food"),
    ("The band played their new song on guitar at the concert.", "music"),
    ("Which team won the basketball championship last year?", "sports"),
    ("It will be sunny and warm all weekend, around 25 degrees.", "weather"),
]


def write_suite(
    folder: Path,
    *,
    job: dict[str, Any] | None = None,
    rows: list[dict[str, Any]] | None = None,
    fmt: str = "jsonl",
    config: str | None = "base:\n  task: classification\n",
    settings: str | None = None,
    raw_test: bytes | str | None = None,
) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    job = (
        job
        if job is not None
        else {"task_description": "Classify the topic of the text.", "classes_description": TOPICS}
    )
    (folder / "job_description.json").write_text(json.dumps(job, indent=2))
    if config is not None:
        (folder / "config.yaml").write_text(config)
    if settings is not None:
        (folder / "distill.toml").write_text(settings)
    target = folder / f"test.{fmt}"
    if raw_test is not None:
        if isinstance(raw_test, bytes):
            target.write_bytes(raw_test)
        else:
            target.write_text(raw_test)
        return folder
    rows = rows if rows is not None else [{"question": q, "answer": a} for q, a in TOPIC_ROWS]
    if fmt == "jsonl":
        target.write_text("".join(json.dumps(r) + "\n" for r in rows))
    else:
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
        target.write_text(out.getvalue())
    return folder


def summary_row(output: str, suite: str, model: str) -> list[str]:
    """The cells of the end-of-run table's row for suite x model."""
    for line in output.splitlines():
        cells = line.split()
        if len(cells) > 2 and cells[0] == suite and cells[1] == model:
            return cells
    raise AssertionError(f"no summary row for {suite} x {model} in:\n{output}")
