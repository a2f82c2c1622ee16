"""Anthropic's Messages API through the official `anthropic` SDK (imported lazily)."""

from __future__ import annotations

from typing import Any

from pytest_distill.models.base import (
    Completion,
    ProviderError,
    Request,
    ToolCall,
    Usage,
    WireRequest,
    arguments_from_json,
)
from pytest_distill.models.chat import append_turn, text_of, with_tool_results
from pytest_distill.models.providers.hosted import (
    HostedProvider,
    choice_schema,
    unwrap_label,
)

# Anthropic stop reasons in the OpenAI vocabulary the rest of the plugin uses.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "refusal",
}
TOOL_CHOICE = {"auto": {"type": "auto"}, "required": {"type": "any"}, "none": {"type": "none"}}


def to_anthropic(messages: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[str]]:
    """OpenAI-format chat messages -> Anthropic messages (and any system texts found in them).

    Assistant tool calls become tool_use blocks and tool messages tool_result blocks in a
    user turn; calls with no result get the synthetic one (chat.with_tool_results).
    Consecutive turns of one role are merged: tool results then come first in the user
    turn after the tool_use, as the API requires.
    """
    out: list[dict[str, Any]] = []
    systems: list[str] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        append_turn(out, role, "content", blocks)

    for message in with_tool_results(messages):
        role = message.get("role")
        content = message.get("content")
        if role == "system":
            systems.append(text_of(content))
        elif role == "tool":
            add("user", [{"type": "tool_result", "tool_use_id": message["tool_call_id"], "content": text_of(content)}])
        elif role == "assistant":
            blocks = _text_blocks(content)
            for call in message.get("tool_calls") or []:
                args = arguments_from_json(call["function"]["arguments"])
                blocks.append(
                    {
                        "type": "tool_use",
                        "id": call["id"],
                        "name": call["function"]["name"],
                        "input": args if isinstance(args, dict) else {"arguments": args},
                    }
                )
            add("assistant", blocks)
        else:
            add("user", _text_blocks(content))
    return out, systems


def _text_blocks(content: Any) -> list[dict[str, Any]]:
    text = text_of(content)
    return [{"type": "text", "text": text}] if text else []  # the API rejects empty text blocks


class AnthropicProvider(HostedProvider):
    key_envs = ("ANTHROPIC_API_KEY",)
    sdk_module = "anthropic"

    def make_client(self, key: str) -> Any:
        from anthropic import AsyncAnthropic

        # Retries are the engine's (it counts them and honours Retry-After).
        return AsyncAnthropic(api_key=key, base_url=self.base_url(), max_retries=0, timeout=self.entry.timeout_s)

    # --- request -------------------------------------------------------------
    def build_body(self, request: Request) -> WireRequest:
        messages, systems = to_anthropic(list(request.messages))
        system = "\n\n".join(s for s in [request.system or "", *systems] if s)
        body: dict[str, Any] = {"model": self.entry.model, "messages": messages, "max_tokens": request.max_tokens}
        if system:
            body["system"] = system
        # anthropic 2.x takes no temperature keyword; the API still accepts the field.
        extra_body: dict[str, Any] = {}
        if request.temperature is not None:
            extra_body["temperature"] = request.temperature
        mode: str | None = None
        if request.tools:
            body["tools"] = [_tool(t) for t in request.tools]
            if request.tool_choice:
                body["tool_choice"] = TOOL_CHOICE[request.tool_choice]
            mode = "native_tools"
        elif request.constraint is not None and self.entry.constraint_style != "none":
            c = request.constraint
            schema = choice_schema(c.choices) if c.kind == "choice" else c.schema
            body["output_config"] = {"format": {"type": "json_schema", "schema": schema}}
            mode = "json_schema"
        extra_body.update(self.entry.params)
        extra_body.update(request.extra)
        if extra_body:
            body["extra_body"] = extra_body
        return WireRequest(body, mode)

    async def send(self, wire: WireRequest) -> Any:
        return await self.client().messages.create(**wire.body)

    # --- reply -----------------------------------------------------------------
    def parse_reply(self, raw: Any, latency_s: float, mode: str | None, request: Request) -> Completion:
        reply = raw
        blocks = getattr(reply, "content", None)
        if blocks is None:
            raise ProviderError(f"{self.entry.name}: malformed reply: no content")
        if not blocks and reply.stop_reason not in ("max_tokens", "refusal", "model_context_window_exceeded"):
            # An answer is at least one block (an empty text block is an empty answer).
            raise self.empty_reply("no content blocks")
        # thinking / redacted_thinking blocks are left out: they are not the answer.
        text = "".join(b.text for b in blocks if getattr(b, "type", None) == "text")
        calls = [
            ToolCall(b.name, arguments_from_json(b.input)) for b in blocks if getattr(b, "type", None) == "tool_use"
        ]
        usage = reply.usage
        cache_read = getattr(usage, "cache_read_input_tokens", None) or 0
        cache_write = getattr(usage, "cache_creation_input_tokens", None) or 0
        details = getattr(usage, "output_tokens_details", None)
        completion = Completion(
            text=text,
            tool_calls=calls,
            usage=Usage(
                # input_tokens counts only uncached tokens: add the cache reads and writes back
                input_tokens=(usage.input_tokens or 0) + cache_read + cache_write,
                output_tokens=usage.output_tokens or 0,  # includes thinking tokens
                cached_tokens=cache_read,
                reasoning_tokens=(getattr(details, "thinking_tokens", 0) or 0) if details else 0,
            ),
            latency_s=latency_s,
            finish_reason=FINISH_REASONS.get(reply.stop_reason or "end_turn", str(reply.stop_reason)),
            constrained=mode,
            model=getattr(reply, "model", "") or self.entry.model,
        )
        if mode == "json_schema" and request.constraint is not None and request.constraint.kind == "choice":
            completion.text = unwrap_label(completion.text)
        return completion

    def map_error(self, exc: Exception) -> ProviderError:
        """The retry decision for this SDK's exceptions."""
        import anthropic

        return self.map_sdk_error(exc, anthropic)


def _tool(tool: dict[str, Any]) -> dict[str, Any]:
    fn = tool.get("function", tool)
    return {
        "name": fn["name"],
        "description": fn.get("description", ""),
        "input_schema": fn.get("parameters") or {"type": "object", "properties": {}},
    }
