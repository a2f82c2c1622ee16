"""Any /v1/chat/completions server (vLLM, llama.cpp, a hosted endpoint), via the `openai` SDK."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion, Provider, ProviderError, Request, ToolCall, Usage, arguments_from_json
from pytest_distill.models.chat import tool_call_from_json, tools_as_json_schema, with_tool_results

TOOL_STYLES = ("native", "json_schema")
TEXT_TOOL_MODES = ("json_schema_tool_call", "text_tool_call")  # tools sent as text: calls parsed from it


def _choice_schema(choices: tuple[str, ...]) -> dict[str, Any]:
    return {
        "type": "object",
        "properties": {"label": {"type": "string", "enum": list(choices)}},
        "required": ["label"],
        "additionalProperties": False,
    }


class OpenAICompatibleProvider(Provider):
    max_concurrency = 8
    default_key_env: str | None = None  # subclasses name their SDK's usual variable
    default_base_url: str | None = None

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        self._client: Any = None
        if getattr(entry, "tool_style", "native") not in TOOL_STYLES:
            raise ConfigError(f"model '{entry.name}': tool_style must be one of {', '.join(TOOL_STYLES)}, "
                              f"got {entry.tool_style!r}")

    # --- configuration -------------------------------------------------
    @property
    def key_env(self) -> str | None:
        return self.entry.api_key_env or self.default_key_env

    def api_key(self) -> str:
        env = self.key_env
        if env is None:
            return "not-needed"  # local servers ignore the key, the SDK insists on one
        key = os.environ.get(env)
        if not key:
            raise ConfigError(f"model '{self.entry.name}' needs an API key: set the environment variable {env}")
        return key

    def client(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            base_url = self.entry.base_url or self.default_base_url
            if base_url is None and type(self) is OpenAICompatibleProvider:
                raise ConfigError(f"model '{self.entry.name}' (openai-compatible) needs base_url")
            # Retries are the engine's (it counts them and honours Retry-After).
            self._client = AsyncOpenAI(
                api_key=self.api_key(), base_url=base_url, max_retries=0, timeout=self.entry.timeout_s
            )
        return self._client

    def start(self) -> None:
        self.client()

    def close(self) -> None:
        self._client = None  # httpx clients close with their event loop

    def describe(self) -> dict[str, Any]:
        return {
            "provider": self.entry.provider,
            "model": self.entry.model,
            "base_url": self.entry.base_url or self.default_base_url,
        }

    # --- request mapping -----------------------------------------------
    def build_body(self, request: Request) -> tuple[dict[str, Any], str | None]:
        if request.tools and request.tool_choice != "none" and getattr(self.entry, "tool_style", "native") == "json_schema":
            # the base mapping only: a subclass's build_body wraps this call once already
            body, mode = OpenAICompatibleProvider.build_body(self, tools_as_json_schema(request))
            return body, "json_schema_tool_call" if mode else "text_tool_call"
        messages = ([{"role": "system", "content": request.system}] if request.system else []) + with_tool_results(
            list(request.messages)
        )
        body: dict[str, Any] = {"model": self.entry.model, "messages": messages}
        if request.temperature is not None:
            body["temperature"] = request.temperature
        body["max_tokens"] = request.max_tokens
        if request.seed is not None:
            body["seed"] = request.seed
        extra_body: dict[str, Any] = dict(self.entry.params)
        mode: str | None = None
        if request.tools:
            body["tools"] = list(request.tools)
            if request.tool_choice:
                body["tool_choice"] = request.tool_choice
            mode = "native_tools"
        elif request.constraint is not None:
            mode = self._constrain(request, body, extra_body)
        extra_body.update(request.extra)
        if extra_body:
            body["extra_body"] = extra_body
        return body, mode

    def _constrain(self, request: Request, body: dict[str, Any], extra_body: dict[str, Any]) -> str | None:
        constraint = request.constraint
        assert constraint is not None
        style = self.entry.constraint_style
        schema = _choice_schema(constraint.choices) if constraint.kind == "choice" else constraint.schema
        if style == "none":
            return None
        if style == "structured_outputs":
            if constraint.kind == "choice":
                extra_body["structured_outputs"] = {"choice": list(constraint.choices)}
                return "structured_outputs_choice"
            extra_body["structured_outputs"] = {"json": schema}
            return "structured_outputs_json"
        if style == "json_object_schema":
            body["response_format"] = {"type": "json_object", "schema": schema}
            return "json_object_schema"
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "answer", "schema": schema, "strict": True},
        }
        return "json_schema"

    # --- the call --------------------------------------------------------
    async def complete(self, request: Request) -> Completion:
        body, mode = self.build_body(request)
        started = time.perf_counter()
        try:
            reply = await self.client().chat.completions.create(**body)
        except Exception as exc:  # noqa: BLE001 - mapped to retry decisions below
            raise self.map_error(exc) from None
        latency = time.perf_counter() - started
        return self.parse_reply(reply, latency, mode, request)

    def parse_reply(self, reply: Any, latency: float, mode: str | None, request: Request) -> Completion:
        if not getattr(reply, "choices", None):
            raise ProviderError(f"{self.entry.name}: reply has no choices")
        choice = reply.choices[0]
        message = choice.message
        text = message.content or ""
        calls = [
            ToolCall(c.function.name, arguments_from_json(c.function.arguments))
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        usage = reply.usage
        details = getattr(usage, "prompt_tokens_details", None) if usage else None
        out_details = getattr(usage, "completion_tokens_details", None) if usage else None
        completion = Completion(
            text=text,
            tool_calls=calls,
            usage=Usage(
                input_tokens=(usage.prompt_tokens or 0) if usage else 0,
                output_tokens=(usage.completion_tokens or 0) if usage else 0,
                cached_tokens=(getattr(details, "cached_tokens", 0) or 0) if details else 0,
                reasoning_tokens=(getattr(out_details, "reasoning_tokens", 0) or 0) if out_details else 0,
            ),
            latency_s=latency,
            finish_reason=choice.finish_reason or "stop",
            constrained=mode,
            model=getattr(reply, "model", "") or self.entry.model,
        )
        if mode in TEXT_TOOL_MODES and not calls:
            call = tool_call_from_json(text)
            completion.tool_calls = [call] if call is not None else []
        if mode and request.constraint is not None and request.constraint.kind == "choice" and mode != "structured_outputs_choice":
            try:
                value = json.loads(text)
            except ValueError:
                value = None
            if isinstance(value, dict) and isinstance(value.get("label"), str):
                completion.text = value["label"]
        return completion

    def map_error(self, exc: Exception) -> ProviderError:
        """The retry decision for this SDK's exceptions."""
        import openai

        name = self.entry.name
        if isinstance(exc, openai.APITimeoutError):
            return ProviderError(f"{name}: request timed out after {self.entry.timeout_s:g}s", retryable=True)
        if isinstance(exc, openai.APIConnectionError):
            return ProviderError(f"{name}: connection error: {exc}", retryable=True)
        if isinstance(exc, openai.APIStatusError):
            status = exc.status_code
            retry_after = _retry_after(exc.response.headers if exc.response is not None else {})
            retryable = status in (408, 409, 429) or status >= 500
            return ProviderError(
                f"{name}: HTTP {status}: {_error_message(exc)}", retryable=retryable, retry_after=retry_after, status=status
            )
        if isinstance(exc, (openai.APIResponseValidationError, ValueError, json.JSONDecodeError)):
            return ProviderError(f"{name}: malformed reply: {exc}")
        return ProviderError(f"{name}: {type(exc).__name__}: {exc}")


def _retry_after(headers: Any) -> float | None:
    for key in ("retry-after-ms", "retry-after"):
        value = headers.get(key) if headers else None
        if value is None:
            continue
        try:
            seconds = float(value)
        except ValueError:
            continue
        return seconds / 1000 if key == "retry-after-ms" else seconds
    return None


def _error_message(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])
    return str(getattr(exc, "message", exc))
