"""Helpers shared by the hosted-API providers (OpenAI, xAI, Anthropic, Gemini).

No SDK is imported here: each provider imports its own SDK lazily.
"""

from __future__ import annotations

import email.utils
import json
import os
import re
import time
from typing import Any

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Provider, ProviderError

REDACTED = "[REDACTED]"


def api_key(entry: Any, env_names: tuple[str, ...]) -> str:
    """The key from the entry's `api_key_env`, else the first set of the SDK's usual variables."""
    names = (entry.api_key_env,) if entry.api_key_env else env_names
    for name in names:
        value = os.environ.get(name)
        if value:
            return value
    wanted = " or ".join(names)
    raise ConfigError(f"model '{entry.name}' needs an API key: set the environment variable {wanted}")


def redact(text: str, secret: str | None) -> str:
    """Remove a key from a message: some APIs echo the key they were sent in error bodies."""
    if not secret or len(secret) < 4:
        return text
    return text.replace(secret, REDACTED)


def require_package(entry: Any, module: str) -> None:
    """Fail at session start, not at the first request, when the SDK is not installed."""
    import importlib.util

    try:
        found = importlib.util.find_spec(module)
    except (ImportError, ValueError):
        found = None
    if found is None:
        raise ConfigError(f"model '{entry.name}' needs the package '{module}', which is not installed: "
                          "pip install 'pytest-distill[api]'")


def known_key(entry: Any, env_names: tuple[str, ...]) -> str | None:
    """The key if set (for redaction), without failing when it is not."""
    try:
        return api_key(entry, env_names)
    except ConfigError:
        return None


def redacted_error(error: ProviderError, secret: str | None) -> ProviderError:
    """The same error with the key taken out of its message."""
    clean = redact(str(error), secret)
    if clean == str(error):
        return error
    return ProviderError(clean, retryable=error.retryable, retry_after=error.retry_after, status=error.status)


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
    """A hosted API behind its SDK's async client, made on first use.

    Subclasses name their SDK's module (`sdk_module`), key variables and `make_client`.
    """

    max_concurrency = 16  # hosted: limited by rate limits (rpm/tpm), not by a local server
    key_envs: tuple[str, ...] = ()
    sdk_module = ""

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._client: Any = None

    def check(self) -> None:
        require_package(self.entry, self.sdk_module)
        api_key(self.entry, self.key_envs)

    def make_client(self, key: str) -> Any:
        raise NotImplementedError

    def client(self) -> Any:
        if self._client is None:
            self._client = self.make_client(api_key(self.entry, self.key_envs))
        return self._client

    def start(self) -> None:
        self.client()

    def close(self) -> None:
        self._client = None  # its httpx client goes with the engine's event loop

    def describe(self) -> dict[str, Any]:
        return {"provider": self.entry.provider, "model": self.entry.model, "base_url": self.entry.base_url,
                "params": self.entry.params, "constraint_style": self.entry.constraint_style}


def status_error(name: str, exc: Any) -> ProviderError:
    """An HTTP status error of the openai or anthropic SDK (same shape): message, retry decision."""
    status = exc.status_code
    message = error_body_message(exc.body) or exc.message
    return ProviderError(
        f"{name}: HTTP {status}: {message}",
        retryable=is_retryable_status(status),
        retry_after=retry_after_seconds(exc.response.headers if exc.response is not None else None),
        status=status,
    )
