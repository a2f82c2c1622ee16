"""Build the provider-neutral Request for an example: same prompt for every model."""

from __future__ import annotations

from typing import Any

from pytest_distill.models.base import OutputConstraint, Request
from pytest_distill.suite.model import Example, Suite, TaskType

# Enough for the longest label or a tool call; generation stops earlier at temperature 0.
DEFAULT_MAX_TOKENS = {
    TaskType.CLASSIFICATION: 64,
    TaskType.TOOL_CALLING: 256,
    TaskType.MULTI_TURN_TOOL_CALLING: 256,
}
TEXT_MAX_TOKENS = 384


def system_prompt(suite: Suite) -> str:
    if suite.settings.system_prompt:
        return suite.settings.system_prompt
    parts = [suite.task_description]
    if suite.task_type == TaskType.CLASSIFICATION:
        parts.append("Classes:\n" + "\n".join(f"- {label}: {desc}" for label, desc in suite.classes.items()))
        parts.append("Answer with exactly one class label from the list and nothing else.")
    elif suite.task_type.is_tool_calling:
        parts.append("Answer with a single function call.")
    else:
        parts.append("Answer with the answer only, no explanation.")
    return "\n\n".join(parts)


def user_text(example: Example) -> str:
    settings = example.suite.settings
    question = example.question if isinstance(example.question, str) else str(example.question)
    if settings.user_template:
        values: dict[str, Any] = {**example.fields, "question": question, "context": example.context or ""}
        return settings.user_template.format(**values)
    if example.context:
        return f"Context:\n{example.context}\n\nQuestion: {question}"
    return question


def build_request(
    example: Example,
    *,
    constrain: bool = True,
    temperature: float | None = None,
    max_tokens: int | None = None,
    seed: int | None = None,
) -> Request:
    """The system prompt comes first and is identical for every example, so servers and
    llama.cpp reuse its cached prefix and only the question is evaluated per request."""
    suite = example.suite
    if isinstance(example.question, list):
        messages = tuple(example.question)
    else:
        messages = ({"role": "user", "content": user_text(example)},)
    constraint = None
    if suite.task_type == TaskType.CLASSIFICATION and constrain and suite.settings.constrain:
        constraint = OutputConstraint(kind="choice", choices=tuple(suite.classes))
    tokens = max_tokens or suite.settings.max_tokens or DEFAULT_MAX_TOKENS.get(suite.task_type, TEXT_MAX_TOKENS)
    return Request(
        messages=messages,
        system=system_prompt(suite),
        tools=tuple(suite.tools) if suite.task_type.is_tool_calling else (),
        tool_choice="auto" if suite.task_type.is_tool_calling else None,
        constraint=constraint,
        temperature=temperature,
        max_tokens=tokens,
        seed=seed,
    )
