"""What every hosted provider promises, checked against each with its real SDK client and
recorded wire replies (tests/fixtures/) served on 127.0.0.1:

- an API error is a ProviderError naming the entry, with the HTTP status; 429, 5xx and
  overloaded are retryable, with the server's Retry-After; a bad key is not retryable;
- a malformed body is an error (never an empty answer that would score as a miss);
- a timeout and a refused connection are retryable errors;
- the SDK never retries behind the engine's back (one HTTP request per call: the engine
  owns retries and backoff), and the key never appears in the error;
- a key a server quotes back, in an error or in an answer (text and tool call), is redacted;
- an empty text the model sent is an answer, not an error.

Provider-specific mapping (request bodies, usage, tool calls) stays in test_providers_<api>.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_distill.models.base import ProviderError
from pytest_distill.models.registry import ModelEntry, Registry, create_provider

from helpers.http_fake import closed_port_url
from helpers.recorded import (
    TOOLS,
    RecordedServer,
    classify_request,
    echo_in_answer,
    echo_in_error,
    echoed,
    reply,
    run_complete,
    with_text,
)

KEY = "test-key-contract-0123456789"


@dataclass(frozen=True)
class Api:
    model: str  # the registry entry (built in, or written to models.toml when `entry_toml`)
    fixtures: str  # tests/fixtures/<fixtures>/
    key_variable: str
    path: str = ""  # what the SDK expects after the host (OpenAI's clients add no /v1 themselves)
    entry_toml: str = ""
    # error fixture -> (HTTP status, words from the API's message)
    errors: tuple[tuple[str, int, str], ...] = ()


OPENAI_ERRORS = (
    ("rate_limit", 429, "Rate limit reached for gpt-5-nano"),
    ("server_error", 500, "The server had an error"),
    ("invalid_key", 401, "Incorrect API key provided"),
)
APIS = {
    "openai": Api("gpt-5-nano", "openai", "OPENAI_API_KEY", "/v1", errors=OPENAI_ERRORS),
    "openai-compatible": Api(
        "proxy",
        "openai",
        "PROXY_API_KEY",
        "/v1",
        errors=OPENAI_ERRORS,
        entry_toml='[proxy]\nprovider = "openai-compatible"\nmodel = "gpt-5-nano"\napi_key_env = "PROXY_API_KEY"\n',
    ),
    "anthropic": Api(
        "claude-haiku-4.5",
        "anthropic",
        "ANTHROPIC_API_KEY",
        errors=(
            ("rate_limit", 429, "would exceed the rate limit"),
            ("server_error", 500, "Internal server error"),
            ("overloaded", 529, "Overloaded"),
            ("invalid_key", 401, "invalid x-api-key"),
        ),
    ),
    "gemini": Api(
        "gemini-2.5-flash",
        "gemini",
        "GEMINI_API_KEY",
        errors=(
            ("rate_limit", 429, "You exceeded your current quota"),  # Retry-After from the body's RetryInfo
            ("server_error", 500, "An internal error has occurred"),
            ("overloaded", 503, "The model is overloaded"),
            ("invalid_key", 400, "API key not valid"),
        ),
    ),
}
RETRY_AFTER_S = 2.0  # what every recorded 429 asks for


@pytest.fixture
def server() -> Iterator[RecordedServer]:
    with RecordedServer() as srv:
        yield srv


@pytest.fixture(autouse=True)
def keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GOOGLE_API_KEY", raising=False)  # Gemini would prefer it
    for api in APIS.values():
        monkeypatch.setenv(api.key_variable, KEY)


def entry_for(name: str, base_url: str, tmp_path: Path, **fields: object) -> ModelEntry:
    api = APIS[name]
    models = None
    if api.entry_toml:
        models = tmp_path / "models.toml"
        models.write_text(api.entry_toml + f'base_url = "{base_url}{api.path}"\n')
    entry = Registry(models).get(api.model)
    entry.base_url = base_url + api.path
    for field, value in fields.items():
        setattr(entry, field, value)
    return entry


def fail(entry: ModelEntry) -> ProviderError:
    """The ProviderError one call raises (it must raise: an error is never an answer)."""
    with pytest.raises(ProviderError) as info:
        run_complete(create_provider(entry), classify_request())
    assert str(info.value).startswith(f"{entry.name}: "), str(info.value)
    assert KEY not in str(info.value)
    return info.value


ERROR_CASES = [
    pytest.param(name, fixture, status, words, id=f"{name}-{fixture}")
    for name, api in APIS.items()
    for fixture, status, words in api.errors
]


@pytest.mark.parametrize(("name", "fixture", "status", "words"), ERROR_CASES)
def test_api_errors_are_classified(server, tmp_path, name, fixture, status, words):
    server.queue(reply(APIS[name].fixtures, fixture))
    error = fail(entry_for(name, server.url, tmp_path))
    assert error.status == status
    assert words in str(error)
    if fixture == "invalid_key":  # the same request would fail again
        assert (error.retryable, error.retry_after) == (False, None)
    elif fixture == "rate_limit":
        assert (error.retryable, error.retry_after) == (True, RETRY_AFTER_S)
    else:  # 5xx and overloaded: try again after the engine's backoff
        assert (error.retryable, error.retry_after) == (True, None)
    assert len(server.requests) == 1  # the SDK did not retry on its own


@pytest.mark.parametrize("name", list(APIS))
def test_the_retry_after_header_is_honoured(server, tmp_path, name):
    answer = reply(APIS[name].fixtures, "rate_limit")
    answer["headers"]["retry-after"] = "7"
    server.queue(answer)
    error = fail(entry_for(name, server.url, tmp_path))
    assert (error.retryable, error.retry_after) == (True, 7.0)


@pytest.mark.parametrize("name", list(APIS))
def test_a_malformed_body_is_an_error_not_a_miss(server, tmp_path, name):
    server.queue(reply(APIS[name].fixtures, "malformed"))
    error = fail(entry_for(name, server.url, tmp_path))
    assert (error.status, error.retryable) == (None, False)
    assert "malformed reply" in str(error)


@pytest.mark.parametrize("name", list(APIS))
def test_a_timeout_is_a_retryable_error(server, tmp_path, name):
    server.queue(reply(APIS[name].fixtures, "timeout"))  # answers after 3 s
    error = fail(entry_for(name, server.url, tmp_path, timeout_s=0.5))
    assert error.retryable and "timed out" in str(error)
    assert len(server.requests) == 1


@pytest.mark.parametrize("name", list(APIS))
def test_a_refused_connection_is_a_retryable_error(tmp_path, name):
    error = fail(entry_for(name, closed_port_url(), tmp_path))
    assert error.retryable and "connection error" in str(error)
    assert error.status is None


@pytest.mark.parametrize("name", list(APIS))
def test_success_is_an_answer(server, tmp_path, name):
    """The control for the cases above: the same setup with a recorded success answers."""
    server.queue(reply(APIS[name].fixtures, "success"))
    completion = run_complete(create_provider(entry_for(name, server.url, tmp_path)), classify_request())
    assert completion.text == "card_arrival"
    assert completion.usage.input_tokens > 0
    assert len(server.requests) == 1


@pytest.mark.parametrize("name", list(APIS))
def test_a_key_echoed_in_an_error_never_reaches_the_message(server, tmp_path, fresh_secrets, name):
    api = APIS[name]
    server.responder = echo_in_error(api.fixtures)
    error = fail(entry_for(name, server.url, tmp_path))
    assert KEY in echoed(server.requests[0])  # the echo happened, and was caught
    assert "[REDACTED]" in str(error)
    assert error.status == next(status for fixture, status, _ in api.errors if fixture == "invalid_key")


@pytest.mark.parametrize("name", list(APIS))
def test_a_key_echoed_in_an_answer_never_reaches_the_completion(server, tmp_path, fresh_secrets, name):
    server.responder = echo_in_answer(APIS[name].fixtures)
    provider = create_provider(entry_for(name, server.url, tmp_path))
    completion = run_complete(provider, classify_request(constraint=None, tools=TOOLS))
    assert KEY in echoed(server.requests[0])
    calls = json.dumps([c.to_dict() for c in completion.tool_calls])
    for shown in (completion.text, calls):
        assert "[REDACTED]" in shown and KEY not in shown
    assert completion.tool_calls[0].arguments["state"] == "on"


@pytest.mark.parametrize("name", list(APIS))
def test_an_empty_text_the_model_sent_is_an_answer(server, tmp_path, name):
    api = APIS[name]
    server.queue(with_text(api.fixtures, reply(api.fixtures, "success"), ""))
    completion = run_complete(create_provider(entry_for(name, server.url, tmp_path)), classify_request(constraint=None))
    assert completion.text == "" and completion.finish_reason == "stop"
