"""assert_exact_match and assert_judged: the scorers' rules as assertions for hand-written tests.

assert_exact_match is pure (the classification scorer's normalisation). assert_judged asks
the run's judge through the run's engine, so it needs a running test (plugin/calls.py).
A wrong answer raises AssertionError (a miss); a judge that fails raises CallError (an error).
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from pytest_distill.models.base import Completion
from pytest_distill.plugin import calls
from pytest_distill.plugin.api import case_of
from pytest_distill.plugin.evaluate import OUR_ERRORS
from pytest_distill.plugin.options import DEFAULT_JUDGE
from pytest_distill.scoring.base import Score
from pytest_distill.scoring.classification import match_label
from pytest_distill.scoring.judge import judge_inputs
from pytest_distill.scoring.text import answer_text


class LabelMismatch(calls.ScoredMiss):
    """The reply is not the expected label: a miss."""


class JudgedBad(calls.ScoredMiss):
    """The judge's verdict is bad: a miss."""


def assert_exact_match(
    reply: Completion | str, expected: str, *, labels: Iterable[str] | None = None, normalize: bool = True
) -> Score:
    """Assert the reply is the expected label after the classification scorer's
    normalisation (case, whitespace, punctuation, quotes, a `label:` prefix, a JSON
    wrapping, `_`/`-`/space). With `labels`, the reply must also be one of them.
    `normalize=False` compares the exact strings. Returns the Score."""
    __tracebackhide__ = True
    text = reply.text if isinstance(reply, Completion) else reply
    if not isinstance(text, str):
        raise TypeError(f"assert_exact_match: reply must be a Completion or a str, not {type(reply).__name__}")
    score = match_label(expected, text, labels=list(labels) if labels is not None else None, normalize=normalize)
    if not score.passed:
        raise LabelMismatch(score)
    return score


def assert_judged(
    reply: Completion | str,
    *,
    question: str | None = None,
    reference: str | None = None,
    rubric: str | None = None,
    judge: str | None = None,
) -> Score:
    """Assert the run's judge finds the reply good, with the judge scorer's fenced,
    injection-guarded prompt. Inside @examples, the question, reference and rubric default
    to the example's (as the judge scorer sees them). The judge: `judge`, else --judge,
    else the suite's distill.toml `judge` (inside @examples), else the embedded model.
    The verdict, reason and cost are recorded on the test; a judge that fails is an error."""
    __tracebackhide__ = True
    item = calls.current_item("assert_judged")
    state = calls.state_of(item)
    case = case_of(item)
    defaults: dict[str, str] = {}
    if case is not None:
        completion = reply if isinstance(reply, Completion) else Completion(text=str(reply))
        defaults = judge_inputs(case.example, completion)
        rubric = rubric if rubric is not None else case.example.suite.judge_instructions
    if isinstance(reply, Completion):
        candidate = (
            json.dumps([c.to_dict() for c in reply.tool_calls], ensure_ascii=False)
            if reply.tool_calls
            else answer_text(reply)
        )
    else:
        candidate = answer_text(str(reply))
    reference = reference if reference is not None else defaults.get("reference")
    if reference is None and rubric is None:
        raise TypeError(
            "assert_judged needs a reference or a rubric (outside @examples there is no example to take them from)"
        )
    name = judge or state.options.judge or (case.example.suite.settings.judge if case else None) or DEFAULT_JUDGE
    try:
        grader = state.evaluator.judge_named(name)
        outcome = grader.grade(
            question=question if question is not None else defaults.get("question", ""),
            reference=reference if reference is not None else "(no reference: grade by the instructions)",
            candidate=candidate,
            instructions=rubric,
        )
    except OUR_ERRORS as exc:  # the judge's failure (JudgeError is a ScoringError): an error
        raise calls.CallError(f"error: {exc}") from None
    extra = outcome.to_extra()
    item.stash.setdefault(calls.JUDGED, []).append(extra)
    item.user_properties.extend(
        (f"distill.judge.{key}", extra[key]) for key in ("model", "verdict", "reason", "cost_usd")
    )
    verdict = outcome.verdict
    explanation = f"judge {outcome.judge}: {verdict.label}" + (f" - {verdict.reason}" if verdict.reason else "")
    if not verdict.good:
        shown = candidate.replace("\n", "\\n")
        explanation += f" (candidate: {shown if len(shown) <= 100 else shown[:97] + '...'!r})"
    score = Score(
        passed=verdict.good,
        value=float(verdict.good),
        explanation=explanation,
        expected=reference or "",
        got=candidate,
        details={"judge": extra},
    )
    if not verdict.good:
        raise JudgedBad(score)
    return score


__all__ = ["JudgedBad", "LabelMismatch", "assert_exact_match", "assert_judged"]
