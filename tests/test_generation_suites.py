"""The four generated-answer suites: the real test sets load as shipped, and run end to end on the
embedded model with the embedded judge (a few examples each: two shared CPU cores)."""

from __future__ import annotations

import ast
import shutil
import xml.etree.ElementTree as ET

import pytest

from pytest_distill.scoring import SCORERS, scorer_name_for
from pytest_distill.suite import TaskType, load_suite

from helpers.llama import needs_llama
from helpers.paths import ROOT

SUITES = {
    # name: (rows, task type, scorer, also)
    "text2sql": (50, TaskType.QUESTION_ANSWERING, "sql_execution", []),
    "pii-redaction": (243, TaskType.QUESTION_ANSWERING, "judge", []),
    "docstring": (210, TaskType.QUESTION_ANSWERING, "judge", []),
    "hotpotqa": (248, TaskType.QA_OPEN_BOOK, "judge", ["token_f1", "normalized_exact_match"]),
}


@pytest.mark.parametrize("name", SUITES)
def test_suite_loads_with_its_scorers(name):
    rows, task, scorer, also = SUITES[name]
    suite = load_suite(ROOT / "suites" / name)
    assert len(suite.examples) == rows
    assert suite.task_type == task
    assert scorer_name_for(suite.examples[0]) == scorer and scorer in SCORERS
    assert suite.settings.also == also and all(a in SCORERS for a in also)
    if scorer == "judge":
        assert suite.judge_instructions and suite.judge_instructions.strip()
    for example in suite.examples:
        assert isinstance(example.question, str) and isinstance(example.answer, str) and example.answer.strip()
        if task == TaskType.QA_OPEN_BOOK:
            assert example.context and example.context.strip()


def test_pii_references_equal_the_input_outside_placeholders():
    # The README's promise: each reference is its question with each annotated span replaced by [ENTITY_TYPE].
    import re

    suite = load_suite(ROOT / "suites" / "pii-redaction")
    placeholder = re.compile(r"\[([A-Z_]+)\]")
    for example in suite.examples:
        parts = placeholder.split(example.answer)[::2]  # the text between placeholders
        pattern = "^" + "(.+?)".join(re.escape(p) for p in parts) + "$"
        assert re.match(pattern, example.question, re.DOTALL), (
            f"{example.location}: reference is not the input redacted"
        )


def _records(path) -> list[dict]:
    records = []
    for case in ET.parse(path).findall(".//testcase"):
        props = {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        if "distill.outcome" in props:
            props["distill.extra"] = ast.literal_eval(props.get("distill.extra") or "{}")
            records.append(props)
    return records


@needs_llama
@pytest.mark.slow
@pytest.mark.parametrize(("name", "limit"), [("text2sql", 3), ("hotpotqa", 2), ("pii-redaction", 2), ("docstring", 1)])
def test_suite_runs_on_the_embedded_model_with_a_local_judge(pytester, name, limit):
    shutil.copytree(ROOT / "suites" / name, pytester.path / "suites" / name)
    result = pytester.runpytest("suites", f"--limit={limit}", "--junitxml=out.xml", "-p", "no:cacheprovider")
    records = _records(pytester.path / "out.xml")
    assert len(records) == limit
    # Every item was scored: a pass or a miss, never an error (the judge's verdicts were readable).
    assert {r["distill.outcome"] for r in records} <= {"pass", "miss"}, result.stdout.str()
    _, _, scorer, also = SUITES[name]
    assert {r["distill.scorer"] for r in records} == {scorer}
    for record in records:
        extra = record["distill.extra"]
        if scorer == "judge":
            assert extra["judge"]["model"] == "smollm2-135m"  # the offline default judge
            assert extra["judge"]["verdict"] in ("good", "bad")
            assert record["distill.explanation"].startswith("judge smollm2-135m:")
        else:
            assert record["distill.explanation"].startswith(("same results", "not equivalent", "predicted query"))
        assert set(extra.get("also", {})) == set(also)
    if scorer == "judge":
        result.stdout.fnmatch_lines([f"judge {name} x smollm2-135m: {limit} verdict(s) by smollm2-135m*"])
        if any(r["distill.extra"]["judge"]["by"] == "model" for r in records):
            result.stdout.fnmatch_lines(["note: the judge smollm2-135m is the offline default, a smoke test*--judge*"])
