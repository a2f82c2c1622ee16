"""The README's usage line: `--model=qwen3-0.6b-distilled` resolves to an OpenAI-compatible
server at $DISTILL_BASE_URL; with nothing there the run stops before any item, in one line."""

from __future__ import annotations

import json

import pytest

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project
from helpers.http_fake import closed_port_url
from helpers.llama import SERVED_NAME, needs_llama
from helpers.suites import TOPIC_ROWS, summary_row, write_suite

ROWS = [{"question": q, "answer": a} for q, a in TOPIC_ROWS[:3]]


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_nothing_listening_stops_the_run_before_any_item_in_one_line(pytester, monkeypatch, args):
    url = closed_port_url() + "/v1"
    monkeypatch.setenv("DISTILL_BASE_URL", url)
    write_suite(pytester.path / "suites" / "topics")
    result = pytester.runpytest("suites", "--model=qwen3-0.6b-distilled", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if line.strip()]
    assert len(lines) == 1, result.errlines
    line = lines[0]
    assert line.startswith("ERROR: pytest-distill: model 'qwen3-0.6b-distilled': nothing answers at " + url)
    assert "(set by $DISTILL_BASE_URL)" in line
    assert "vllm serve <model> --port 8000" in line and "docs/models.md" in line
    assert "passed" not in result.stdout.str() and "error" not in result.stdout.str().lower()


def test_the_default_address_is_vllms(monkeypatch):
    from pytest_distill.models.registry import Registry

    monkeypatch.delenv("DISTILL_BASE_URL", raising=False)
    monkeypatch.delenv("DISTILL_MODEL_NAME", raising=False)
    entry = Registry().get("qwen3-0.6b-distilled")
    assert (entry.provider, entry.base_url, entry.model) == ("openai-compatible", "http://127.0.0.1:8000/v1", "@served")
    monkeypatch.setenv("DISTILL_MODEL_NAME", "my-model")
    assert Registry().get("qwen3-0.6b-distilled").model == "my-model"


def test_a_malformed_base_url_variable_is_one_line(pytester, monkeypatch):
    monkeypatch.setenv("DISTILL_BASE_URL", "localhost:8000")
    write_suite(pytester.path / "suites" / "topics")
    result = pytester.runpytest("suites", "--model=qwen3-0.6b-distilled")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert (
        "$DISTILL_BASE_URL (base_url of model 'qwen3-0.6b-distilled'): must start with http://" in result.stderr.str()
    )


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_every_unmanaged_openai_compatible_entry_is_checked(pytester, args):
    write_suite(pytester.path / "suites" / "topics")
    url = closed_port_url() + "/v1"
    pytester.makefile(".toml", models=f'[mine]\nprovider = "openai-compatible"\nmodel = "m"\nbase_url = "{url}"\n')
    result = pytester.runpytest("suites", "--model=mine", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert f"model 'mine': nothing answers at {url} (" in result.stderr.str()


def test_collect_only_and_replay_never_ask(pytester):
    write_suite(pytester.path / "suites" / "topics")
    url = closed_port_url() + "/v1"
    pytester.makefile(".toml", models=f'[mine]\nprovider = "openai-compatible"\nmodel = "m"\nbase_url = "{url}"\n')
    collected = pytester.runpytest("suites", "--model=mine", "--collect-only", "-q")
    assert collected.ret == pytest.ExitCode.OK
    replayed = pytester.runpytest("suites", "--model=mine", "--distill-cache=cache", "--distill-cache-mode=replay")
    assert "nothing answers" not in replayed.stderr.str()
    assert replayed.ret == pytest.ExitCode.TESTS_FAILED  # every item: a replay miss, an error of its own


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_served_model_name_comes_from_the_server(pytester, monkeypatch, args):
    with FakeChatServer(ROWS) as server:
        distill_project(pytester, server, {})
        monkeypatch.setenv("DISTILL_BASE_URL", server.url)
        monkeypatch.delenv("DISTILL_MODEL_NAME", raising=False)
        server.listed_models = ["correct", "other"]
        result = pytester.runpytest("suites", "--model=qwen3-0.6b-distilled", "--distill-unconstrained", *args)
    assert result.ret == pytest.ExitCode.OK, result.stdout.str()
    assert {b["model"] for b in server.bodies} == {"correct"}


@needs_llama
def test_the_usage_line_evaluates_against_a_real_llama_cpp_server(pytester, monkeypatch, llama_server):
    monkeypatch.setenv("DISTILL_BASE_URL", llama_server)
    monkeypatch.delenv("DISTILL_MODEL_NAME", raising=False)
    write_suite(pytester.path / "suites" / "topics")
    # llama-cpp-python's server takes a schema as json_object (the built-in entry asks vLLM's way)
    pytester.makefile(".toml", models='["qwen3-0.6b-distilled"]\nconstraint_style = "json_object_schema"\n')
    result = pytester.runpytest(
        "suites", "--model=qwen3-0.6b-distilled", "--limit=2", "-p", "no:randomly", "--distill-report=out"
    )
    row = summary_row(result.stdout.str(), "topics", "qwen3-0.6b-distilled")
    assert row[2] == "2" and row[5] == "0", result.stdout.str()  # n = 2 answered, no errors
    assert result.ret in (pytest.ExitCode.OK, pytest.ExitCode.TESTS_FAILED)  # a miss is the model's answer
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["models"]["qwen3-0.6b-distilled"]["model"] == SERVED_NAME  # the server's /v1/models alias
