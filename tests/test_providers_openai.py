"""OpenAI and xAI providers: the real `openai` SDK against recorded replies on 127.0.0.1."""

from __future__ import annotations

import json

import pytest

from pytest_distill.core.cost import api_cost
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import ProviderError
from pytest_distill.models.registry import Registry, create_provider

from helpers.http_fake import closed_port_url
from helpers.recorded import (
    KITCHEN_ON,
    TOOLS,
    RecordedServer,
    classify_request,
    echo_in_answer,
    echo_in_error,
    echoed,
    recorded_entry,
    reply,
    run_complete,
    tool_history_request,
)

KEY = "sk-test-openai-0123456789"
XKEY = "xai-test-0123456789"


@pytest.fixture
def server():
    with RecordedServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def keys(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", KEY)
    monkeypatch.setenv("XAI_API_KEY", XKEY)


def entry(name: str, server: RecordedServer, **fields):
    return recorded_entry(name, server.url + "/v1", **fields)


def test_success_maps_request_reply_usage_and_cost(server):
    server.queue(reply("openai", "success"))
    e = entry("gpt-5-nano", server)
    completion = run_complete(create_provider(e), classify_request(seed=7))

    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["authorization"] == f"Bearer {KEY}"
    body = sent["json"]
    assert body["model"] == "gpt-5-nano"
    assert body["messages"][0] == {"role": "system", "content": "Classify."}
    assert body["messages"][1] == {"role": "user", "content": "Where is my new card?"}
    # reasoning models take max_completion_tokens, and the registry's default temperature is the API's
    assert body["max_completion_tokens"] == 64 and "max_tokens" not in body
    assert "temperature" not in body
    assert body["seed"] == 7
    assert body["reasoning_effort"] == "minimal"  # from models.toml params
    schema = body["response_format"]["json_schema"]["schema"]
    assert schema["properties"]["label"]["enum"] == ["card_arrival", "lost_card"]

    assert completion.text == "card_arrival"  # unwrapped from {"label": ...}
    assert completion.tool_calls == []
    assert (completion.usage.input_tokens, completion.usage.output_tokens) == (1203, 78)
    assert (completion.usage.cached_tokens, completion.usage.reasoning_tokens) == (1024, 64)
    assert completion.finish_reason == "stop"
    assert completion.constrained == "json_schema"
    assert completion.model == "gpt-5-nano-2025-08-07"
    assert completion.latency_s > 0
    expected = ((1203 - 1024) * 0.05 + 1024 * 0.005 + 78 * 0.40) / 1e6
    assert api_cost(e, completion.usage) == pytest.approx(expected)


def test_temperature_from_the_entry_is_sent(server):
    server.queue(reply("openai", "success"))
    e = entry("gpt-5.2", server, temperature=0.3)
    run_complete(create_provider(e), classify_request(temperature=e.temperature))
    assert server.requests[0]["json"]["temperature"] == 0.3


def test_tool_call_and_multi_turn_history(server):
    server.queue(reply("openai", "tool_call"))
    completion = run_complete(create_provider(entry("gpt-5-mini", server)), tool_history_request("auto"))

    body = server.requests[0]["json"]
    assert body["tools"] == list(TOOLS) and body["tool_choice"] == "auto"
    roles = [m["role"] for m in body["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "user"]  # synthetic tool result inserted
    assert json.loads(body["messages"][2]["tool_calls"][0]["function"]["arguments"]) == {"room": "hall", "state": "on"}
    assert body["messages"][3]["tool_call_id"] == body["messages"][2]["tool_calls"][0]["id"]

    assert completion.tool_calls == [KITCHEN_ON]
    assert completion.finish_reason == "tool_calls"
    assert completion.usage.reasoning_tokens == 128
    assert completion.usage.output_tokens == 150  # OpenAI counts reasoning inside completion_tokens


def test_refusal_is_an_answer_with_its_reason(server):
    server.queue(reply("openai", "refusal"))
    completion = run_complete(create_provider(entry("gpt-5-nano", server)), classify_request())
    assert completion.finish_reason == "refusal"
    assert completion.text == "I'm sorry, but I can't help with that request."


def test_content_filter(server):
    server.queue(reply("openai", "content_filter"))
    completion = run_complete(create_provider(entry("gpt-5-nano", server)), classify_request())
    assert completion.finish_reason == "content_filter"
    assert completion.text == ""


# --- xAI ------------------------------------------------------------------------
def test_xai_success_keeps_reasoning_out_of_the_answer(server):
    server.queue(reply("xai", "success"))
    e = entry("grok-4", server)
    completion = run_complete(create_provider(e), classify_request())
    sent = server.requests[0]
    assert sent["headers"]["authorization"] == f"Bearer {XKEY}"
    assert sent["json"]["model"] == "grok-4" and sent["json"]["max_tokens"] == 64
    assert "max_completion_tokens" not in sent["json"]
    assert completion.text == "card_arrival"
    assert "card_arrival." not in completion.text and "user asks" not in completion.text
    # xAI reports reasoning outside completion_tokens (total = prompt + completion + reasoning)
    assert completion.usage.output_tokens == 9 + 320
    assert completion.usage.reasoning_tokens == 320
    assert completion.usage.cached_tokens == 1152
    expected = ((1180 - 1152) * 3.00 + 1152 * 0.75 + 329 * 15.00) / 1e6
    assert api_cost(e, completion.usage) == pytest.approx(expected)


def test_xai_rate_limit_with_a_plain_string_error(server):
    server.queue(reply("xai", "rate_limit"))
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(entry("grok-4.1-fast", server)), classify_request())
    assert info.value.retryable and info.value.retry_after == 1.0
    assert "requests per second limit" in str(info.value)


def test_xai_default_endpoint():
    provider = create_provider(Registry().get("grok-4.1-fast"))
    assert provider.describe()["base_url"] == "https://api.x.ai/v1"


@pytest.mark.parametrize(("model", "variable"), [("gpt-5-nano", "OPENAI_API_KEY"), ("grok-4", "XAI_API_KEY")])
def test_missing_key_names_the_variable(monkeypatch, model, variable):
    monkeypatch.delenv(variable)
    with pytest.raises(ConfigError, match=f"set the environment variable {variable}$"):
        create_provider(Registry().get(model)).check()


def test_entry_can_name_another_key_variable(monkeypatch, server):
    monkeypatch.setenv("MY_PROXY_KEY", "proxy-key-0001")
    server.queue(reply("openai", "success"))
    e = entry("gpt-5-nano", server, api_key_env="MY_PROXY_KEY")
    run_complete(create_provider(e), classify_request())
    assert server.requests[0]["headers"]["authorization"] == "Bearer proxy-key-0001"


def test_project_models_file_overrides_and_adds_entries(tmp_path, server):
    models = tmp_path / "models.toml"
    models.write_text(
        '["gpt-5-nano"]\nprice_input = 0.04\nprices_as_of = "2027-01-01"\n\n'
        '["gpt-proxy"]\nprovider = "openai"\nmodel = "gpt-5-mini"\n'
        f'base_url = "{server.url}/v1"\ntemperature = 0.2\nprice_input = 0.25\nprice_output = 2.0\n'
        'params = { reasoning_effort = "low", service_tier = "flex" }\n'
    )
    registry = Registry(models)
    nano = registry.get("gpt-5-nano")
    assert (nano.price_input, nano.price_output, nano.prices_as_of) == (0.04, 0.40, "2027-01-01")
    assert nano.source == str(models) and nano.params == {"reasoning_effort": "minimal"}  # the rest is kept
    proxy = registry.get("gpt-proxy")
    server.queue(reply("openai", "success"))
    run_complete(create_provider(proxy), classify_request(temperature=proxy.temperature))
    body = server.requests[0]["json"]
    assert body["model"] == "gpt-5-mini" and body["temperature"] == 0.2
    assert body["reasoning_effort"] == "low" and body["service_tier"] == "flex"


def test_built_in_frontier_entries_are_priced_and_dated():
    registry = Registry()
    frontier = [
        registry.get(n)
        for n in registry.names()
        if registry.get(n).provider in ("openai", "xai", "anthropic", "gemini")
    ]
    assert {e.name for e in frontier} >= {
        "gpt-5-nano",
        "gpt-5-mini",
        "gpt-5.2",
        "gemini-2.5-flash-lite",
        "gemini-2.5-flash",
        "claude-haiku-4.5",
        "claude-sonnet-4.6",
        "claude-opus-4.6",
        "grok-4.1-fast",
        "grok-4",
    }
    for e in frontier:
        assert e.price_input and e.price_output and e.price_cached_input is not None, e.name
        assert e.prices_as_of and e.price_source, e.name
        assert e.temperature is None, e.name  # the provider's default
    assert registry.get("smollm2-135m").temperature == 0.0


# --- secrets and empty replies (what every API shares: test_provider_contract.py) ----
LOCAL_KEY = "sk-local-server-5e6f7a8b9c"
PASSWORD = "pw-s3cret-4242"


def local_entry(server: RecordedServer, monkeypatch, credentials: bool = False):
    """An openai-compatible entry (as vllm's are) with a key, and credentials in its base_url
    if asked (httpx then sends those as Basic auth instead of the key)."""
    from pytest_distill.models.registry import ModelEntry

    monkeypatch.setenv("LOCAL_SERVER_KEY", LOCAL_KEY)
    host = server.url.removeprefix("http://")
    return ModelEntry(
        name="local",
        provider="openai-compatible",
        model="m",
        api_key_env="LOCAL_SERVER_KEY",
        base_url=f"http://{f'distill:{PASSWORD}@' if credentials else ''}{host}/v1",
    )


BASIC = __import__("base64").b64encode(f"distill:{PASSWORD}".encode()).decode()


def secrets_of(key: str) -> list[str]:
    return [key, PASSWORD, BASIC]


def assert_clean(text: str, secrets: list[str]) -> None:
    assert "[REDACTED]" in text  # the echo happened, and was caught
    for secret in secrets:
        assert secret not in text


def sent_any(server: RecordedServer, secret: str) -> bool:
    return any(secret in echoed(r) for r in server.requests)


def test_credentials_in_base_url_never_reach_errors_or_answers(server, monkeypatch, fresh_secrets):
    server.responder = echo_in_error("openai")
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(local_entry(server, monkeypatch, credentials=True)), classify_request())
    assert sent_any(server, BASIC)  # httpx sent the URL's credentials as Basic auth
    assert_clean(str(info.value), secrets_of(LOCAL_KEY))
    server.responder = echo_in_answer("openai")
    completion = run_complete(
        create_provider(local_entry(server, monkeypatch, credentials=True)), classify_request(constraint=None)
    )
    assert_clean(completion.text, secrets_of(LOCAL_KEY))


def test_credentials_in_base_url_are_masked_where_the_entry_is_described(server, monkeypatch, fresh_secrets):
    e = local_entry(server, monkeypatch, credentials=True)
    described = create_provider(e).describe()
    assert PASSWORD not in json.dumps(described) and "[REDACTED]" in described["base_url"]
    assert PASSWORD not in json.dumps(e.public_dict())
    e.base_url = closed_port_url().replace("http://", f"http://distill:{PASSWORD}@") + "/v1"
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(e), classify_request())
    assert "connection error" in str(info.value) and PASSWORD not in str(info.value)


def without_answer(change):
    def respond(request):
        answer = reply("openai", "success")
        change(answer["body"])
        return answer

    return respond


def _null_content(body):
    body["choices"][0]["message"]["content"] = None


def _no_choices(body):
    body["choices"] = []


@pytest.mark.parametrize("kind", ["openai-compatible", "openai"])
@pytest.mark.parametrize(
    ("change", "reason"), [(_null_content, "content is null and there are no tool calls"), (_no_choices, "no choices")]
)
def test_a_reply_without_an_answer_is_an_error(server, monkeypatch, kind, change, reason):
    server.responder = without_answer(change)
    e = local_entry(server, monkeypatch) if kind == "openai-compatible" else entry("gpt-5-nano", server)
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(e), classify_request())
    assert str(info.value) == f"{e.name}: empty reply: {reason}"
    assert not info.value.retryable
