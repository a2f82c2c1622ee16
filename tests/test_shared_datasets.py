"""The loader on real public folders nobody here wrote (../shared/datasets)."""

from __future__ import annotations

import csv

import pytest

from pytest_distill.suite import TaskType, load_suite

from helpers.paths import SHARED_DATASETS

pytestmark = pytest.mark.skipif(not SHARED_DATASETS.is_dir(), reason=f"{SHARED_DATASETS} is absent")


def _data_rows(path) -> int:
    if path.suffix == ".csv":
        with path.open(newline="", encoding="utf-8") as fh:
            return sum(1 for row in csv.DictReader(fh) if any(v.strip() for v in row.values()))
    return sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())


@pytest.mark.parametrize(
    ("name", "task_type"),
    [
        ("banking-routing", TaskType.CLASSIFICATION),  # no config: inferred from classes_description
        ("smart-home", TaskType.MULTI_TURN_TOOL_CALLING),
        ("text2sql", TaskType.QUESTION_ANSWERING),
    ],
)
def test_collects_every_row_with_the_right_task_type(name, task_type):
    folder = SHARED_DATASETS / name
    suite = load_suite(folder)
    assert suite.task_type == task_type
    assert len(suite.examples) == _data_rows(suite.test_file)
    assert len({e.id for e in suite.examples}) == len(suite.examples)


def test_banking_routing_answers_are_classes():
    suite = load_suite(SHARED_DATASETS / "banking-routing")
    assert suite.task_type_source.startswith("inferred")
    assert {e.answer for e in suite.examples} <= set(suite.classes)


def test_smart_home_questions_are_conversations_and_answers_calls():
    suite = load_suite(SHARED_DATASETS / "smart-home")
    for example in suite.examples:
        assert isinstance(example.question, list) and example.question[-1]["role"] == "user"
        calls = example.answer if isinstance(example.answer, list) else [example.answer]
        assert all(suite.tool(c["name"]) is not None for c in calls)
