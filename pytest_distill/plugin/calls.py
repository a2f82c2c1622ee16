"""Model calls and judge verdicts made from a test's own body (the Python API), and how
they reach the run: the running item, the `distill_model` factory, and their records.

The running item is held in one ContextVar, set around the test body by
pytest_runtest_call (hooks.py): a fixture-free function such as assert_judged finds the
run and its item through it. A plain test's calls become one Record per model it asked,
under the test module's name, so the end table, results.json and JUnit show their
latency, tokens and cost as for suite items.

A failure of the model or of the judge inside a test body is a CallError: the record's
outcome is error and pytest reports an ERROR (pytest_report_teststatus), never a failed
assertion, since the model's answer was never judged.
"""

from __future__ import annotations

import contextlib
import contextvars
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from _pytest.outcomes import Failed  # pytest.fail.Exception, importable as a type

from pytest_distill.core.cost import api_cost
from pytest_distill.core.records import ERROR, MISS, PASS, SKIP, Record
from pytest_distill.models.base import Completion, ProviderError, Request
from pytest_distill.models.registry import ModelEntry
from pytest_distill.plugin.evaluate import OUR_ERRORS, ProviderFailure
from pytest_distill.plugin.state import SESSION_KEY, RunState
from pytest_distill.scoring.base import Score
from pytest_distill.suite import Example, build_request

_CURRENT: contextvars.ContextVar[pytest.Item | None] = contextvars.ContextVar("distill_current_item", default=None)
_CALLS = pytest.StashKey[dict[str, list[Completion]]]()  # model name -> its replies in this test
JUDGED = pytest.StashKey[list[dict[str, Any]]]()  # the judge outcomes (JudgeOutcome.to_extra) of this test
ERROR_ATTRIBUTE = "distill_error"  # set on a call-phase report whose failure is an error, not a miss


class CallError(Failed):  # pytest.fail's exception: shown without a traceback
    """The model or the judge failed inside a test body: an error, shown as one line."""

    def __init__(self, message: str) -> None:
        super().__init__(message, pytrace=False)


class ScoredMiss(AssertionError):
    """A wrong answer found by one of the API's assertions: a miss, with its Score."""

    def __init__(self, score: Score) -> None:
        super().__init__(score.explanation)
        self.score = score


# --- the running item -----------------------------------------------------------------


@contextlib.contextmanager
def running(item: pytest.Item) -> Iterator[None]:
    token = _CURRENT.set(item)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def current_item(what: str) -> pytest.Item:
    item = _CURRENT.get()
    if item is None or SESSION_KEY not in item.config.stash:
        raise RuntimeError(f"{what} needs a running test of a pytest-distill run (call it from the test body)")
    return item


def state_of(item: pytest.Item) -> RunState:
    return item.config.stash[SESSION_KEY]


# --- errors are errors ------------------------------------------------------------------


def mark_error(report: pytest.TestReport, call: pytest.CallInfo[Any]) -> None:
    """pytest_runtest_makereport: a call-phase failure that is the model's or the judge's
    failure (not a wrong answer) is flagged; the flag travels with the report under xdist."""
    if call.when == "call" and call.excinfo is not None and call.excinfo.errisinstance((CallError, ProviderFailure)):
        setattr(report, ERROR_ATTRIBUTE, True)


def teststatus(report: pytest.TestReport) -> tuple[str, str, str] | None:
    """pytest_report_teststatus: such a report counts as an ERROR, in the terminal and the exit line."""
    if report.when == "call" and report.failed and getattr(report, ERROR_ATTRIBUTE, False):
        return "error", "E", "ERROR"
    return None


# --- the distill_model factory --------------------------------------------------------


class ModelFactory:
    """`distill_model` outside @examples: distill_model("gpt-5-nano") -> a ModelClient."""

    def __init__(self, item: pytest.Item) -> None:
        self._item = item

    def __repr__(self) -> str:
        return "<distill_model factory>"

    def __call__(self, name: str) -> ModelClient:
        evaluator = state_of(self._item).evaluator
        try:
            entry = evaluator.judge_entry(name)  # --model entries first, else resolved now (and kept)
        except OUR_ERRORS as exc:
            raise CallError(f"error: model {name!r}: {exc}") from None
        return ModelClient(name, entry, self._item)


class ModelClient:
    """One model for a hand-written test: respond() goes through the run's engine (cache,
    retries, rate limits) and each reply is recorded on the test."""

    def __init__(self, name: str, entry: ModelEntry, item: pytest.Item) -> None:
        self.name = name
        self.entry = entry
        self.last: Completion | None = None
        self._item = item

    def __repr__(self) -> str:
        return f"<model {self.name}>"

    def request(self, example_or_prompt: Example | str, **changes: Any) -> Request:
        """The Request sent for a suite example (the suite's prompt) or a plain user prompt."""
        entry = self.entry
        if isinstance(example_or_prompt, Example):
            options = state_of(self._item).options
            request = build_request(
                example_or_prompt,
                constrain=options.constrain,
                temperature=entry.temperature,
                max_tokens=entry.max_tokens,
                seed=entry.seed,
            )
        elif isinstance(example_or_prompt, str):
            request = Request(
                messages=({"role": "user", "content": example_or_prompt},),
                temperature=entry.temperature,
                seed=entry.seed,
            )
            if entry.max_tokens:
                request = request.with_params(max_tokens=entry.max_tokens)
        else:
            raise TypeError(
                f"respond() takes a suite Example or a prompt string, not {type(example_or_prompt).__name__}"
            )
        return request.with_params(**changes) if changes else request

    def respond(self, example_or_prompt: Example | str, **changes: Any) -> Completion:
        """The model's reply (a Completion: .text, .tool_calls, .usage, .latency_s); `changes`
        are Request fields, e.g. max_tokens=64 or system="..."."""
        request = self.request(example_or_prompt, **changes)
        engine = state_of(self._item).evaluator.engine
        try:
            completion = engine.complete(self.entry, request)
        except ProviderError as exc:
            _calls(self._item).setdefault(self.name, [])
            raise CallError(f"error: {exc}") from None
        _calls(self._item).setdefault(self.name, []).append(completion)
        self.last = completion
        return completion


def _calls(item: pytest.Item) -> dict[str, list[Completion]]:
    return item.stash.setdefault(_CALLS, {})


# --- a plain test's records -------------------------------------------------------------


def record_plain(item: pytest.Item, state: RunState, exc: BaseException | None) -> None:
    """After a plain test's body: one Record per model it asked, under its module's name."""
    calls = item.stash.get(_CALLS, None)
    if not calls:
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit, pytest.exit.Exception, pytest.xfail.Exception)):
        return
    explanation, error = "", ""
    if exc is None:
        outcome = PASS
    elif isinstance(exc, pytest.skip.Exception):
        outcome, explanation = SKIP, str(getattr(exc, "msg", exc))
    elif isinstance(exc, CallError):
        outcome, error = ERROR, str(exc.msg)
    elif isinstance(exc, (AssertionError, pytest.fail.Exception)):
        outcome, explanation = MISS, (str(exc).strip() or "assertion failed")[:1000]
    else:  # the test could not decide (a bug in the test, or unexpected data): an error
        outcome, error = ERROR, f"{type(exc).__name__}: {exc}"[:1000]
    module = _module_path(item, state.options.rootdir)
    judged = item.stash.get(JUDGED, [])
    for model, completions in calls.items():
        record = Record(
            suite=Path(item.path).stem,
            suite_path=str(module),
            model=model,
            example_id=item.name,
            repetition=1,
            outcome=outcome,
            nodeid=item.nodeid,
            score=None if outcome in (ERROR, SKIP) else float(outcome == PASS),
            explanation=explanation or error,
            error=error,
            scorer=f"test:{getattr(item, 'originalname', item.name)}",
            extra={"calls": len(completions), **({"judge": judged} if judged else {})},
            **_usage(completions, state.evaluator.judge_entry(model)),
        )
        item.user_properties.extend(record.to_properties())


def _usage(completions: list[Completion], entry: ModelEntry) -> dict[str, Any]:
    """The test's calls to one model as one record's numbers: latency, tokens and cost summed."""
    if not completions:
        return {}
    costs = [api_cost(entry, c.usage) for c in completions]
    last = completions[-1]
    return {
        "latency_s": sum(c.latency_s for c in completions),
        "input_tokens": sum(c.usage.input_tokens for c in completions),
        "output_tokens": sum(c.usage.output_tokens for c in completions),
        "cached_tokens": sum(c.usage.cached_tokens for c in completions),
        "reasoning_tokens": sum(c.usage.reasoning_tokens for c in completions),
        "cost_usd": None if any(c is None for c in costs) else sum(c for c in costs if c is not None),
        "finished_at": last.finished_at or time.time(),
        "cached": all(c.cached for c in completions),
        "finish_reason": last.finish_reason,
        "output": last.text,
    }


def _module_path(item: pytest.Item, rootdir: Path) -> Path:
    try:
        return Path(item.path).resolve().relative_to(rootdir.resolve())
    except ValueError:
        return Path(item.path).resolve()


__all__ = ["CallError", "ModelClient", "ModelFactory", "ScoredMiss", "current_item", "record_plain", "running"]
