"""Readable failures for plain asserts: `assert reply == expected` on a Completion, a tool
call or a label explains the normalised difference (pytest_assertrepr_compare) instead of
printing two reprs. Tool calls get the equivalence scorer's explanation."""

from __future__ import annotations

from typing import Any

from pytest_distill.models.base import Completion, ToolCall
from pytest_distill.scoring.classification import match_label
from pytest_distill.scoring.toolcalls import tool_call_equivalence


def _is_call(value: Any) -> bool:
    if isinstance(value, ToolCall):
        return True
    if isinstance(value, dict):
        return "name" in value and ("arguments" in value or "parameters" in value)
    return isinstance(value, list) and bool(value) and all(_is_call(v) for v in value)


def _as_reply(value: Any) -> Any:
    """What the tool-call scorer reads as a reply: a Completion, or calls as dicts."""
    if isinstance(value, ToolCall):
        return value.to_dict()
    if isinstance(value, list):
        return [_as_reply(v) for v in value]
    return value


def compare(op: str, left: Any, right: Any) -> list[str] | None:
    """The explanation lines for `left == right`, or None to leave it to pytest."""
    if op != "==":
        return None
    reply, expected = (left, right) if isinstance(left, (Completion, ToolCall)) else (right, left)
    if not isinstance(reply, (Completion, ToolCall)) and not (_is_call(left) and _is_call(right)):
        return None
    if isinstance(reply, Completion) and isinstance(expected, str):
        score = match_label(expected, reply.text)
        verdict = "equal after normalisation: assert_exact_match passes" if score.passed else "differs"
        return [
            f"Completion == {expected!r}: the reply's text {verdict}",
            score.explanation,
            "(a Completion never equals a str: compare reply.text, or use assert_exact_match)",
        ]
    if _is_call(expected) or (isinstance(reply, Completion) and isinstance(expected, (dict, list))):
        if isinstance(expected, ToolCall) or (
            isinstance(expected, list) and any(isinstance(v, ToolCall) for v in expected)
        ):
            expected = _as_reply(expected)
        score = tool_call_equivalence(expected, _as_reply(reply))
        verdict = "equivalent (assert_tool_call_equivalent passes)" if score.passed else "not equivalent"
        return [f"tool calls {verdict}", score.explanation]
    return None
