"""Tool-calling data: bad references are collection errors with file and line; the shipped
suites and the real smart-home folder (../shared/datasets) load and score consistently;
multi-turn histories become conversations each provider accepts."""

from __future__ import annotations

import json

import pytest

from pytest_distill.core.errors import SuiteError
from pytest_distill.models.base import Completion, ToolCall
from pytest_distill.models.chat import SYNTHETIC_TOOL_RESULT, render_history_for_text_model, with_tool_results
from pytest_distill.scoring.toolcalls import tool_call_equivalence, validation_errors
from pytest_distill.suite import TaskType, build_request, load_suite

from helpers.paths import ROOT, SHARED_DATASETS
from helpers.suites import write_suite

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "toggle_lights",
            "parameters": {
                "type": "object",
                "properties": {"room": {"type": "string"}, "state": {"type": "string", "enum": ["on", "off"]}},
                "required": ["room", "state"],
            },
        },
    }
]
JOB = {"task_description": "Call the function.", "tools": TOOLS}
SINGLE = "base:\n  task: tool-calling-closed-book\n"
GOOD = '{"name": "toggle_lights", "parameters": {"room": "kitchen", "state": "on"}}'


def _write(tmp_path, *answers: str):
    rows = [{"question": f"question {i}", "answer": a} for i, a in enumerate(answers, start=1)]
    return write_suite(tmp_path / "s", job=JOB, config=SINGLE, rows=rows)


# --- bad references -------------------------------------------------------------------


def test_reference_that_is_not_valid_json_names_file_line_and_field(tmp_path):
    folder = _write(tmp_path, GOOD, '{"name": "toggle_lights", "parameters": {"room": "kitchen",}}')
    with pytest.raises(SuiteError) as info:
        load_suite(folder)
    err = info.value
    assert (err.path.name, err.line, err.field) == ("test.jsonl", 2, "answer")
    assert "not valid JSON" in str(err) and "test.jsonl:2" in str(err)


def test_reference_calling_an_unknown_function_names_file_line_and_the_tools(tmp_path):
    folder = _write(tmp_path, GOOD, GOOD.replace("toggle_lights", "dim_lights").replace("kitchen", "hall"))
    with pytest.raises(SuiteError) as info:
        load_suite(folder)
    assert (info.value.line, info.value.field) == (2, "answer")
    assert "calls 'dim_lights', which is not among the tools (toggle_lights)" in str(info.value)


def test_reference_that_is_not_a_call(tmp_path):
    with pytest.raises(SuiteError, match="must be a JSON object"):
        load_suite(_write(tmp_path, "toggle the lights"))


def test_bad_reference_is_a_one_line_collection_error(pytester):
    folder = pytester.path / "suites" / "lights"
    write_suite(
        folder,
        job=JOB,
        config=SINGLE,
        rows=[{"question": "q1", "answer": GOOD}, {"question": "q2", "answer": '{"name": "nope", "parameters": {}}'}],
    )
    result = pytester.runpytest("suites", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(
        ["*suites/lights/test.jsonl:2: field 'answer': calls 'nope', which is not among the tools*"]
    )
    assert "Traceback" not in result.stdout.str()


def test_answers_as_objects_arguments_and_json_string_parameters_load(tmp_path):
    folder = write_suite(
        tmp_path / "s",
        job=JOB,
        config=SINGLE,
        rows=[
            {"question": "a", "answer": json.loads(GOOD)},
            {
                "question": "b",
                "answer": json.dumps({"name": "toggle_lights", "arguments": '{"room": "hall", "state": "off"}'}),
            },
            {
                "question": "c",
                "answer": json.dumps(
                    [
                        json.loads(GOOD),
                        {"function": {"name": "toggle_lights", "arguments": {"room": "hall", "state": "on"}}},
                    ]
                ),
            },
        ],
    )
    answers = [e.answer for e in load_suite(folder).examples]
    assert answers[0] == json.loads(GOOD)
    assert answers[1] == {"name": "toggle_lights", "parameters": {"room": "hall", "state": "off"}}
    assert answers[2][1] == {"name": "toggle_lights", "parameters": {"room": "hall", "state": "on"}}


# --- the shipped suites -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "task_type", "rows"),
    [
        ("smart-home", TaskType.MULTI_TURN_TOOL_CALLING, 50),
        ("git-assistant", TaskType.TOOL_CALLING, 116),
    ],
)
def test_shipped_suite_references_are_valid_and_defaults_are_optional(name, task_type, rows):
    suite = load_suite(ROOT / "suites" / name)
    assert suite.task_type == task_type and len(suite.examples) == rows
    for example in suite.examples:
        answer = example.answer
        schema = suite.tool(answer["name"])["parameters"]
        assert validation_errors(answer["parameters"], schema) == [], example.location
        defaults = {k: p["default"] for k, p in schema.get("properties", {}).items() if "default" in p}
        # Some references state a default value, others leave it out: both forms must score the same.
        explicit = {"name": answer["name"], "parameters": {**defaults, **answer["parameters"]}}
        assert tool_call_equivalence(answer, json.dumps(explicit), suite.tools).passed, example.location
        omitted = {
            "name": answer["name"],
            "parameters": {k: v for k, v in answer["parameters"].items() if defaults.get(k, object()) != v},
        }
        assert tool_call_equivalence(answer, json.dumps(omitted), suite.tools).passed, example.location
        for message in example.question if isinstance(example.question, list) else []:
            for c in message.get("tool_calls") or []:
                fn = c.get("function", c)
                args = fn.get("arguments", fn.get("parameters"))
                args = json.loads(args) if isinstance(args, str) else args
                assert validation_errors(args, suite.tool(fn["name"])["parameters"]) == [], example.location


def test_smart_home_is_multi_turn():
    suite = load_suite(ROOT / "suites" / "smart-home")
    turns = [sum(m["role"] == "user" for m in e.question) for e in suite.examples]
    assert all(t > 1 for t in turns)  # every row of distil-smart-home continues a conversation


# --- multi-turn conversations for providers ------------------------------------------------


def _check_openai_conversation(messages):
    """What OpenAI-style APIs require: every assistant tool call answered by a tool
    message with its id before the next non-tool message."""
    for index, message in enumerate(messages):
        if message["role"] == "assistant" and message.get("tool_calls"):
            assert message["content"] is not None  # llama.cpp's server answers 500 to null
            ids = [c["id"] for c in message["tool_calls"]]
            following = messages[index + 1 : index + 1 + len(ids)]
            assert [m["role"] for m in following] == ["tool"] * len(ids)
            assert [m["tool_call_id"] for m in following] == ids
            for c in message["tool_calls"]:
                assert c["type"] == "function" and isinstance(json.loads(c["function"]["arguments"]), dict)


@pytest.mark.parametrize(
    "folder", [ROOT / "suites" / "smart-home", SHARED_DATASETS / "smart-home"], ids=["shipped", "shared"]
)
def test_every_history_becomes_a_valid_conversation(folder):
    if not folder.is_dir():
        pytest.skip(f"{folder} is absent")
    suite = load_suite(folder)
    for example in suite.examples:
        request = build_request(example)
        assert request.tools and request.tool_choice == "auto"
        wire = with_tool_results(list(request.messages))
        _check_openai_conversation(wire)
        synthetic = [m for m in wire if m["role"] == "tool"]
        assert all(m["content"] == SYNTHETIC_TOOL_RESULT for m in synthetic)
        text = render_history_for_text_model(list(request.messages))
        assert [m["role"] for m in text][-1] == "user"
        assert all(isinstance(m["content"], str) for m in text)


# --- the real smart-home folder ----------------------------------------------------------------

shared = pytest.mark.skipif(
    not (SHARED_DATASETS / "smart-home").is_dir(), reason=f"{SHARED_DATASETS / 'smart-home'} is absent"
)


@shared
def test_shared_smart_home_loads_its_json_string_answers():
    suite = load_suite(SHARED_DATASETS / "smart-home")
    assert suite.task_type == TaskType.MULTI_TURN_TOOL_CALLING
    raw = [json.loads(line) for line in suite.test_file.read_text().splitlines() if line.strip()]
    assert len(suite.examples) == len(raw)
    for example, row in zip(suite.examples, raw, strict=True):
        assert isinstance(row["answer"], str)  # stored as JSON text
        assert example.answer == json.loads(row["answer"])


@shared
def test_shared_smart_home_references_score_as_native_calls_and_misses_explain():
    suite = load_suite(SHARED_DATASETS / "smart-home")
    for example in suite.examples:
        answer = example.answer
        native = Completion(text="", tool_calls=[ToolCall(answer["name"], json.dumps(answer["parameters"]))])
        assert tool_call_equivalence(answer, native, suite.tools).passed, example.location
        hermes = f"<tool_call>{json.dumps({'name': answer['name'], 'arguments': answer['parameters']})}</tool_call>"
        assert tool_call_equivalence(answer, hermes, suite.tools).passed, example.location
    lights = next(e for e in suite.examples if e.answer["name"] == "toggle_lights" and "room" in e.answer["parameters"])
    room = lights.answer["parameters"]["room"]
    other = "office" if room != "office" else "kitchen"
    wrong = {"name": "toggle_lights", "parameters": {**lights.answer["parameters"], "room": other}}
    score = tool_call_equivalence(lights.answer, wrong, suite.tools)
    assert not score.passed and score.explanation == f"parameters.room: expected {room!r}, got {other!r}"
