"""Anthropic provider: the real `anthropic` SDK against recorded replies on 127.0.0.1."""

from __future__ import annotations

import pytest

from pytest_distill.core.cost import api_cost
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import ProviderError
from pytest_distill.models.chat import SYNTHETIC_TOOL_RESULT
from pytest_distill.models.providers.anthropic_api import to_anthropic
from pytest_distill.models.registry import Registry, create_provider

from helpers.recorded import (
    KITCHEN_ON,
    TOOLS,
    RecordedServer,
    classify_request,
    recorded_entry,
    reply,
    run_complete,
    tool_history_request,
)

KEY = "sk-ant-test-0123456789"


@pytest.fixture
def server():
    with RecordedServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)


def entry(server: RecordedServer, name: str = "claude-haiku-4.5", **fields):
    return recorded_entry(name, server.url, **fields)


def test_success_maps_request_reply_usage_and_cost(server):
    server.queue(reply("anthropic", "success"))
    e = entry(server)
    completion = run_complete(create_provider(e), classify_request())

    sent = server.requests[0]
    assert sent["path"] == "/v1/messages"
    assert KEY in (sent["headers"].get("x-api-key", "") + sent["headers"].get("authorization", ""))
    body = sent["json"]
    assert body["model"] == "claude-haiku-4-5"
    assert body["system"] == "Classify."
    assert body["messages"] == [{"role": "user", "content": [{"type": "text", "text": "Where is my new card?"}]}]
    assert body["max_tokens"] == 64
    assert "temperature" not in body  # the API's default for frontier models
    fmt = body["output_config"]["format"]
    assert fmt["type"] == "json_schema"
    assert fmt["schema"]["properties"]["label"]["enum"] == ["card_arrival", "lost_card"]

    assert completion.text == "card_arrival"
    assert completion.finish_reason == "stop"
    assert completion.constrained == "json_schema"
    # input_tokens excludes cache reads: the total input is 479 + 1024
    assert (completion.usage.input_tokens, completion.usage.cached_tokens) == (1503, 1024)
    assert completion.usage.output_tokens == 11
    assert completion.model == "claude-haiku-4-5-20251001"
    expected = (479 * 1.00 + 1024 * 0.10 + 11 * 5.00) / 1e6
    assert api_cost(e, completion.usage) == pytest.approx(expected)


def test_temperature_and_params_go_in_the_body(server):
    server.queue(reply("anthropic", "success"))
    e = entry(server, temperature=0.0, params={"top_k": 5})
    run_complete(create_provider(e), classify_request(temperature=0.0))
    body = server.requests[0]["json"]
    assert body["temperature"] == 0.0 and body["top_k"] == 5


def test_thinking_never_reaches_the_answer(server):
    server.queue(reply("anthropic", "thinking"))
    completion = run_complete(create_provider(entry(server)), classify_request(constraint=None))
    assert completion.text == "card_arrival"
    assert completion.usage.reasoning_tokens == 88
    assert completion.usage.output_tokens == 96  # thinking is billed as output


def test_tool_use_and_multi_turn_history(server):
    server.queue(reply("anthropic", "tool_use"))
    completion = run_complete(create_provider(entry(server)), tool_history_request("required"))

    body = server.requests[0]["json"]
    assert body["tools"] == [
        {"name": "set_light", "description": "Switch a light", "input_schema": TOOLS[0]["function"]["parameters"]}
    ]
    assert body["tool_choice"] == {"type": "any"}
    _user1, assistant, user2 = body["messages"]
    assert assistant["role"] == "assistant"
    tool_use = assistant["content"][0]
    assert tool_use["type"] == "tool_use" and tool_use["input"] == {"room": "hall", "state": "on"}
    # the synthetic result comes first in the next user turn, then the user's text
    assert user2["role"] == "user"
    assert user2["content"][0] == {
        "type": "tool_result",
        "tool_use_id": tool_use["id"],
        "content": SYNTHETIC_TOOL_RESULT,
    }
    assert user2["content"][1] == {"type": "text", "text": "and the kitchen"}

    assert completion.tool_calls == [KITCHEN_ON]
    assert completion.text == "I'll turn on the kitchen light."
    assert completion.finish_reason == "tool_calls"


def test_tool_results_in_history_are_kept():
    messages, systems = to_anthropic(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "lights on"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "call_9",
                        "type": "function",
                        "function": {"name": "set_light", "arguments": '{"room": "hall"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "call_9", "content": '{"status": "done"}'},
        ]
    )
    assert systems == ["Be brief."]
    assert messages[-1] == {
        "role": "user",
        "content": [{"type": "tool_result", "tool_use_id": "call_9", "content": '{"status": "done"}'}],
    }


def test_refusal(server):
    server.queue(reply("anthropic", "refusal"))
    completion = run_complete(create_provider(entry(server)), classify_request())
    assert completion.finish_reason == "refusal"
    assert completion.text == ""


def test_missing_key_names_the_variable(monkeypatch):
    monkeypatch.delenv("ANTHROPIC_API_KEY")
    with pytest.raises(ConfigError, match=r"set the environment variable ANTHROPIC_API_KEY$"):
        create_provider(Registry().get("claude-sonnet-4.6")).check()


def test_a_missing_sdk_fails_at_check(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "anthropic" else real(name, *a))
    with pytest.raises(ConfigError, match=r"needs the package 'anthropic'.*pytest-distill\[api\]"):
        create_provider(Registry().get("claude-haiku-4.5")).check()


# --- empty replies -----------------------------------------------------------------
@pytest.mark.parametrize(("stop_reason", "error"), [("end_turn", True), ("tool_use", True), ("max_tokens", False)])
def test_a_reply_without_content_blocks_is_an_error(server, stop_reason, error):
    answer = reply("anthropic", "success")
    answer["body"]["content"] = []
    answer["body"]["stop_reason"] = stop_reason
    server.queue(answer)
    if not error:  # cut off before the first block: the model's (empty) answer
        assert run_complete(create_provider(entry(server)), classify_request()).finish_reason == "length"
        return
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(entry(server)), classify_request())
    assert str(info.value) == "claude-haiku-4.5: empty reply: no content blocks"
