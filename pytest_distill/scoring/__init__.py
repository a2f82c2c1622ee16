"""Scorers by name, and the default scorer of each task type.

A scorer is a callable (example, completion) -> Score. Scorers whose task lands in a
later release are simply absent: items of such suites are skipped with "no scorer yet".
"""

from __future__ import annotations

from collections.abc import Callable

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import Completion
from pytest_distill.suite.model import Example, TaskType
from pytest_distill.scoring.base import Score
from pytest_distill.scoring.classification import score_label
from pytest_distill.scoring.judge import score_judge
from pytest_distill.scoring.sql import score_sql_execution
from pytest_distill.scoring.text import score_normalized_exact_match, score_rouge_l, score_token_f1
from pytest_distill.scoring.toolcalls import score_binary_tool_call, score_staged_tool_call, score_tool_call_equivalence

Scorer = Callable[[Example, Completion], Score]

SCORERS: dict[str, Scorer] = {
    "exact_match": score_label,
    "tool_call_equivalence": score_tool_call_equivalence,
    "binary_tool_call": score_binary_tool_call,
    "staged_tool_call": score_staged_tool_call,
    # generated text (judge.py needs a judge: the session passes judge=; see needs_judge)
    "judge": score_judge,
    "sql_execution": score_sql_execution,
    "normalized_exact_match": score_normalized_exact_match,
    "token_f1": score_token_f1,
    "rouge_l": score_rouge_l,
}

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


def needs_judge(name: str | None) -> bool:
    """Whether a scorer grades with a judge model (called with judge=...)."""
    return bool(getattr(SCORERS.get(name or ""), "needs_judge", False))


def get_scorer(name: str) -> Scorer:
    try:
        return SCORERS[name]
    except KeyError:
        raise ConfigError(f"unknown scorer '{name}'; known: {', '.join(sorted(SCORERS))}") from None


__all__ = ["DEFAULT_SCORER", "SCORERS", "Score", "Scorer", "get_scorer", "needs_judge", "scorer_name_for"]
