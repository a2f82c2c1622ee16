"""When the offline/smoke judge (the embedded default) decided any verdict, every artifact
says so: terminal, summary.md, report.html, results.json, the GitHub step summary."""

from __future__ import annotations

import json

import pytest

from helpers.chat_server import SERIAL, XDIST, FakeChatServer
from helpers.suites import write_suite

ROWS = [
    {"question": "Where was Guido van Rossum born?", "answer": "Haarlem"},
    {"question": "Where was Tolkien born?", "answer": "Bloemfontein"},
]
JOB = {
    "task_description": "Answer with a short answer.",
    "llm_as_a_judge_instructions": "Good if it names the same entity as the reference.",
}
WARNING = "is the offline default, a smoke test of the judging machinery"


@pytest.fixture
def server():
    fake = FakeChatServer(ROWS)

    def respond(body):
        if body["model"] == "judge":  # the stand-in for the embedded judge: always "good"
            return json.dumps({"reason": "Looks fine.", "verdict": "good"})
        return fake._by_spec(body)

    fake.responder = respond
    with fake:
        yield fake


def _project(pytester, server: FakeChatServer) -> None:
    write_suite(
        pytester.path / "suites" / "qa",
        job=JOB,
        rows=ROWS,
        config="base:\n  task: question-answering\n",
        settings='scorer = "judge"\n',
    )
    # The built-in smoke judge's name, answered by the fake server (the real one is the 135M model).
    smoke = server.models_toml(**{"smollm2-135m": "judge", "real-judge": "judge"})
    pytester.makefile(".toml", models=server.models_toml(wrong="wrong") + smoke)


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_every_artifact_says_the_smoke_judge_graded(pytester, server, monkeypatch, args):
    _project(pytester, server)
    step_summary = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = pytester.runpytest("suites", "--model=wrong", "--distill-report=out", *args)
    result.stdout.fnmatch_lines(
        [
            f"note: the judge smollm2-135m {WARNING}*2 verdict(s) (2 graded by the model) "
            'on qa are not grades*judge = "claude-sonnet-4.6"*'
        ]
    )
    out = pytester.path / "out"
    doc = json.loads((out / "results.json").read_text())
    warning = doc["judge_warning"]
    assert (warning["judges"], warning["suites"], warning["verdicts"], warning["graded_by_model"]) == (
        ["smollm2-135m"],
        ["qa"],
        2,
        2,
    )
    assert WARNING in (out / "summary.md").read_text()
    assert WARNING in step_summary.read_text()
    html = (out / "report.html").read_text()
    assert 'class="judge-warning"' in html and WARNING in html


def test_a_named_judge_leaves_no_warning(pytester, server, monkeypatch):
    _project(pytester, server)
    step_summary = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step_summary))
    result = pytester.runpytest("suites", "--model=wrong", "--judge=real-judge", "--distill-report=out")
    assert WARNING not in result.stdout.str()
    out = pytester.path / "out"
    assert json.loads((out / "results.json").read_text())["judge_warning"] is None
    assert WARNING not in (out / "summary.md").read_text()
    assert WARNING not in step_summary.read_text()
    assert "judge-warning" not in (out / "report.html").read_text().split("<style>")[-1].split("</style>")[-1]
