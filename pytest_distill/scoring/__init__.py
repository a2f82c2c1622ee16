"""Scorers by name, and the default scorer of each task type.

A scorer is a callable (example, completion) -> Score, made by make_scorer(name, judge):
a scorer that grades with a judge model gets it at construction. Task types without a
scorer yet are simply absent: their items are skipped with "no scorer yet".
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion
from pytest_distill.scoring.base import Score
from pytest_distill.scoring.classification import score_label
from pytest_distill.scoring.judge import Judge, JudgeError, judge_scorer
from pytest_distill.scoring.sql import score_sql_execution
from pytest_distill.scoring.text import (
    score_normalized_exact_match,
    score_rouge_l,
    score_token_f1,
)
from pytest_distill.scoring.toolcalls import (
    score_binary_tool_call,
    score_staged_tool_call,
    score_tool_call_equivalence,
)
from pytest_distill.suite.model import Example, TaskType

Scorer = Callable[[Example, Completion], Score]

# Scorers that grade with a judge model: built around it (make_scorer).
JUDGE_SCORERS: dict[str, Callable[[Judge], Scorer]] = {
    "judge": judge_scorer,
}

# Scorers that need nothing but the example and the answer.
PLAIN_SCORERS: dict[str, Scorer] = {
    "exact_match": score_label,
    "tool_call_equivalence": score_tool_call_equivalence,
    "binary_tool_call": score_binary_tool_call,
    "staged_tool_call": score_staged_tool_call,
    "sql_execution": score_sql_execution,
    "normalized_exact_match": score_normalized_exact_match,
    "token_f1": score_token_f1,
    "rouge_l": score_rouge_l,
}

SCORERS: frozenset[str] = frozenset(PLAIN_SCORERS) | frozenset(JUDGE_SCORERS)  # every known name

DEFAULT_SCORER: dict[TaskType, str] = {
    TaskType.CLASSIFICATION: "exact_match",
    TaskType.TOOL_CALLING: "tool_call_equivalence",
    TaskType.MULTI_TURN_TOOL_CALLING: "tool_call_equivalence",
    TaskType.QUESTION_ANSWERING: "judge",
    TaskType.QA_OPEN_BOOK: "judge",
    TaskType.QA_CLOSED_BOOK: "judge",
}


def scorer_name_for(example: Example) -> str | None:
    suite = example.suite
    return suite.settings.scorer or DEFAULT_SCORER.get(suite.task_type)


def uses_judge(name: str) -> bool:
    """Whether the scorer grades with a judge model (make_scorer then needs one)."""
    return name in JUDGE_SCORERS


def check_scorer(name: str) -> None:
    if name not in SCORERS:
        raise ConfigError(f"unknown scorer '{name}'; known: {', '.join(sorted(SCORERS))}")


def make_scorer(name: str, judge: Judge | None = None) -> Scorer:
    """The scorer called `name`; a judge scorer bound to `judge`."""
    check_scorer(name)
    if name in JUDGE_SCORERS:
        if judge is None:
            raise JudgeError(f"the {name} scorer needs a judge model (--judge, or judge = ... in distill.toml)")
        return JUDGE_SCORERS[name](judge)
    return PLAIN_SCORERS[name]


__all__ = [
    "DEFAULT_SCORER",
    "JUDGE_SCORERS",
    "PLAIN_SCORERS",
    "SCORERS",
    "Score",
    "Scorer",
    "check_scorer",
    "make_scorer",
    "scorer_name_for",
    "uses_judge",
]
