"""The Python API for hand-written tests: assert_exact_match, assert_judged, the
distill_model factory, distill_model_name and readable plain asserts, through a run against
a fake OpenAI-compatible server (pytester, serial and -n 2)."""

from __future__ import annotations

import ast
import contextvars
import json
import xml.etree.ElementTree as ET

import pytest

from pytest_distill import Completion, Score, ToolCall, assert_exact_match, assert_judged
from pytest_distill.plugin.assertrepr import compare

from helpers.chat_server import SERIAL, XDIST, FakeChatServer
from helpers.suites import summary_row, write_suite

LABELS = ["card_arrival", "card_delivery_estimate", "lost_or_stolen_card"]


# --- assert_exact_match, pure -----------------------------------------------------------


def test_exact_match_passes_after_normalisation_and_returns_the_score():
    score = assert_exact_match(Completion(text=' Label: "Card_Arrival."\n'), "card_arrival")
    assert isinstance(score, Score) and score.passed and score.value == 1.0
    assert assert_exact_match('{"label": "card_arrival"}', "card_arrival", labels=LABELS).got == "card_arrival"


def test_exact_match_miss_names_the_normalised_values():
    with pytest.raises(AssertionError) as failure:
        assert_exact_match(" Card_Delivery_Estimate.", "card_arrival", labels=LABELS)
    assert str(failure.value) == (
        "expected 'card_arrival', got 'card_delivery_estimate' (normalised from ' Card_Delivery_Estimate.')"
    )


def test_exact_match_with_labels_refuses_a_reply_outside_them():
    with pytest.raises(
        AssertionError, match=r"got 'card arrival' \(normalised from 'Card arrival'\), which is none of the 3 labels"
    ):
        assert_exact_match("Card arrival", "card arrival", labels=LABELS)


def test_exact_match_without_normalisation_compares_the_strings():
    assert_exact_match("card_arrival", "card_arrival", normalize=False)
    with pytest.raises(AssertionError, match=r"^expected 'card_arrival', got 'Card_arrival'$"):
        assert_exact_match("Card_arrival", "card_arrival", normalize=False)


def test_judged_needs_a_running_test():
    # a fresh context: no running item (as in a thread the test started, or outside pytest)
    with pytest.raises(RuntimeError, match="assert_judged needs a running test"):
        contextvars.Context().run(assert_judged, "Haarlem", reference="Haarlem")


# --- readable plain asserts -------------------------------------------------------------


def test_assertrepr_explains_a_label_and_a_tool_call():
    lines = compare("==", Completion(text=" Card_Delivery_Estimate."), "card_arrival")
    assert "expected 'card_arrival', got 'card_delivery_estimate' (normalised from ' Card_Delivery_Estimate.')" in lines
    lines = compare("==", ToolCall("toggle", {"room": "hall"}), {"name": "toggle", "parameters": {"room": "porch"}})
    assert lines == ["tool calls not equivalent", "parameters.room: expected 'porch', got 'hall'"]
    assert compare("==", "a", "b") is None and compare("!=", Completion(text="a"), "a") is None


# --- inside a run -----------------------------------------------------------------------

ROWS = [{"question": "Where is my new card?", "answer": "card_arrival"}]

TEST_MODULE = """
from pytest_distill import assert_exact_match, assert_judged

LABELS = ["card_arrival", "card_delivery_estimate", "lost_or_stolen_card"]

def test_label_right(distill_model):
    assert_exact_match(distill_model("priced").respond("Where is my new card?"), "card_arrival", labels=LABELS)

def test_label_wrong(distill_model):
    reply = distill_model("labeler").respond("Where is my new card?", max_tokens=8)
    assert_exact_match(reply, "card_arrival", labels=LABELS)

def test_model_fails(distill_model):
    distill_model("broken").respond("Where is my new card?")

def test_judged_good():
    assert_judged("Born in Haarlem.", question="Where was Guido born?", reference="Haarlem", judge="judge-good")

def test_judged_bad():
    assert_judged("Born in Amsterdam.", question="Where was Guido born?", reference="Haarlem", judge="judge-bad")

def test_judge_fails():
    assert_judged("Born in Haarlem.", question="Where was Guido born?", reference="Haarlem", judge="judge-error")

def test_judge_unreadable():
    assert_judged("Born in Haarlem.", reference="Haarlem", rubric="Good if it names Haarlem.", judge="judge-garbage")

def test_two_models(distill_model):
    for name in ("priced", "labeler"):
        distill_model(name).respond("Where is my new card?")

def test_each_model(distill_model, distill_model_name):
    assert distill_model(distill_model_name).respond("Where is my new card?").text

def test_plain_assert(distill_model):
    assert distill_model("labeler").respond("Where is my new card?") == "card_arrival"
"""


def _judge(behaviour: str):
    if behaviour == "good":
        return json.dumps({"reason": "Names the same city.", "verdict": "good"})
    if behaviour == "bad":
        return json.dumps({"reason": "A different city.", "verdict": "bad"})
    if behaviour == "error":
        return 500, {"error": {"message": "judge overloaded"}}
    return "Hmm, hard to say."


def _respond(body):
    model = body["model"]
    if model.startswith("judge-"):
        return _judge(model.partition("-")[2])
    if model == "broken":
        return 500, {"error": {"message": "fake server error"}}
    return "card_arrival" if model == "right" else " Card_Delivery_Estimate."


@pytest.fixture
def project(pytester, monkeypatch):
    monkeypatch.setenv("FAKE_KEY", "sk-test")
    pytester.makepyfile(test_handwritten=TEST_MODULE)
    with FakeChatServer(responder=_respond) as server:
        priced = (
            f'["priced"]\nprovider = "openai"\nmodel = "right"\nbase_url = "{server.url}"\n'
            'api_key_env = "FAKE_KEY"\nmax_retries = 0\nconstraint_style = "none"\n'
            "price_input = 1.0\nprice_output = 4.0\n"
        )
        pytester.makefile(
            ".toml",
            models=server.models_toml(
                labeler="labeler",
                broken="broken",
                **{f"judge-{b}": f"judge-{b}" for b in ("good", "bad", "error", "garbage")},
            )
            + priced,
        )
        pytester.server = server
        yield pytester


def _cases(pytester) -> dict[str, list[tuple[str, str]]]:
    return {
        case.get("name"): [(p.get("name"), p.get("value")) for p in case.findall("./properties/property")]
        for case in ET.parse(pytester.path / "out.xml").findall(".//testcase")
    }


@pytest.mark.parametrize("mode", [SERIAL, XDIST])
def test_assertions_and_the_model_factory_in_a_run(project, mode):
    result = project.runpytest(
        "test_handwritten.py",
        "--model=priced",
        "--model=labeler",
        "--junitxml=out.xml",
        "--distill-report=report",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
        *mode,
    )
    out = result.stdout.str()
    # pass: label_right, judged_good, two_models, each_model x 2; miss: label_wrong, judged_bad,
    # plain_assert; error (never a miss): model_fails, judge_fails, judge_unreadable
    result.assert_outcomes(passed=5, failed=3, errors=3)
    assert "INTERNALERROR" not in out and "Traceback" not in out
    for line in (
        "expected 'card_arrival', got 'card_delivery_estimate' (normalised from ' Card_Delivery_Estimate.')",
        "judge judge-bad: bad - A different city. (candidate: 'Born in Amsterdam.')",
        "error: judge judge-error failed: judge-error: HTTP 500: judge overloaded",
        "error: judge judge-garbage gave no readable verdict in 3 attempts",
        "error: broken: HTTP 500: fake server error",
    ):
        assert line in out
    result.stdout.fnmatch_lines(["*the reply's text differs*", "*normalised from ' Card_Delivery_Estimate.'*"])
    assert "ERROR test_handwritten.py::test_judge_fails" in out and "FAILED test_handwritten.py::test_judged_bad" in out
    # the end table: one row per model under the module's name, with latency and tokens
    priced = summary_row(out, "test_handwritten", "priced")
    labeler = summary_row(out, "test_handwritten", "labeler")
    assert priced[2:6] == ["3", "3", "0", "0"]  # label_right, two_models, each_model[priced]
    assert labeler[2:6] == ["4", "2", "2", "0"]  # + label_wrong, plain_assert (misses)
    assert summary_row(out, "test_handwritten", "broken")[2:6] == ["1", "0", "0", "1"]  # an error, not a miss
    assert priced[8].endswith("ms") and int(priced[11]) > 0 and int(priced[12]) > 0
    # JUnit: the records' latency, tokens and cost; the judge's verdict, reason and cost
    cases = _cases(project)
    two = [dict(group) for group in _split(cases["test_two_models"])]
    assert [r["distill.model"] for r in two] == ["priced", "labeler"]
    assert float(two[0]["distill.cost_usd"]) > 0 and float(two[0]["distill.latency_s"]) > 0
    assert int(two[0]["distill.input_tokens"]) > 0 and two[1]["distill.cost_usd"] == "None"  # self-hosted
    bad = dict(cases["test_judged_bad"])
    assert bad["distill.judge.verdict"] == "bad" and bad["distill.judge.reason"] == "A different city."
    assert bad["distill.judge.model"] == "judge-bad"
    error = dict(cases["test_model_fails"])
    assert error["distill.outcome"] == "error" and "HTTP 500" in error["distill.error"]
    # results.json: the same records
    document = json.loads((project.path / "report" / "results.json").read_text())
    mine = [r for r in document["records"] if r["suite"] == "test_handwritten"]
    assert len(mine) == 8 and {r["outcome"] for r in mine} == {"pass", "miss", "error"}
    assert all(r["cost_usd"] > 0 for r in mine if r["model"] == "priced")
    assert all(r["cost_usd"] is None for r in mine if r["model"] != "priced")  # self-hosted: priced per GPU hour


def _split(properties: list[tuple[str, str]]) -> list[list[tuple[str, str]]]:
    groups: list[list[tuple[str, str]]] = []
    for name, value in properties:
        if name == "distill.suite":
            groups.append([])
        if groups:
            groups[-1].append((name, value))
    return groups


def test_the_same_numbers_serial_and_xdist(project):
    tables = []
    for mode in ([], ["-n", "2"]):
        result = project.runpytest(
            "test_handwritten.py", "--model=labeler", "-p", "no:cacheprovider", "-p", "no:randomly", *mode
        )
        row = summary_row(result.stdout.str(), "test_handwritten", "labeler")
        tables.append((row[2:8], row[11:13]))  # n, pass, miss, err, rate, CI; tokens in/out
    assert tables[0] == tables[1]


SUITE_TEST = """
from pytest_distill import assert_judged, examples

@examples("suites/qa")
def test_qa(distill_model, distill_example):
    assert_judged(distill_model.respond(distill_example))
"""


@pytest.mark.parametrize(
    ("judge", "outcome"), [("judge-good", "passed"), ("judge-bad", "failed"), ("judge-error", "errors")]
)
def test_judged_inside_examples_takes_the_example_and_the_run_judge(project, judge, outcome):
    write_suite(
        project.path / "suites" / "qa",
        job={"task_description": "Answer briefly.", "llm_as_a_judge_instructions": "Good if same city."},
        rows=[{"question": "Where was Guido born?", "answer": "Haarlem"}],
        config="base:\n  task: question-answering\n",
    )
    project.makepyfile(test_qa=SUITE_TEST)
    result = project.runpytest(
        "test_qa.py", "--model=labeler", f"--judge={judge}", "--junitxml=out.xml", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(**{outcome: 1})
    asked = [b for b in project.server.bodies if b["model"] == judge]
    assert "Good if same city." in asked[0]["messages"][0]["content"]  # the suite's rubric
    assert "Where was Guido born?" in asked[0]["messages"][1]["content"]  # the example's question
    assert "<<<BEGIN REFERENCE" in asked[0]["messages"][1]["content"]
    record = dict(next(iter(_cases(project).values())))
    assert record["distill.outcome"] == {"passed": "pass", "failed": "miss", "errors": "error"}[outcome]
    if outcome != "errors":
        assert ast.literal_eval(record["distill.extra"])["judge"]["model"] == judge
