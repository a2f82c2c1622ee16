"""The judge inside a run (pytester + a fake OpenAI-compatible server): which judge is used,
verdicts and judge cost in the records and the summary, judge failures as errors."""

from __future__ import annotations

import ast
import json
import xml.etree.ElementTree as ET

import pytest

from helpers.chat_server import FakeChatServer
from helpers.suites import summary_row, write_suite

ROWS = [
    {"question": "Where was Guido van Rossum born?", "answer": "Haarlem"},
    {"question": "Where was Tolkien born?", "answer": "Bloemfontein"},
    {"question": "Which is older, Mozart or Beethoven?", "answer": "Mozart"},
]
JOB = {
    "task_description": "Answer with a short answer.",
    "llm_as_a_judge_instructions": "Good if it names the same entity as the reference.",
}


def _judge_reply(behaviour: str):
    if behaviour == "good":
        return json.dumps({"reason": "Names the same entity.", "verdict": "good"})
    if behaviour == "bad":
        return json.dumps({"reason": "A different entity.", "verdict": "bad"})
    if behaviour == "error":
        return 500, {"error": {"message": "judge overloaded"}}
    return "Hmm, hard to say."  # garbage


@pytest.fixture
def server():
    fake = FakeChatServer(ROWS)

    def respond(body):
        model = body["model"]
        if model.startswith("judge-"):
            return _judge_reply(model.partition("-")[2])
        return fake._by_spec(body)

    fake.responder = respond
    with fake:
        yield fake


@pytest.fixture
def project(pytester, server, monkeypatch):
    monkeypatch.setenv("FAKE_JUDGE_KEY", "sk-test")
    write_suite(
        pytester.path / "suites" / "qa",
        job=JOB,
        rows=ROWS,
        config="base:\n  task: question-answering\n",
        settings='scorer = "judge"\nalso = ["token_f1", "normalized_exact_match"]\n',
    )
    priced = (
        f'["judge-priced"]\nprovider = "openai"\nmodel = "judge-bad"\nbase_url = "{server.url}"\n'
        'api_key_env = "FAKE_JUDGE_KEY"\nmax_retries = 0\nconstraint_style = "none"\n'
        "price_input = 1.0\nprice_output = 4.0\n"
    )
    pytester.makefile(
        ".toml",
        models=server.models_toml(
            right="correct",
            wrong="wrong",
            **{
                "judge-good": "judge-good",
                "judge-bad": "judge-bad",
                "judge-garbage": "judge-garbage",
                "judge-error": "judge-error",
            },
        )
        + priced,
    )
    return pytester


def _records(pytester) -> list[dict]:
    records = []
    for case in ET.parse(pytester.path / "out.xml").findall(".//testcase"):
        props = {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        if "distill.outcome" in props:
            props["distill.extra"] = ast.literal_eval(props.get("distill.extra") or "{}")
            records.append(props)
    return records


def test_judge_option_grades_and_records_verdicts(project, server):
    result = project.runpytest("suites", "--model=wrong", "--judge=judge-bad", "--junitxml=out.xml")
    result.assert_outcomes(failed=3)
    result.stdout.fnmatch_lines(["*miss: judge judge-bad: bad - A different entity. (candidate: 'not-Haarlem')*"])
    records = _records(project)
    assert {r["distill.outcome"] for r in records} == {"miss"}
    judge = records[0]["distill.extra"]["judge"]
    assert judge["verdict"] == "bad" and judge["model"] == "judge-bad" and judge["by"] == "model"
    assert judge["input_tokens"] > 0 and judge["attempts"] == 1
    # the judge was asked at temperature 0 with the suite's instructions and the fenced candidate
    asked = [b for b in server.bodies if b["model"] == "judge-bad"]
    assert len(asked) == 3 and all(b["temperature"] == 0.0 for b in asked)
    assert "Good if it names the same entity" in asked[0]["messages"][0]["content"]
    assert "<<<BEGIN CANDIDATE" in asked[0]["messages"][1]["content"]


def test_also_scorers_are_recorded_but_do_not_gate(project):
    result = project.runpytest("suites", "--model=wrong", "--judge=judge-good", "--junitxml=out.xml")
    result.assert_outcomes(passed=3)  # the judge passes them; token F1 of "not-Haarlem" is low
    also = _records(project)[0]["distill.extra"]["also"]
    assert set(also) == {"token_f1", "normalized_exact_match"}
    assert also["normalized_exact_match"] == {"value": 0.0, "passed": False}
    result.stdout.fnmatch_lines(
        ["also (recorded, not gated) qa x wrong: token_f1 mean 0.*; normalized_exact_match mean 0.00 (0/3 pass)"]
    )


def test_identical_answers_skip_the_judge(project, server):
    result = project.runpytest("suites", "--model=right", "--judge=judge-bad")
    result.assert_outcomes(passed=3)
    assert not [b for b in server.bodies if b["model"] == "judge-bad"]
    result.stdout.fnmatch_lines(
        ["judge qa x right: 3 verdict(s) by judge-bad: 3 good, 0 bad (3 without a model call)*"]
    )


def test_judge_cost_is_reported_apart_from_the_model(project):
    result = project.runpytest("suites", "--model=wrong", "--judge=judge-priced", "--junitxml=out.xml")
    result.assert_outcomes(failed=3)
    records = _records(project)
    judge = records[0]["distill.extra"]["judge"]
    expected = (judge["input_tokens"] * 1.0 + judge["output_tokens"] * 4.0) / 1e6
    assert judge["cost_usd"] == pytest.approx(expected)
    assert all(r["distill.cost_usd"] == "None" for r in records)  # the model (self-hosted) has no token cost
    total = sum(r["distill.extra"]["judge"]["cost_usd"] for r in records)
    out = result.stdout.str()
    assert (
        "judge qa x wrong: 3 verdict(s) by judge-priced: 0 good, 3 bad (0 without a model call); 3 judge call(s)" in out
    )
    assert f"judge cost ${total:.2g}" in out and "not included in the model's $/req" in out


def test_suite_judge_is_the_default_and_the_option_overrides_it(project):
    (project.path / "suites" / "qa" / "distill.toml").write_text('scorer = "judge"\njudge = "judge-good"\n')
    project.runpytest("suites", "--model=wrong").assert_outcomes(passed=3)
    project.runpytest("suites", "--model=wrong", "--judge=judge-bad").assert_outcomes(failed=3)


@pytest.mark.parametrize(
    ("judge", "message"),
    [
        ("judge-garbage", "*error: judge judge-garbage gave no readable verdict in 3 attempts*Hmm, hard to say.*"),
        ("judge-error", "*error: judge judge-error failed: *500*"),
    ],
)
def test_a_failing_judge_is_an_error_never_a_pass(project, judge, message):
    result = project.runpytest("suites", "--model=wrong", f"--judge={judge}", "--junitxml=out.xml")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines([message])
    assert summary_row(result.stdout.str(), "qa", "wrong")[2:6] == ["3", "0", "0", "3"]  # n, pass, miss, err
    records = _records(project)
    assert {r["distill.outcome"] for r in records} == {"error"}
    assert all(
        r["distill.output"] == f"not-{row['answer']}" for r, row in zip(records, ROWS, strict=True)
    )  # the answer is kept


def test_an_unknown_judge_is_a_usage_error(project):
    result = project.runpytest("suites", "--model=wrong", "--judge=gpt-17")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-distill: unknown model 'gpt-17'*"])


def test_an_unknown_suite_judge_is_an_error_per_item(project):
    (project.path / "suites" / "qa" / "distill.toml").write_text('scorer = "judge"\njudge = "nobody"\n')
    result = project.runpytest("suites", "--model=wrong")
    result.assert_outcomes(errors=3)
    result.stdout.fnmatch_lines(["*error: unknown model 'nobody'*"])


def test_xdist_gives_the_same_records(project):
    serial = project.runpytest("suites", "--model=wrong", "--judge=judge-priced")
    parallel = project.runpytest("suites", "--model=wrong", "--judge=judge-priced", "-n", "2")
    line = [x for x in serial.outlines if x.startswith("judge qa x wrong")]
    assert line and line == [x for x in parallel.outlines if x.startswith("judge qa x wrong")]
    assert (
        summary_row(serial.stdout.str(), "qa", "wrong")[2:8] == summary_row(parallel.stdout.str(), "qa", "wrong")[2:8]
    )
