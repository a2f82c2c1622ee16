"""The one base for providers behind an HTTP API and its SDK's async client: OpenAI,
xAI, Anthropic, Gemini and any OpenAI-compatible server (vLLM, llama.cpp's, a proxy).

It owns what they share: the key (the entry's `api_key_env`, else the SDK's usual
variables), registered for redaction the moment it is read; the client, made on first
use; `complete()` as build_body -> send -> parse_reply, with map_error for failures;
one Retry-After parser, one HTTP status -> ProviderError mapping, and the one mapping of
the exceptions the openai and anthropic SDKs share.

No SDK is imported here: each provider imports its own SDK lazily.
"""

from __future__ import annotations

import email.utils
import importlib.util
import json
import os
import re
import time
from typing import Any

from pytest_distill.core import redact
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import (
    Completion,
    Provider,
    ProviderError,
    Request,
    WireRequest,
    redacted,
)


def api_key(entry: Any, env_names: tuple[str, ...]) -> str:
    """The key from the entry's `api_key_env`, else the first set of the SDK's usual variables."""
    names = (entry.api_key_env,) if entry.api_key_env else env_names
    for name in names:
        value = os.environ.get(name)
        if value:
            redact.register(value)
            return value
    wanted = " or ".join(names)
    raise ConfigError(f"model '{entry.name}' needs an API key: set the environment variable {wanted}")


def require_package(entry: Any, module: str) -> None:
    """Fail at session start, not at the first request, when the SDK is not installed."""
    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(
            f"model '{entry.name}' needs the package '{module}', which is not installed: "
            "pip install 'pytest-distill[api]'"
        )


def retry_after_seconds(headers: Any) -> float | None:
    """Retry-After as seconds: `retry-after-ms`, `retry-after` in seconds or as an HTTP date."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def is_retryable_status(status: int) -> bool:
    # 408 request timeout, 409 lock contention, 429 rate limit, 5xx (incl. Anthropic's 529)
    return status in (408, 409, 429) or status >= 500


def http_error(
    name: str, status: int, message: str, headers: Any = None, retry_after: float | None = None
) -> ProviderError:
    """The one mapping of an HTTP error status to a ProviderError and its retry decision."""
    header_wait = retry_after_seconds(headers)
    return ProviderError(
        f"{name}: HTTP {status}: {message}",
        retryable=is_retryable_status(status),
        retry_after=header_wait if header_wait is not None else retry_after,
        status=status,
    )


def status_error(name: str, exc: Any) -> ProviderError:
    """An HTTP status error of the openai or anthropic SDK (same shape)."""
    message = error_body_message(exc.body) or exc.message
    headers = exc.response.headers if exc.response is not None else None
    return http_error(name, exc.status_code, message, headers)


def unwrap_label(text: str) -> str:
    """The label from a constrained `{"label": ...}` reply; the text itself otherwise."""
    try:
        value = json.loads(text)
    except ValueError:
        return text  # cut off by max_tokens, or a refusal: leave it for the scorer
    if isinstance(value, dict) and isinstance(value.get("label"), str):
        return value["label"]
    return text


def choice_schema(choices: tuple[str, ...] | list[str]) -> dict[str, Any]:
    """An object with one enum field: every structured-output API takes it, bare enums not."""
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(choices)}},
        "required": ["label"],
        "additionalProperties": False,
    }


_DURATION = re.compile(r"^\s*([0-9.]+)s\s*$")


def parse_duration(value: Any) -> float | None:
    """A google.protobuf.Duration in JSON form ("2s", "0.5s") as seconds."""
    match = _DURATION.match(str(value)) if value is not None else None
    return float(match.group(1)) if match else None


def error_body_message(body: Any) -> str | None:
    """The human message inside an API error body ({"error": {"message"}} or {"error": "..."});
    SDKs may hand over the inner part only."""
    if isinstance(body, str) and body.strip():
        return body
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
        if isinstance(inner, str):
            return inner
    return None


class HostedProvider(Provider):
    """A model behind an HTTP API, reached through its SDK's async client.

    Subclasses name their SDK (`sdk_module`), its key variables (`key_envs`), and
    implement make_client, build_body, send, parse_reply and map_error.
    """

    max_concurrency = 16  # hosted: limited by rate limits (rpm/tpm), not by a local server
    key_envs: tuple[str, ...] = ()  # the SDK's usual variables, in its order of preference
    key_required = True  # False: a server that ignores the key unless the entry names one
    sdk_module = ""
    default_base_url: str | None = None

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._client: Any = None

    # --- configuration -------------------------------------------------
    def api_key(self) -> str:
        if not self.key_required and not self.entry.api_key_env:
            return "not-needed"  # local servers ignore the key; the SDKs insist on one
        return api_key(self.entry, self.key_envs)

    def base_url(self) -> str | None:
        return self.entry.base_url or self.default_base_url

    def check(self) -> None:
        require_package(self.entry, self.sdk_module)
        self.api_key()

    def make_client(self, key: str) -> Any:
        raise NotImplementedError

    def client(self) -> Any:
        if self._client is None:
            redact.register_url(self.base_url())
            self._client = self.make_client(self.api_key())
        return self._client

    def start(self) -> None:
        self.client()

    def close(self) -> None:
        self._client = None  # its httpx client goes with the engine's event loop

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.entry.provider,
            "model": self.entry.model,
            "base_url": redact.url(self.base_url()),
            "params": redact.value(self.entry.params),
            "constraint_style": self.entry.constraint_style,
        }

    # --- the call ------------------------------------------------------
    async def send(self, wire: WireRequest) -> Any:
        """One SDK call with the wire body; returns the SDK's reply object."""
        raise NotImplementedError

    async def complete(self, request: Request) -> Completion:
        wire = WireRequest(*self.build_body(request))  # also from an override that returns a plain pair
        started = time.perf_counter()
        try:
            raw = await self.send(wire)
        except ProviderError:
            raise
        except Exception as exc:
            raise self.map_error(exc) from None
        return redacted(self.parse_reply(raw, time.perf_counter() - started, wire.mode, request))

    # --- errors ------------------------------------------------------
    def timed_out(self) -> ProviderError:
        return ProviderError(f"{self.entry.name}: request timed out after {self.entry.timeout_s:g}s", retryable=True)

    def map_sdk_error(self, exc: Exception, sdk: Any) -> ProviderError:
        """The retry decision for the exceptions of the `openai` or `anthropic` SDK module
        `sdk`: both name the same exception classes (APITimeoutError, a kind of
        APIConnectionError; APIStatusError; APIResponseValidationError)."""
        name = self.entry.name
        if isinstance(exc, sdk.APITimeoutError):
            return self.timed_out()
        if isinstance(exc, sdk.APIConnectionError):
            return ProviderError(f"{name}: connection error: {exc}", retryable=True)
        if isinstance(exc, sdk.APIStatusError):
            return status_error(name, exc)
        if isinstance(exc, (sdk.APIResponseValidationError, ValueError)):
            return ProviderError(f"{name}: malformed reply: {exc}")
        return super().map_error(exc)

    def empty_reply(self, what: str) -> ProviderError:
        """A reply that carries no answer at all (not even an empty string the model chose)."""
        return ProviderError(f"{self.entry.name}: empty reply: {what}")
