"""Conversation shapes shared by providers.

Multi-turn suites store earlier assistant turns as tool calls with no tool result after
them. OpenAI-style APIs reject that ("an assistant message with tool_calls must be
followed by tool messages"), so `with_tool_results` inserts a synthetic result
`{"status": "ok"}` after each such call: the conversation stays a conversation of tool
calls, which is what the model will see in production. Models without native tool
support get the history rendered as text instead (`render_history_for_text_model`).
"""

from __future__ import annotations

import json
from typing import Any

from pytest_distill.models.base import OutputConstraint, Request, ToolCall

SYNTHETIC_TOOL_RESULT = json.dumps({"status": "ok"})


def _function(call: dict[str, Any]) -> dict[str, Any]:
    return call.get("function", call)


def _arguments(fn: dict[str, Any]) -> Any:
    args = fn.get("arguments", fn.get("parameters", {}))
    if isinstance(args, str):
        try:
            return json.loads(args)
        except ValueError:
            return args
    return args


def with_tool_results(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """OpenAI wire format: ids on tool calls, JSON-string arguments, a tool message after each."""
    out: list[dict[str, Any]] = []
    counter = 0
    for index, message in enumerate(messages):
        calls = message.get("tool_calls") or []
        if message.get("role") != "assistant" or not calls:
            out.append(dict(message))
            continue
        wire_calls = []
        for call in calls:
            fn = _function(call)
            counter += 1
            args = _arguments(fn)
            wire_calls.append(
                {
                    "id": call.get("id") or f"call_{counter}",
                    "type": "function",
                    "function": {
                        "name": fn["name"],
                        "arguments": args if isinstance(args, str) else json.dumps(args),
                    },
                }
            )
        # content "" rather than null: llama.cpp's server answers 500 to null
        out.append({"role": "assistant", "content": message.get("content") or "", "tool_calls": wire_calls})
        following = messages[index + 1] if index + 1 < len(messages) else None
        if not (following and following.get("role") == "tool"):
            for call in wire_calls:
                out.append({"role": "tool", "tool_call_id": call["id"], "content": SYNTHETIC_TOOL_RESULT})
    return out


def text_of(content: Any) -> str:
    """A message's content as text: a string, or the text of a list of parts."""
    if isinstance(content, list):
        return "".join(part.get("text", "") for part in content if isinstance(part, dict))
    return "" if content is None else str(content)


def append_turn(turns: list[dict[str, Any]], role: str, key: str, items: list[dict[str, Any]]) -> None:
    """Add `items` (content blocks, parts: under `key`) as a turn of `role`, merged into the
    last turn when that is of the same role (the APIs want the roles to alternate); no items,
    no turn."""
    if not items:
        return
    if turns and turns[-1]["role"] == role:
        turns[-1][key].extend(items)
    else:
        turns.append({"role": role, key: items})


def render_history_for_text_model(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Plain user/assistant turns: earlier tool calls become the JSON the model is asked for."""
    out: list[dict[str, Any]] = []
    for message in messages:
        role = message.get("role")
        if role == "assistant" and message.get("tool_calls"):
            rendered = [
                json.dumps({"name": _function(c)["name"], "parameters": _arguments(_function(c))})
                for c in message["tool_calls"]
            ]
            out.append({"role": "assistant", "content": "\n".join(rendered)})
        elif role == "tool":
            out.append({"role": "user", "content": f"Tool result: {message.get('content', '')}"})
        else:
            out.append({"role": role, "content": message.get("content") or ""})
    return out


def tools_instructions(tools: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> str:
    """The tool list as text, for models that don't take tools natively."""
    lines = [
        (
            "You can call these functions. Answer with exactly one call as JSON: "
            '{"name": <function name>, "parameters": {<arguments>}}. Leave out optional '
            "parameters the user did not ask for."
        ),
    ]
    for tool in tools:
        fn = _function(tool)
        lines.append(
            json.dumps(
                {"name": fn["name"], "description": fn.get("description", ""), "parameters": fn.get("parameters", {})}
            )
        )
    return "\n".join(lines)


def tool_call_schema(tools: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> dict[str, Any]:
    """A JSON schema for one call `{"name", "parameters"}` of any of the tools."""
    variants = []
    for tool in tools:
        fn = _function(tool)
        params = fn.get("parameters") or {"type": "object", "properties": {}}
        variants.append(
            {
                "type": "object",
                "properties": {"name": {"type": "string", "enum": [fn["name"]]}, "parameters": params},
                "required": ["name", "parameters"],
            }
        )
    return variants[0] if len(variants) == 1 else {"anyOf": variants}


def tools_as_json_schema(request: Request) -> Request:
    """The same request for a model without usable native tools: the tools described in
    the system prompt, the history as text, the reply constrained to one call as JSON."""
    system = (request.system + "\n\n" if request.system else "") + tools_instructions(request.tools)
    return request.with_params(
        system=system,
        messages=tuple(render_history_for_text_model(list(request.messages))),
        tools=(),
        tool_choice=None,
        constraint=OutputConstraint(kind="json_schema", schema=tool_call_schema(request.tools)),
    )


def tool_call_from_json(text: str) -> ToolCall | None:
    """The call in a reply constrained by tool_call_schema; None when it doesn't parse
    (e.g. cut off by max_tokens): the scorer then explains the raw text."""
    try:
        value = json.loads(text)
    except ValueError:
        return None
    if not isinstance(value, dict) or not isinstance(value.get("name"), str):
        return None
    args = value.get("parameters", value.get("arguments", {}))
    return ToolCall(value["name"], args if isinstance(args, dict) else json.dumps(args))
