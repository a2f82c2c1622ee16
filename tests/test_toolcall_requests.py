"""How tool-calling requests reach providers: native tools, or (tool_style = "json_schema")
tools in the system prompt with a JSON-schema-constrained reply parsed back into a call."""

from __future__ import annotations

import asyncio
import json

import pytest

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.chat import tool_call_from_json, tool_call_schema, tools_as_json_schema
from pytest_distill.models.providers.openai_compatible import OpenAICompatibleProvider
from pytest_distill.models.providers.vllm import VLLMProvider
from pytest_distill.models.registry import ModelEntry
from pytest_distill.runtime.engine import request_key
from pytest_distill.suite import build_request, load_suite

from helpers.chat_server import FakeChatServer
from helpers.paths import ROOT


def _entry(url: str = "http://127.0.0.1:9/v1", **fields) -> ModelEntry:
    return ModelEntry(
        name="m",
        provider="openai-compatible",
        model="m",
        base_url=url,
        max_retries=0,
        constraint_style="json_object_schema",
        **fields,
    )


@pytest.fixture(scope="module")
def multi_turn_request():
    suite = load_suite(ROOT / "suites" / "smart-home")
    example = next(e for e in suite.examples if len(e.question) > 2)
    return build_request(example, temperature=0.0)


def test_native_tools_go_in_the_tools_field_with_synthetic_results(multi_turn_request):
    body, mode = OpenAICompatibleProvider(_entry()).build_body(multi_turn_request)
    assert mode == "native_tools"
    assert body["tool_choice"] == "auto" and next(t["function"]["name"] for t in body["tools"]) == "toggle_lights"
    roles = [m["role"] for m in body["messages"]]
    assert roles[0] == "system" and roles[-1] == "user" and "tool" in roles
    assert "response_format" not in body


def test_json_schema_tool_style_sends_tools_as_text_and_constrains_the_reply(multi_turn_request):
    body, mode = OpenAICompatibleProvider(_entry(tool_style="json_schema")).build_body(multi_turn_request)
    assert mode == "json_schema_tool_call"
    assert "tools" not in body and "tool_choice" not in body
    assert body["response_format"] == {"type": "json_object", "schema": tool_call_schema(multi_turn_request.tools)}
    system = body["messages"][0]["content"]
    assert system.startswith(multi_turn_request.system) and '"name": "set_thermostat"' in system
    history = body["messages"][1:]
    assert {m["role"] for m in history} == {"user", "assistant"}  # no tool messages: history as text
    assistant = next(m for m in history if m["role"] == "assistant")
    assert set(json.loads(assistant["content"].splitlines()[0])) == {"name", "parameters"}


@pytest.mark.parametrize("provider_class", [OpenAICompatibleProvider, VLLMProvider])
def test_json_schema_tool_style_changes_the_cache_key(provider_class, multi_turn_request):
    native = provider_class(_entry())
    text = provider_class(_entry(tool_style="json_schema"))
    assert request_key(native, multi_turn_request, 1) != request_key(text, multi_turn_request, 1)


def test_unknown_tool_style_is_a_config_error():
    with pytest.raises(ConfigError, match="tool_style must be one of native, json_schema"):
        OpenAICompatibleProvider(_entry(tool_style="xml"))


def test_json_schema_tool_style_parses_the_reply_into_a_call(multi_turn_request):
    replies = iter(['{"name": "set_thermostat", "parameters": {"temperature": 70}}', '{"name": "set_thermo'])
    with FakeChatServer(responder=lambda body: next(replies)) as server:
        provider = OpenAICompatibleProvider(_entry(server.url, tool_style="json_schema"))
        first = asyncio.run(provider.complete(multi_turn_request))
        provider.close()  # a new event loop needs a new client
        cut = asyncio.run(provider.complete(multi_turn_request))  # cut off: no call, the text stays
    assert first.constrained == "json_schema_tool_call"
    assert [c.to_dict() for c in first.tool_calls] == [{"name": "set_thermostat", "arguments": {"temperature": 70}}]
    assert cut.tool_calls == [] and cut.text == '{"name": "set_thermo'


def test_tools_as_json_schema_keeps_everything_else(multi_turn_request):
    converted = tools_as_json_schema(multi_turn_request)
    assert converted.tools == () and converted.tool_choice is None
    assert converted.constraint.kind == "json_schema"
    assert (converted.temperature, converted.max_tokens) == (
        multi_turn_request.temperature,
        multi_turn_request.max_tokens,
    )


@pytest.mark.parametrize(
    ("text", "call"),
    [
        ('{"name": "f", "parameters": {"a": 1}}', {"name": "f", "arguments": {"a": 1}}),
        ('{"name": "f", "arguments": {"a": 1}}', {"name": "f", "arguments": {"a": 1}}),
        ('{"name": "f"}', {"name": "f", "arguments": {}}),
        ('{"name": "f", "parameters": [1]}', {"name": "f", "arguments": "[1]"}),
        ('{"name": "f", "parameters": {"a": ', None),
        ('{"label": "x"}', None),
        ("hello", None),
    ],
)
def test_tool_call_from_json(text, call):
    parsed = tool_call_from_json(text)
    assert (parsed.to_dict() if parsed else None) == call
