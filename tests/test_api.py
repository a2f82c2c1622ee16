"""The Python API: assert_tool_call_equivalent, and @examples tests run through the
plugin's session (ids, --limit, --model, --repeat, records, JUnit, miss vs error, xdist),
against a fake OpenAI-compatible server that answers with native tool calls."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET

import pytest

from pytest_distill import Completion, ToolCall, assert_tool_call_equivalent
from pytest_distill.plugin.api import ToolCallMismatch

from helpers.chat_server import FakeChatServer
from helpers.suites import summary_row, write_suite

TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "toggle_lights",
            "parameters": {
                "type": "object",
                "properties": {
                    "room": {"type": "string"},
                    "state": {"type": "string", "enum": ["on", "off"], "default": "on"},
                },
                "required": ["room"],
            },
        },
    }
]
ROWS = [
    {
        "question": "Kitchen lights on",
        "answer": json.dumps({"name": "toggle_lights", "parameters": {"room": "kitchen"}}),
    },
    {
        "question": "Hall lights off",
        "answer": json.dumps({"name": "toggle_lights", "parameters": {"room": "hall", "state": "off"}}),
    },
    {"question": "Porch lights on", "answer": json.dumps({"name": "toggle_lights", "parameters": {"room": "porch"}})},
]

TEST_FILE = """
from pytest_distill import examples, assert_tool_call_equivalent

@examples("suites/lights")
def test_lights(distill_model, distill_example):
    reply = distill_model.respond(distill_example)
    assert_tool_call_equivalent(reply, distill_example.answer, tools=distill_example.suite.tools)
"""


def _responder(body):
    """Native tool calls: right on row 1 (with the default spelled out), wrong room on
    row 2, HTTP 500 on row 3."""
    question = body["messages"][-1]["content"]
    if question.startswith("Porch"):
        return 500, {"error": {"message": "fake server error"}}
    room = "kitchen" if question.startswith("Kitchen") else "bathroom"
    state = "on" if question.startswith("Kitchen") else "off"
    arguments = json.dumps({"room": room, "state": state})
    return {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "call_1", "type": "function", "function": {"name": "toggle_lights", "arguments": arguments}}
        ],
    }


@pytest.fixture
def project(pytester):
    write_suite(
        pytester.path / "suites" / "lights",
        job={"task_description": "Call the function.", "tools": TOOLS},
        config="base:\n  task: tool-calling-closed-book\n",
        rows=ROWS,
    )
    pytester.makepyfile(test_custom=TEST_FILE)
    with FakeChatServer(responder=_responder) as server:
        pytester.makefile(".toml", models=server.models_toml(fake="fake", other="other"))
        yield pytester


# --- assert_tool_call_equivalent -------------------------------------------------------------


def test_assert_tool_call_equivalent_passes_with_defaults_and_returns_the_score():
    reply = Completion(text="", tool_calls=[ToolCall("toggle_lights", '{"room": "kitchen", "state": "on"}')])
    score = assert_tool_call_equivalent(
        reply, {"name": "toggle_lights", "parameters": {"room": "kitchen"}}, tools=TOOLS
    )
    assert score.passed


def test_assert_tool_call_equivalent_fails_with_the_difference():
    with pytest.raises(AssertionError, match=r"^parameters\.room: expected 'kitchen', got 'hall'$") as info:
        assert_tool_call_equivalent(
            '{"name": "toggle_lights", "arguments": {"room": "hall"}}',
            '{"name": "toggle_lights", "parameters": {"room": "kitchen"}}',
            tools=TOOLS,
        )
    assert isinstance(info.value, ToolCallMismatch) and info.value.score.value == 0.0


def test_assert_tool_call_equivalent_on_garbage_is_an_assertion_not_a_crash():
    with pytest.raises(AssertionError, match="no tool call: no JSON in the reply"):
        assert_tool_call_equivalent(
            "I can't do that", {"name": "toggle_lights", "parameters": {"room": "x"}}, tools=TOOLS
        )


# --- @examples through the plugin ------------------------------------------------------------------


def test_examples_parametrizes_examples_by_model_with_stable_ids(project):
    result = project.runpytest("test_custom.py", "--collect-only", "-q", "--model=fake", "--model=other")
    ids = [line for line in result.outlines if "::" in line]
    assert ids == [f"test_custom.py::test_lights[{m}-000{i}]" for m in ("fake", "other") for i in (1, 2, 3)]


def test_examples_honours_limit_and_repeat(project):
    result = project.runpytest("test_custom.py", "--collect-only", "-q", "--model=fake", "--limit=2", "--repeat=2")
    ids = [line.split("::")[1] for line in result.outlines if "::" in line]
    assert ids == [
        "test_lights[fake-r1-0001]",
        "test_lights[fake-r1-0002]",
        "test_lights[fake-r2-0001]",
        "test_lights[fake-r2-0002]",
    ]


def test_examples_own_limit_caps_further(project):
    project.makepyfile(test_capped=TEST_FILE.replace('"suites/lights"', '"suites/lights", limit=1'))
    result = project.runpytest("test_capped.py", "--collect-only", "-q", "--model=fake", "--limit=2")
    assert [line for line in result.outlines if "::" in line] == ["test_capped.py::test_lights[fake-0001]"]


@pytest.mark.parametrize("workers", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_failing_assert_is_a_miss_and_a_provider_error_an_error(project, workers):
    result = project.runpytest(
        "test_custom.py", "--model=fake", "--junitxml=out.xml", "-p", "no:cacheprovider", *workers
    )
    result.assert_outcomes(passed=1, failed=1, errors=1)
    row = summary_row(result.stdout.str(), "lights::test_lights", "fake")
    assert row[2:7] == ["3", "1", "1", "1", "50.0%"]  # n, pass, miss, err, pass rate (errors aren't misses)
    result.stdout.fnmatch_lines(["*error: fake: HTTP 500: fake server error*"])
    cases = {
        c.get("name"): {p.get("name"): p.get("value") for p in c.findall("./properties/property")}
        for c in ET.parse(project.path / "out.xml").findall(".//testcase")
    }
    assert {name: props["distill.outcome"] for name, props in cases.items()} == {
        "test_lights[fake-0001]": "pass",
        "test_lights[fake-0002]": "miss",
        "test_lights[fake-0003]": "error",
    }
    miss = cases["test_lights[fake-0002]"]
    assert miss["distill.explanation"] == "parameters.room: expected 'hall', got 'bathroom'"
    assert miss["distill.suite"] == "lights::test_lights" and miss["distill.suite_path"] == "suites/lights"
    assert miss["distill.scorer"] == "test:test_lights" and miss["distill.model"] == "fake"
    assert json.loads(miss["distill.output"]) == [
        {"name": "toggle_lights", "arguments": {"room": "bathroom", "state": "off"}}
    ]
    assert int(miss["distill.input_tokens"]) > 0
    assert "HTTP 500" in cases["test_lights[fake-0003]"]["distill.error"]


def test_custom_tests_and_the_folder_suite_get_their_own_rows(project):
    result = project.runpytest("suites", "test_custom.py", "--model=fake", "-p", "no:cacheprovider")
    out = result.stdout.str()
    assert summary_row(out, "lights", "fake")[2:6] == ["3", "1", "1", "1"]
    assert summary_row(out, "lights::test_lights", "fake")[2:6] == ["3", "1", "1", "1"]


def test_other_outcomes_of_a_custom_test(project):
    project.makepyfile(
        test_more="""
        import pytest
        from pytest_distill import examples

        @examples("suites/lights", limit=1)
        def test_skips(distill_model, distill_example):
            pytest.skip("not today")

        @examples("suites/lights", limit=1)
        def test_crashes(distill_model, distill_example):
            {}["missing"]

        @examples("suites/lights", limit=1)
        def test_data_only(distill_example):
            assert distill_example.answer["name"] == "toggle_lights"

        @examples("suites/lights", limit=1)
        def test_plain_assert(distill_model, distill_example):
            assert distill_model.respond(distill_example).tool_calls[0].arguments["room"] == "hall", "wrong room"

        def test_example_without_examples(distill_example):
            pass
    """
    )
    result = project.runpytest("test_more.py", "--model=fake", "-p", "no:cacheprovider", "-rA")
    result.assert_outcomes(passed=1, skipped=1, failed=2, errors=1)
    out = result.stdout.str()
    assert summary_row(out, "lights::test_skips", "fake")[2:6] == ["0", "0", "0", "0"]  # a skip is not run
    assert summary_row(out, "lights::test_crashes", "fake")[2:6] == ["1", "0", "0", "1"]  # a crash is an error
    assert summary_row(out, "lights::test_data_only", "fake")[2:6] == ["1", "1", "0", "0"]
    assert summary_row(out, "lights::test_plain_assert", "fake")[2:6] == ["1", "0", "1", "0"]
    result.stdout.fnmatch_lines(["*the 'distill_example' fixture comes with @examples(...)*"])


def test_unknown_suite_folder_is_a_collection_error(project):
    project.makepyfile(
        test_missing="""
        from pytest_distill import examples

        @examples("suites/nowhere")
        def test_it(distill_model, distill_example):
            pass
    """
    )
    result = project.runpytest("test_missing.py", "--model=fake", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*@examples('suites/nowhere'): no suite folder*"])


def test_bad_suite_data_is_a_collection_error_with_file_and_line(project):
    bad = project.path / "suites" / "lights" / "test.jsonl"
    bad.write_text(bad.read_text() + '{"question": "q4", "answer": "{\\"name\\": \\"nope\\", \\"parameters\\": {}}"}\n')
    result = project.runpytest("test_custom.py", "--model=fake", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*suites/lights/test.jsonl:4: field 'answer': calls 'nope'*"])
