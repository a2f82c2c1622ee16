"""Gemini provider: the real `google-genai` SDK against recorded replies on 127.0.0.1."""

from __future__ import annotations

import pytest

from pytest_distill.core.cost import api_cost
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import ProviderError
from pytest_distill.models.providers.gemini_api import to_gemini
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

KEY = "AIza-test-0123456789"


@pytest.fixture
def server():
    with RecordedServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def key(monkeypatch):
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)
    monkeypatch.setenv("GEMINI_API_KEY", KEY)


def entry(server: RecordedServer, name: str = "gemini-2.5-flash", **fields):
    return recorded_entry(name, server.url, **fields)


def test_success_maps_request_reply_usage_and_cost(server):
    server.queue(reply("gemini", "success"))
    e = entry(server)
    completion = run_complete(create_provider(e), classify_request(seed=3))

    sent = server.requests[0]
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["headers"]["x-goog-api-key"] == KEY
    body = sent["json"]
    assert body["contents"] == [{"role": "user", "parts": [{"text": "Where is my new card?"}]}]
    assert body["systemInstruction"]["parts"][0]["text"] == "Classify."
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 64 and config["seed"] == 3
    assert "temperature" not in config
    assert config["responseMimeType"] == "application/json"
    assert config["responseJsonSchema"]["properties"]["label"]["enum"] == ["card_arrival", "lost_card"]
    assert config["thinkingConfig"] == {"thinking_budget": 0}  # from models.toml params (as the SDK sends it)

    # the thought summary part is not the answer
    assert completion.text == "card_arrival"
    assert completion.finish_reason == "stop"
    assert completion.constrained == "json_schema"
    assert (completion.usage.input_tokens, completion.usage.cached_tokens) == (1400, 1024)
    assert completion.usage.output_tokens == 9 + 41  # thinking billed as output
    assert completion.usage.reasoning_tokens == 41
    assert completion.model == "gemini-2.5-flash"
    expected = ((1400 - 1024) * 0.30 + 1024 * 0.03 + 50 * 2.50) / 1e6
    assert api_cost(e, completion.usage) == pytest.approx(expected)


def test_temperature_is_sent_when_set(server):
    server.queue(reply("gemini", "success"))
    run_complete(create_provider(entry(server, "gemini-2.5-flash-lite")), classify_request(temperature=0.0))
    config = server.requests[0]["json"]["generationConfig"]
    assert config["temperature"] == 0.0 and "thinkingConfig" not in config


def test_function_call_and_multi_turn_history(server):
    server.queue(reply("gemini", "tool_call"))
    completion = run_complete(create_provider(entry(server)), tool_history_request("auto"))

    body = server.requests[0]["json"]
    declaration = body["tools"][0]["functionDeclarations"][0]
    assert declaration["name"] == "set_light"
    # the SDK sends this field in snake_case (the API accepts both), so the schema is not case-converted
    assert declaration["parameters_json_schema"] == TOOLS[0]["function"]["parameters"]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}
    _user1, model, user2 = body["contents"]
    assert model == {
        "role": "model",
        "parts": [{"functionCall": {"name": "set_light", "args": {"room": "hall", "state": "on"}}}],
    }
    assert user2["parts"][0] == {"functionResponse": {"name": "set_light", "response": {"status": "ok"}}}
    assert user2["parts"][1] == {"text": "and the kitchen"}

    assert completion.tool_calls == [KITCHEN_ON]
    assert completion.finish_reason == "tool_calls"
    assert completion.text == ""


def test_tool_result_history_and_system_messages():
    contents, systems = to_gemini(
        [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "lights on"},
            {
                "role": "assistant",
                "tool_calls": [{"id": "c1", "type": "function", "function": {"name": "set_light", "arguments": "{}"}}],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "done"},
        ]
    )
    assert systems == ["Be brief."]
    assert contents[-1] == {
        "role": "user",
        "parts": [{"function_response": {"name": "set_light", "response": {"result": "done"}}}],
    }


@pytest.mark.parametrize("fixture", ["safety", "prompt_blocked"])
def test_content_filter_is_an_answer(server, fixture):
    server.queue(reply("gemini", fixture))
    completion = run_complete(create_provider(entry(server)), classify_request())
    assert completion.finish_reason == "content_filter"
    assert completion.text == "" and completion.usage.input_tokens == 31


def test_keys(monkeypatch, server):
    monkeypatch.delenv("GEMINI_API_KEY")
    with pytest.raises(ConfigError, match=r"set the environment variable GOOGLE_API_KEY or GEMINI_API_KEY$"):
        create_provider(Registry().get("gemini-2.5-flash")).check()
    monkeypatch.setenv("GOOGLE_API_KEY", "AIza-google-key-0001")
    create_provider(Registry().get("gemini-2.5-flash")).check()
    server.queue(reply("gemini", "success"))
    run_complete(create_provider(entry(server)), classify_request())
    assert server.requests[0]["headers"]["x-goog-api-key"] == "AIza-google-key-0001"


def test_bad_params_are_a_clear_error_without_a_request(server):
    with pytest.raises(ProviderError, match=r"invalid request config .*params"):
        run_complete(create_provider(entry(server, params={"thinking_config": {"budget": "lots"}})), classify_request())
    assert server.requests == []


# --- empty replies -----------------------------------------------------------------
def _no_candidates(body):
    body["candidates"] = []


def _no_parts(body):
    body["candidates"][0]["content"] = {"role": "model"}


@pytest.mark.parametrize(
    ("change", "reason"), [(_no_candidates, "no candidates"), (_no_parts, "the candidate has no parts")]
)
def test_a_reply_without_an_answer_is_an_error(server, change, reason):
    answer = reply("gemini", "success")
    change(answer["body"])
    server.queue(answer)
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(entry(server)), classify_request())
    assert str(info.value) == f"gemini-2.5-flash: empty reply: {reason}"
