"""The smart-home and git-assistant suites end to end with pytester: on the embedded
model and on a real llama.cpp server, serial and with -n 2, plus an @examples test.
Kept to a few examples each (--limit): two shared cores run everything."""

from __future__ import annotations

import json
import shutil
import xml.etree.ElementTree as ET

import pytest

from helpers.chat_server import FakeChatServer
from helpers.llama import needs_llama, served_entry
from helpers.paths import ROOT

SUITES = ("smart-home", "git-assistant")


def _copy_suites(pytester) -> None:
    for name in SUITES:
        shutil.copytree(ROOT / "suites" / name, pytester.path / "suites" / name)


def _rows(output: str, model: str) -> dict[str, list[str]]:
    rows = {}
    for line in output.splitlines():
        cells = line.split()
        if len(cells) > 7 and cells[1] == model and cells[0] in SUITES:
            rows[cells[0]] = cells
    assert set(rows) == set(SUITES), output
    return rows


def _properties(path) -> list[dict[str, str]]:
    """The items' properties (not the suites' gate verdicts, which are testcases too)."""
    return [
        {p.get("name"): p.get("value") for p in case.findall("./properties/property")}
        for case in ET.parse(path).findall(".//testcase")
        if not case.get("name", "").startswith("distill-gate")
    ]


def _check_records(props: list[dict[str, str]], constrained: str) -> None:
    for p in props:
        assert p["distill.scorer"] == "tool_call_equivalence"
        assert p["distill.outcome"] in ("pass", "miss"), p  # garbage is a miss, never an error
        assert p["distill.constrained"] == constrained
        assert p["distill.explanation"]  # a miss explains itself; a pass names the call
        if p["distill.outcome"] == "pass":
            assert p["distill.explanation"].startswith("equivalent: ")


@needs_llama
@pytest.mark.slow
def test_both_suites_on_the_embedded_model_serial_and_xdist_agree(pytester):
    _copy_suites(pytester)
    serial = pytester.runpytest("suites", "--limit=3", "--junitxml=serial.xml", "-p", "no:cacheprovider")
    parallel = pytester.runpytest("suites", "--limit=3", "-n", "2", "--junitxml=xdist.xml", "-p", "no:cacheprovider")
    rows_serial, rows_parallel = (
        _rows(serial.stdout.str(), "smollm2-135m"),
        _rows(parallel.stdout.str(), "smollm2-135m"),
    )
    for name in SUITES:
        assert rows_serial[name][2] == "3" and rows_serial[name][5] == "0"  # n, errors
        assert rows_serial[name][:8] == rows_parallel[name][:8]  # counts, rate, CI identical
    props = _properties(pytester.path / "serial.xml")
    _check_records(props, "json_schema_tool_call")
    for p in props:  # the constrained output parses into a call, unless max_tokens cut it off: then a miss
        if p["distill.finish_reason"] == "length":
            assert p["distill.outcome"] == "miss" and "unfinished JSON" in p["distill.explanation"], p
            continue
        calls = json.loads(p["distill.output"])
        assert isinstance(calls, list) and calls and "name" in calls[0]
    for p in props:  # each miss's explanation is its assertion message
        if p["distill.outcome"] == "miss":
            assert f"miss: {p['distill.explanation']}" in serial.stdout.str()


@needs_llama
@pytest.mark.slow
def test_both_suites_on_a_llama_cpp_server_with_native_tools(pytester, llama_server_tools):
    """--chat_format chatml-function-calling with tool_choice "auto" returns native tool
    calls. (Its tool path ignores max_tokens, so a few rows can run to the context limit:
    hence the json_schema tool style below for full runs, see docs/tool-calling.md.)"""
    _copy_suites(pytester)
    # a prompt of ~2,000 tokens takes up to a minute on 2 busy cores: one row a suite, time to answer
    pytester.makefile(".toml", models=served_entry(llama_server_tools) + "timeout_s = 600\n")
    result = pytester.runpytest("suites", "--model=served", "--limit=1", "--junitxml=out.xml", "-p", "no:cacheprovider")
    for row in _rows(result.stdout.str(), "served").values():
        assert row[2] == "1" and row[5] == "0"  # answered, no errors
    props = _properties(pytester.path / "out.xml")
    _check_records(props, "native_tools")
    assert all(json.loads(p["distill.output"])[0]["name"] for p in props)


@needs_llama
@pytest.mark.slow
def test_json_schema_tool_style_on_a_server_matches_the_embedded_model(pytester, llama_server):
    """The same prompt and constraint as the embedded provider: the same answers, byte for
    byte, from the server (greedy, repeat_penalty 1.0), here under -n 2."""
    _copy_suites(pytester)
    pytester.makefile(".toml", models=served_entry(llama_server, "served-json", tool_style="json_schema"))
    result = pytester.runpytest(
        "suites",
        "--model=served-json",
        "--model=smollm2-135m",
        "--limit=3",
        "-n",
        "2",
        "--junitxml=out.xml",
        "-p",
        "no:cacheprovider",
    )
    served, embedded = _rows(result.stdout.str(), "served-json"), _rows(result.stdout.str(), "smollm2-135m")
    for name in SUITES:
        assert served[name][2:6] == embedded[name][2:6] and served[name][5] == "0"
    props = _properties(pytester.path / "out.xml")
    _check_records(props, "json_schema_tool_call")
    by_model: dict[str, dict[tuple[str, str], str]] = {}
    for p in props:
        by_model.setdefault(p["distill.model"], {})[(p["distill.suite"], p["distill.example_id"])] = p["distill.output"]
    assert len(by_model["served-json"]) == 6
    assert by_model["served-json"] == by_model["smollm2-135m"]


@needs_llama
@pytest.mark.slow
def test_examples_api_on_the_embedded_model(pytester):
    _copy_suites(pytester)
    pytester.makepyfile(
        test_custom="""
        from pytest_distill import examples, assert_tool_call_equivalent

        @examples("suites/smart-home")
        def test_smart_home(distill_model, distill_example):
            reply = distill_model.respond(distill_example)
            assert_tool_call_equivalent(reply, distill_example.answer, tools=distill_example.suite.tools)
    """
    )
    result = pytester.runpytest("test_custom.py", "--limit=2", "--junitxml=out.xml", "-p", "no:cacheprovider")
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 2
    props = _properties(pytester.path / "out.xml")
    assert {p["distill.suite"] for p in props} == {"smart-home::test_smart_home"}
    assert {p["distill.constrained"] for p in props} == {"json_schema_tool_call"}
    assert all(float(p["distill.latency_s"]) > 0 for p in props)


def test_multi_turn_history_reaches_a_server_as_a_valid_conversation(pytester):
    """OpenAI-style servers reject an assistant tool call without a tool message after it:
    every earlier call gets a synthetic {"status": "ok"} result."""
    _copy_suites(pytester)

    def responder(body):
        return {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "x",
                    "type": "function",
                    "function": {"name": "get_device_status", "arguments": '{"device_type": "lights"}'},
                }
            ],
        }

    with FakeChatServer(responder=responder) as server:
        pytester.makefile(".toml", models=server.models_toml(fake="fake"))
        result = pytester.runpytest("suites/smart-home", "--model=fake", "--limit=20", "-p", "no:cacheprovider")
        requests = server.bodies
    tools = len(json.loads((ROOT / "suites" / "smart-home" / "job_description.json").read_text())["tools"])
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 20 and "errors" not in outcomes
    assert len(requests) == 20
    with_history = 0
    for body in requests:
        assert body["tool_choice"] == "auto" and len(body["tools"]) == tools
        messages = body["messages"]
        assert messages[0]["role"] == "system" and messages[-1]["role"] == "user"
        for index, message in enumerate(messages):
            if message["role"] == "assistant" and message.get("tool_calls"):
                with_history += 1
                assert message["content"] == ""  # llama.cpp's server answers 500 to null
                ids = [c["id"] for c in message["tool_calls"]]
                answers = messages[index + 1 : index + 1 + len(ids)]
                assert [(m["role"], m["tool_call_id"], m["content"]) for m in answers] == [
                    ("tool", i, '{"status": "ok"}') for i in ids
                ]
    assert with_history >= 20  # every row of distil-smart-home is multi-turn
    result.stdout.fnmatch_lines(["*miss: function: expected 'toggle_lights', got 'get_device_status'*"])
