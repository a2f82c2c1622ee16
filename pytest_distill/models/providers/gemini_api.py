"""Google's Gemini API through the official `google-genai` SDK (imported lazily)."""

from __future__ import annotations

import json
from typing import Any

from pytest_distill.models.base import (
    Completion,
    ProviderError,
    Request,
    ToolCall,
    Usage,
    WireRequest,
)
from pytest_distill.models.chat import append_turn, text_of, with_tool_results
from pytest_distill.models.providers.hosted import (
    HostedProvider,
    choice_schema,
    http_error,
    parse_duration,
    unwrap_label,
)

TOOL_MODE = {"auto": "AUTO", "required": "ANY", "none": "NONE"}
# Gemini finish reasons that mean a filter stopped the answer.
FILTERED = {
    "SAFETY",
    "RECITATION",
    "BLOCKLIST",
    "PROHIBITED_CONTENT",
    "SPII",
    "IMAGE_SAFETY",
    "IMAGE_PROHIBITED_CONTENT",
    "MODEL_ARMOR",
}


def to_gemini(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI-format chat messages -> Gemini contents (and any system texts found in them).

    Assistant tool calls become function_call parts of a "model" turn and tool messages
    function_response parts of a "user" turn; calls with no result get the synthetic one
    (chat.with_tool_results). Gemini matches a response to its call by function name.
    """
    contents: list[dict[str, Any]] = []
    systems: list[str] = []
    names: dict[str, str] = {}

    def add(role: str, parts: list[dict[str, Any]]) -> None:
        append_turn(contents, role, "parts", parts)

    for message in with_tool_results(messages):
        role = message.get("role")
        text = text_of(message.get("content"))
        if role == "system":
            systems.append(text)
        elif role == "tool":
            name = names.get(message.get("tool_call_id", ""), "tool")
            add("user", [{"function_response": {"name": name, "response": _response_object(text)}}])
        elif role == "assistant":
            parts: list[dict[str, Any]] = [{"text": text}] if text else []
            for call in message.get("tool_calls") or []:
                names[call["id"]] = call["function"]["name"]
                args = _json_object(call["function"]["arguments"])
                parts.append({"function_call": {"name": call["function"]["name"], "args": args}})
            add("model", parts)
        else:
            add("user", [{"text": text}] if text else [])
    return contents, systems


def _json_object(raw: Any) -> dict[str, Any]:
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {"arguments": raw}
    return value if isinstance(value, dict) else {"arguments": value}


def _response_object(text: str) -> dict[str, Any]:
    # function_response.response must be an object
    try:
        value = json.loads(text)
    except ValueError:
        return {"result": text}
    return value if isinstance(value, dict) else {"result": value}


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value) or "")


class GeminiProvider(HostedProvider):
    # The SDK's own variables; it prefers GOOGLE_API_KEY when both are set, and so do we.
    key_envs = ("GOOGLE_API_KEY", "GEMINI_API_KEY")
    sdk_module = "google.genai"

    def make_client(self, key: str) -> Any:
        from google import genai
        from google.genai import types

        options = types.HttpOptions(
            base_url=self.base_url(),
            api_version="v1beta",  # the SDK's default for the Gemini API, also with a base_url
            timeout=int(self.entry.timeout_s * 1000),  # milliseconds
            # Retries are the engine's (it counts them and honours Retry-After).
            retry_options=types.HttpRetryOptions(attempts=1),
        )
        return genai.Client(api_key=key, http_options=options)

    # --- request -------------------------------------------------------------
    def build_body(self, request: Request) -> WireRequest:
        """generate_content's keyword arguments: model, contents and config (a plain dict
        here; send() types it)."""
        contents, systems = to_gemini(list(request.messages))
        system = "\n\n".join(s for s in [request.system or "", *systems] if s)
        # The SDK never runs functions for us: the call itself is the answer.
        config: dict[str, Any] = {
            "max_output_tokens": request.max_tokens,
            "automatic_function_calling": {"disable": True},
        }
        if system:
            config["system_instruction"] = system
        if request.temperature is not None:
            config["temperature"] = request.temperature
        if request.seed is not None:
            config["seed"] = request.seed
        mode: str | None = None
        if request.tools:
            declarations = []
            for tool in request.tools:
                fn = tool.get("function", tool)
                schema = fn.get("parameters") or {"type": "object", "properties": {}}
                declarations.append(
                    {"name": fn["name"], "description": fn.get("description", ""), "parameters_json_schema": schema}
                )
            config["tools"] = [{"function_declarations": declarations}]
            if request.tool_choice:
                config["tool_config"] = {"function_calling_config": {"mode": TOOL_MODE[request.tool_choice]}}
            mode = "native_tools"
        elif request.constraint is not None and self.entry.constraint_style != "none":
            c = request.constraint
            config["response_mime_type"] = "application/json"
            config["response_json_schema"] = choice_schema(c.choices) if c.kind == "choice" else c.schema
            mode = "json_schema"
        config.update(self.entry.params)  # e.g. thinking_config = { thinking_budget = 0 }
        config.update(request.extra)
        return WireRequest({"model": self.entry.model, "contents": contents, "config": config}, mode)

    async def send(self, wire: WireRequest) -> Any:
        from google.genai import types

        try:
            # Typed, so nested params (thinking_config = {...}) get the API's field names.
            typed = types.GenerateContentConfig.model_validate(wire.body["config"])
        except ValueError as exc:
            raise ProviderError(
                f"{self.entry.name}: invalid request config (check params in the models file): {exc}"
            ) from None
        return await self.client().aio.models.generate_content(**{**wire.body, "config": typed})

    # --- reply -----------------------------------------------------------------
    def parse_reply(self, raw: Any, latency_s: float, mode: str | None, request: Request) -> Completion:
        reply = raw
        candidates = reply.candidates or []
        text_parts: list[str] = []
        calls: list[ToolCall] = []
        if candidates:
            candidate = candidates[0]
            parts = candidate.content.parts if candidate.content and candidate.content.parts else []
            for part in parts:
                if part.function_call is not None:
                    calls.append(ToolCall(part.function_call.name or "", dict(part.function_call.args or {})))
                elif part.text and not part.thought:  # thought summaries are not the answer
                    text_parts.append(part.text)
            reason = _enum_name(candidate.finish_reason)
            if not parts and reason in ("STOP", ""):
                # A candidate with no parts that no filter or limit stopped holds no answer.
                raise self.empty_reply("the candidate has no parts")
            if reason in ("STOP", ""):
                finish = "tool_calls" if calls else "stop"
            elif reason == "MAX_TOKENS":
                finish = "length"
            elif reason in FILTERED:
                finish = "content_filter"
            else:
                finish = reason.lower()
        elif reply.prompt_feedback is not None and reply.prompt_feedback.block_reason is not None:
            # The prompt was blocked: Gemini's answer is a refusal, scored as such.
            finish = "content_filter"
        else:
            raise self.empty_reply("no candidates")
        meta = reply.usage_metadata
        thoughts = (meta.thoughts_token_count or 0) if meta else 0
        completion = Completion(
            text="".join(text_parts),
            tool_calls=calls,
            usage=Usage(
                input_tokens=((meta.prompt_token_count or 0) + (meta.tool_use_prompt_token_count or 0)) if meta else 0,
                # candidates_token_count leaves thinking out; it is billed as output.
                output_tokens=((meta.candidates_token_count or 0) + thoughts) if meta else 0,
                cached_tokens=(meta.cached_content_token_count or 0) if meta else 0,
                reasoning_tokens=thoughts,
            ),
            latency_s=latency_s,
            finish_reason=finish,
            constrained=mode,
            model=reply.model_version or self.entry.model,
        )
        if mode == "json_schema" and request.constraint is not None and request.constraint.kind == "choice":
            completion.text = unwrap_label(completion.text)
        return completion

    def map_error(self, exc: Exception) -> ProviderError:
        """The retry decision for this SDK's exceptions (and its HTTP layer's)."""
        from google.genai import errors

        name = self.entry.name
        timeouts, transport = _http_errors()
        if isinstance(exc, errors.APIError):
            response = getattr(exc, "response", None)
            return http_error(
                name,
                exc.code,
                exc.message or str(exc.status),
                getattr(response, "headers", None),
                retry_after=_retry_info(exc.details),
            )
        if isinstance(exc, timeouts):
            return self.timed_out()
        if isinstance(exc, transport):
            return ProviderError(f"{name}: connection error: {type(exc).__name__}: {exc}", retryable=True)
        if isinstance(exc, ValueError):  # incl. json.JSONDecodeError and pydantic's ValidationError
            return ProviderError(f"{name}: malformed reply: {exc}")
        return super().map_error(exc)


def _http_errors() -> tuple[tuple[type, ...], tuple[type, ...]]:
    """Timeout and transport exceptions of whichever httpx the SDK sends with (httpx2 or httpx)."""
    timeouts: list[type] = []
    transport: list[type] = []
    for module_name in ("httpx2", "httpx"):
        try:
            module = __import__(module_name)
        except ImportError:
            continue
        timeouts.append(module.TimeoutException)
        transport.append(module.TransportError)
    return tuple(timeouts), tuple(transport)


def _retry_info(details: Any) -> float | None:
    """google.rpc.RetryInfo's retryDelay: where Gemini says when to retry a 429."""
    error = details.get("error") if isinstance(details, dict) else None
    for item in (error or {}).get("details", []) if isinstance(error, dict) else []:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            return parse_duration(item.get("retryDelay"))
    return None
