"""Any /v1/chat/completions server (vLLM, llama.cpp, a hosted endpoint), via the `openai` SDK."""

from __future__ import annotations

import time
from typing import Any

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import (
    Completion,
    ProviderError,
    Request,
    StreamTiming,
    ToolCall,
    Usage,
    WireRequest,
    arguments_from_json,
)
from pytest_distill.models.chat import (
    tool_call_from_json,
    tools_as_json_schema,
    with_tool_results,
)
from pytest_distill.models.providers.hosted import (
    HostedProvider,
    choice_schema,
    unwrap_label,
)

TOOL_STYLES = ("native", "json_schema")
TEXT_TOOL_MODES = ("json_schema_tool_call", "text_tool_call")  # tools sent as text: calls parsed from it
# Finish reasons under which an empty message is still the model's answer: a filter
# stopped it, or it spent max_tokens (e.g. on reasoning) before saying anything.
ANSWERED_EMPTY = ("content_filter", "length")


class OpenAICompatibleProvider(HostedProvider):
    max_concurrency = 8
    key_required = False  # only when the entry names api_key_env
    sdk_module = "openai"
    supports_streaming = True

    def __init__(self, entry: Any) -> None:
        super().__init__(entry)
        if getattr(entry, "tool_style", "native") not in TOOL_STYLES:
            raise ConfigError(
                f"model '{entry.name}': tool_style must be one of {', '.join(TOOL_STYLES)}, got {entry.tool_style!r}"
            )

    def make_client(self, key: str) -> Any:
        from openai import AsyncOpenAI

        base_url = self.base_url()
        if base_url is None and type(self) is OpenAICompatibleProvider:
            raise ConfigError(f"model '{self.entry.name}' (openai-compatible) needs base_url")
        # Retries are the engine's (it counts them and honours Retry-After).
        return AsyncOpenAI(api_key=key, base_url=base_url, max_retries=0, timeout=self.entry.timeout_s)

    # --- request mapping -----------------------------------------------
    def build_body(self, request: Request) -> WireRequest:
        if (
            request.tools
            and request.tool_choice != "none"
            and getattr(self.entry, "tool_style", "native") == "json_schema"
        ):
            # the base mapping only: a subclass's build_body wraps this call once already
            as_text = OpenAICompatibleProvider.build_body(self, tools_as_json_schema(request))
            return WireRequest(as_text.body, "json_schema_tool_call" if as_text.mode else "text_tool_call")
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
        return WireRequest(body, mode)

    def _constrain(self, request: Request, body: dict[str, Any], extra_body: dict[str, Any]) -> str | None:
        constraint = request.constraint
        assert constraint is not None
        style = self.entry.constraint_style
        schema = choice_schema(constraint.choices) if constraint.kind == "choice" else constraint.schema
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
    async def send(self, wire: WireRequest) -> Any:
        return await self.client().chat.completions.create(**wire.body)

    async def stream(self, request: Request) -> StreamTiming:
        body = dict(self.build_body(request).body, stream=True, stream_options={"include_usage": True})
        started = time.perf_counter()
        ttft: float | None = None
        output_tokens = chunks = 0
        try:
            replies = await self.client().chat.completions.create(**body)
            async for chunk in replies:
                if chunk.choices:
                    delta = chunk.choices[0].delta
                    if getattr(delta, "content", None) or getattr(delta, "tool_calls", None):
                        chunks += 1
                        if ttft is None:
                            ttft = time.perf_counter() - started
                usage = getattr(chunk, "usage", None)
                if usage is not None and usage.completion_tokens is not None:
                    output_tokens = usage.completion_tokens
        except Exception as exc:
            raise self.map_error(exc) from None
        return StreamTiming(latency_s=time.perf_counter() - started, ttft_s=ttft, output_tokens=output_tokens or chunks)

    def parse_reply(self, raw: Any, latency_s: float, mode: str | None, request: Request) -> Completion:
        reply = raw
        if not getattr(reply, "choices", None):
            raise self.empty_reply("no choices")
        choice = reply.choices[0]
        message = choice.message
        if message is None:
            raise self.empty_reply("no message")
        calls = [
            ToolCall(c.function.name, arguments_from_json(c.function.arguments))
            for c in (message.tool_calls or [])
            if getattr(c, "function", None) is not None
        ]
        if (
            message.content is None
            and not calls
            and not getattr(message, "refusal", None)
            and choice.finish_reason not in ANSWERED_EMPTY
        ):
            raise self.empty_reply("content is null and there are no tool calls")
        text = message.content or ""
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
            latency_s=latency_s,
            finish_reason=choice.finish_reason or "stop",
            constrained=mode,
            model=getattr(reply, "model", "") or self.entry.model,
        )
        if mode in TEXT_TOOL_MODES and not calls:
            call = tool_call_from_json(text)
            completion.tool_calls = [call] if call is not None else []
        if (
            mode
            and request.constraint is not None
            and request.constraint.kind == "choice"
            and mode != "structured_outputs_choice"
        ):
            completion.text = unwrap_label(text)
        return completion

    def map_error(self, exc: Exception) -> ProviderError:
        """The retry decision for this SDK's exceptions."""
        import openai

        return self.map_sdk_error(exc, openai)
