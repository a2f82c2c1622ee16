"""Scorers by name, and the default scorer of each task type.

A scorer is a callable (example, completion) -> Score. Scorers whose task lands in a
later release are simply absent: items of such suites are skipped with "no scorer yet".
"""

from __future__ import annotations

from collections.abc import Callable

from ..errors import ConfigError
from ..models.base import Completion
from ..suite.model import Example, TaskType
from .base import Score
from .classification import score_label
from .toolcalls import score_binary_tool_call, score_staged_tool_call, score_tool_call_equivalence

Scorer = Callable[[Example, Completion], Score]

SCORERS: dict[str, Scorer] = {
    "exact_match": score_label,
    "tool_call_equivalence": score_tool_call_equivalence,
    "binary_tool_call": score_binary_tool_call,
    "staged_tool_call": score_staged_tool_call,
}

DEFAULT_SCORER: dict[TaskType, str] = {
    TaskType.CLASSIFICATION: "exact_match",
    TaskType.TOOL_CALLING: "tool_call_equivalence",
    TaskType.MULTI_TURN_TOOL_CALLING: "tool_call_equivalence",
}


def scorer_name_for(example: Example) -> str | None:
    suite = example.suite
    return suite.settings.scorer or DEFAULT_SCORER.get(suite.task_type)


def get_scorer(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise ConfigError(f"unknown scorer '{name}'; known: {', '.join(sorted(SCORERS))}") from None


__all__ = ["DEFAULT_SCORER", "SCORERS", "Score", "Scorer", "get_scorer", "scorer_name_for"]
