"""The engine: retries, backoff and Retry-After, timeouts, in-flight bounds, rate limits, cache.

First with a scripted fake provider (exact, no waiting: the engine's sleep and clock are
injected), then with the real SDKs against recorded replies on 127.0.0.1.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from typing import Any, ClassVar

import pytest

from pytest_distill.core import redact
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import (
    Completion,
    Provider,
    ProviderError,
    Request,
    Usage,
)
from pytest_distill.models.registry import PROVIDERS, ModelEntry, Registry
from pytest_distill.runtime.engine import BACKOFF_CAP_S, Engine, _Limits, request_key

from helpers.recorded import RecordedServer, reply


class FakeProvider(Provider):
    """Plays a script: each call takes the next item (the last repeats). An exception is
    raised, a Completion returned, a float awaited (seconds) and then answered."""

    max_concurrency = 4
    script: ClassVar[list[Any]] = []
    clock = None

    def __init__(self, entry) -> None:
        super().__init__(entry)
        self.calls = 0
        self.in_flight = 0
        self.max_in_flight = 0
        self.starts: list[float] = []

    async def complete(self, request: Request) -> Completion:
        step = self.script[min(self.calls, len(self.script) - 1)]
        self.calls += 1
        if FakeProvider.clock is not None:
            self.starts.append(FakeProvider.clock())
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if isinstance(step, float):
                await asyncio.sleep(step)
                step = Completion(text="slow")
            if isinstance(step, BaseException):
                raise step
            return dataclasses.replace(step, usage=Usage(**vars(step.usage)), tool_calls=list(step.tool_calls))
        finally:
            self.in_flight -= 1


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setitem(PROVIDERS, "fake", f"{__name__}:FakeProvider")
    monkeypatch.setattr(FakeProvider, "clock", None)

    def make(script, **fields) -> ModelEntry:
        monkeypatch.setattr(FakeProvider, "script", list(script))
        return ModelEntry(name="fake", provider="fake", model="m", **fields)

    return make


class Sleeps:
    """An injected sleep: records what the engine asked for and advances a fake clock."""

    def __init__(self) -> None:
        self.calls: list[float] = []
        self.now = 0.0

    async def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def clock(self) -> float:
        return self.now


@pytest.fixture
def sleeps():
    return Sleeps()


@pytest.fixture
def engine(sleeps):
    e = Engine(sleep=sleeps.sleep, clock=sleeps.clock)
    yield e
    e.close()


REQUEST = Request(messages=({"role": "user", "content": "hi"},), max_tokens=8)
OK = Completion(text="ok", usage=Usage(input_tokens=10, output_tokens=2))


def test_retries_honour_retry_after_then_back_off_with_jitter(fake, engine, sleeps):
    entry = fake(
        [
            ProviderError("HTTP 429", retryable=True, retry_after=2.5, status=429),
            ProviderError("HTTP 500", retryable=True, status=500),
            OK,
        ]
    )
    completion = engine.complete(entry, REQUEST)
    assert completion.text == "ok" and completion.finished_at > 0
    assert engine.provider(entry).calls == 3 and engine.retries == 2
    first, second = sleeps.calls
    assert 2.5 <= first <= 2.5 * 1.1  # never before the server's time, a little jitter after it
    assert 0 <= second <= 2.0  # attempt 2: full jitter up to base x 2


def test_backoff_is_exponential_with_full_jitter_and_capped():
    random.seed(4)
    for attempt in range(1, 10):
        ceiling = min(BACKOFF_CAP_S, 2 ** (attempt - 1))
        waits = [Engine.backoff(attempt, None) for _ in range(200)]
        assert all(0 <= w <= ceiling for w in waits)
        assert max(waits) > ceiling * 0.8  # spread over the whole range: jitter
    assert Engine.backoff(1, 0.0) < 0.01 and Engine.backoff(1, 10_000) <= BACKOFF_CAP_S * 5 * 1.1


def test_after_the_last_retry_the_error_carries_the_provider_message(fake, engine):
    entry = fake([ProviderError("fake: HTTP 503: busy", retryable=True, status=503)], max_retries=2)
    with pytest.raises(ProviderError) as info:
        engine.complete(entry, REQUEST)
    assert str(info.value) == "fake: HTTP 503: busy (after 3 attempts)"
    assert info.value.status == 503
    assert engine.provider(entry).calls == 3


def test_a_non_retryable_error_is_not_retried(fake, engine, sleeps):
    entry = fake([ProviderError("fake: HTTP 400: bad request", status=400), OK])
    with pytest.raises(ProviderError, match=r"^fake: HTTP 400: bad request$"):
        engine.complete(entry, REQUEST)
    assert engine.provider(entry).calls == 1 and sleeps.calls == []


def test_timeout_per_request_is_retried_then_an_error(fake, engine):
    entry = fake([5.0], timeout_s=0.05, max_retries=1)
    with pytest.raises(ProviderError, match=r"no answer within 0.05s \(after 2 attempts\)"):
        engine.complete(entry, REQUEST)
    assert engine.provider(entry).calls == 2


def test_a_bug_in_our_code_propagates_unchanged_with_its_traceback(fake, engine):
    bug = KeyError("choices")
    entry = fake([bug, OK], max_retries=3)
    with pytest.raises(KeyError) as info:
        engine.complete(entry, REQUEST)
    assert info.value is bug  # not wrapped into a ProviderError: never the model's error rate
    assert any(frame.name == "complete" for frame in info.traceback)  # where it was raised
    assert engine.provider(entry).calls == 1  # and not retried


def test_a_setup_error_found_late_is_a_one_line_provider_error(fake, engine):
    entry = fake([ConfigError("llama-cpp-python is not installed")])
    with pytest.raises(ProviderError, match=r"^fake: llama-cpp-python is not installed$"):
        engine.complete(entry, REQUEST)


SECRET = "sk-echoed-secret-0123456789"


@pytest.fixture
def secret():
    redact.register(SECRET)
    yield SECRET
    redact.clear()


def test_errors_are_redacted_before_they_are_returned(fake, engine, secret):
    entry = fake([ProviderError(f"fake: HTTP 401: bad key {secret}", status=401)])
    with pytest.raises(ProviderError) as info:
        engine.complete(entry, REQUEST)
    assert str(info.value) == f"fake: HTTP 401: bad key {redact.MARKER}" and info.value.status == 401

    retried = fake([ProviderError(f"fake: HTTP 503: {secret}", retryable=True, status=503)], max_retries=1)
    retried.name = "fake-retried"
    with pytest.raises(ProviderError) as info:
        engine.complete(retried, REQUEST)
    assert str(info.value) == f"fake: HTTP 503: {redact.MARKER} (after 2 attempts)"


def test_answers_are_redacted_before_the_cache_and_the_caller_see_them(fake, secret):
    from pytest_distill.models.base import ToolCall

    echoed = Completion(
        text=f"your key is {secret}",
        model=f"m-{secret}",
        tool_calls=[ToolCall("login", {"password": secret, "user": "ann", "keys": [secret]})],
    )
    cache = DictCache()
    entry = fake([echoed])
    engine = Engine(cache=cache)
    try:
        answer = engine.complete(entry, REQUEST)
        hit = engine.complete(entry, REQUEST)
    finally:
        engine.close()
    assert secret not in repr(answer) and secret not in repr(cache.data) and secret not in repr(hit)
    assert answer.text == f"your key is {redact.MARKER}"
    # masked because it *is* the secret; an argument is never masked for its name alone
    assert answer.tool_calls[0].arguments == {"password": redact.MARKER, "user": "ann", "keys": [redact.MARKER]}
    assert hit.cached and hit.tool_calls[0].arguments == answer.tool_calls[0].arguments


def test_an_argument_named_like_a_secret_is_still_the_models_answer(fake, engine, secret):
    from pytest_distill.models.base import ToolCall

    entry = fake([Completion(text="", tool_calls=[ToolCall("set", {"password": "hunter22", "token": "abc"})])])
    assert engine.complete(entry, REQUEST).tool_calls[0].arguments == {"password": "hunter22", "token": "abc"}


@pytest.mark.parametrize(("limit", "expected"), [(3, 3), (None, FakeProvider.max_concurrency)])
def test_in_flight_requests_are_bounded(fake, limit, expected):
    entry = fake([0.02], max_concurrency=limit)
    engine = Engine()
    try:
        futures = [engine.submit(entry, REQUEST, repetition) for repetition in range(1, 13)]
        assert all(f.result(timeout=10).text == "slow" for f in futures)
        assert engine.provider(entry).max_in_flight == expected
    finally:
        engine.close()


def test_requests_per_minute(fake, engine, sleeps, monkeypatch):
    # The times the limiter grants: with fake time, a provider's own start can be stamped
    # after a concurrent waiter has already moved the shared clock on.
    granted = []
    original = _Limits.wait_for_budget

    async def recording(self, estimated):
        slot = await original(self, estimated)
        granted.append(slot[0])
        return slot

    monkeypatch.setattr(_Limits, "wait_for_budget", recording)
    entry = fake([OK], requests_per_minute=2)
    futures = [engine.submit(entry, REQUEST, repetition) for repetition in range(1, 6)]
    for f in futures:
        f.result(timeout=10)
    assert sorted(granted) == [0, 0, 60, 60, 120]


def test_tokens_per_minute_counts_real_usage(fake, engine, sleeps):
    FakeProvider.clock = sleeps.clock
    big = Completion(text="ok", usage=Usage(input_tokens=500, output_tokens=100))
    entry = fake([big], tokens_per_minute=1000, max_concurrency=1)
    for repetition in (1, 2, 3):
        engine.complete(entry, REQUEST, repetition)
    # 600 used + 600 used: the third request waits for the first to leave the window
    assert engine.provider(entry).starts == [0, 0, 60]


def test_identical_requests_share_one_call(fake, engine):
    entry = fake([OK])
    first, again = engine.submit(entry, REQUEST, 1), engine.submit(entry, REQUEST, 1)
    assert first is again
    engine.complete(entry, REQUEST, 2)
    first.result(timeout=10)
    assert engine.provider(entry).calls == 2


class DictCache:
    def __init__(self, replay_only: bool = False) -> None:
        self.data: dict = {}
        self.replay_only = replay_only
        self.problem = None

    def get(self, key):
        return self.data.get(key)

    def put(self, key, value):
        self.data[key] = value


def test_cache_hits_skip_the_provider_and_are_marked(fake):
    cache = DictCache()
    entry = fake([OK])
    engine = Engine(cache=cache)
    try:
        fresh = engine.complete(entry, REQUEST, 1)
        hit = engine.complete(entry, REQUEST, 1)
        other_rep = engine.complete(entry, REQUEST, 2)
        assert not fresh.cached and hit.cached and not other_rep.cached
        assert hit.text == "ok" and hit.usage.input_tokens == 10
        assert engine.provider(entry).calls == 2 and len(cache.data) == 2
    finally:
        engine.close()


def test_errors_are_not_cached_and_replay_misses_are_errors(fake):
    cache = DictCache()
    entry = fake([ProviderError("fake: HTTP 400", status=400)])
    engine = Engine(cache=cache)
    try:
        with pytest.raises(ProviderError):
            engine.complete(entry, REQUEST)
        assert cache.data == {}
        cache.replay_only = True
        with pytest.raises(ProviderError, match="no cached answer for this request"):
            engine.complete(entry, REQUEST, 2)
        assert engine.provider(entry).calls == 1
    finally:
        engine.close()


def test_request_key_covers_everything_that_decides_an_answer(fake):
    entry = fake([OK])
    engine = Engine()
    provider = engine.provider(entry)
    base = request_key(provider, REQUEST, 1)
    assert base == request_key(provider, Request(messages=({"role": "user", "content": "hi"},), max_tokens=8), 1)
    variants = [
        request_key(provider, REQUEST, 2),
        request_key(provider, REQUEST.with_params(temperature=0.0), 1),
        request_key(provider, REQUEST.with_params(seed=1), 1),
        request_key(provider, REQUEST.with_params(max_tokens=9), 1),
        request_key(provider, REQUEST.with_params(system="s"), 1),
        request_key(provider, REQUEST.with_params(messages=({"role": "user", "content": "hello"},)), 1),
    ]
    entry.params = {"reasoning_effort": "low"}
    variants.append(request_key(provider, REQUEST, 1))
    entry.params = {}
    entry.model = "other"
    variants.append(request_key(provider, REQUEST, 1))
    assert len({base, *variants}) == len(variants) + 1
    engine.close()


# --- the real SDKs, through the engine -------------------------------------------
SDK_CASES = {
    "claude-haiku-4.5": ("anthropic", "ANTHROPIC_API_KEY", "", ["rate_limit", "server_error", "success"], 2.0),
    "gpt-5-nano": ("openai", "OPENAI_API_KEY", "/v1", ["rate_limit", "server_error", "success"], 2.0),
    "grok-4.1-fast": ("xai", "XAI_API_KEY", "/v1", ["rate_limit", "success"], 1.0),
    "gemini-2.5-flash": ("gemini", "GEMINI_API_KEY", "", ["rate_limit", "server_error", "success"], 2.0),
}


@pytest.mark.parametrize("model", list(SDK_CASES))
def test_real_sdk_retries_honour_retry_after(monkeypatch, sleeps, model):
    api, variable, suffix, script, retry_after = SDK_CASES[model]
    monkeypatch.setenv(variable, "test-key-0123456789")
    entry = Registry().get(model)
    engine = Engine(sleep=sleeps.sleep)
    with RecordedServer() as server:
        entry.base_url = server.url + suffix
        server.queue(*[reply(api, name) for name in script])
        try:
            completion = engine.complete(entry, REQUEST)
        finally:
            engine.close()
        assert len(server.requests) == len(script)
    assert completion.text and completion.usage.input_tokens > 0
    assert engine.retries == len(script) - 1
    assert retry_after <= sleeps.calls[0] <= retry_after * 1.1  # the server's Retry-After


@pytest.mark.parametrize(
    ("model", "fixture", "message"),
    [
        ("claude-haiku-4.5", "overloaded", "claude-haiku-4.5: HTTP 529: Overloaded (after 3 attempts)"),
        (
            "gpt-5-nano",
            "server_error",
            "gpt-5-nano: HTTP 500: The server had an error while processing your request. Sorry about that! (after 3 attempts)",
        ),
        (
            "gemini-2.5-flash",
            "overloaded",
            "gemini-2.5-flash: HTTP 503: The model is overloaded. Please try again later. (after 3 attempts)",
        ),
    ],
)
def test_real_sdk_gives_up_with_the_provider_message(monkeypatch, sleeps, model, fixture, message):
    api, variable, suffix, _, _ = SDK_CASES[model]
    monkeypatch.setenv(variable, "test-key-0123456789")
    entry = Registry().get(model)
    entry.max_retries = 2
    engine = Engine(sleep=sleeps.sleep)
    with RecordedServer() as server:
        entry.base_url = server.url + suffix
        server.queue(reply(api, fixture))
        try:
            with pytest.raises(ProviderError) as info:
                engine.complete(entry, REQUEST)
        finally:
            engine.close()
        assert len(server.requests) == 3
    assert str(info.value) == message


def test_real_sdk_timeout_through_the_engine(monkeypatch, sleeps):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key-0123456789")
    entry = Registry().get("claude-haiku-4.5")
    entry.timeout_s, entry.max_retries = 0.3, 1
    engine = Engine(sleep=sleeps.sleep)
    with RecordedServer() as server:
        entry.base_url = server.url
        server.queue(reply("anthropic", "timeout"), reply("anthropic", "success"))
        try:
            completion = engine.complete(entry, REQUEST)
        finally:
            engine.close()
    assert completion.text and engine.retries == 1
