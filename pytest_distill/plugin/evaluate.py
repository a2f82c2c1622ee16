"""The Evaluator: asks the model, scores the answer and writes the item's Record.

It works over a small Target (which example, on which model, which repetition, under
which table label), which folder items (collect.ExampleItem) and @examples cases
(api.Case) both are. The model is asked in setup, so a provider failure is a pytest
*error*; only a wrong answer (in the call phase) is a *failure*. A Record goes into the
item's user_properties, which carry it to the controller (finish.py aggregates).

An exception from our own code (not a ProviderError, ScoringError or DistillError) is a
plugin bug: recorded as Outcome.INTERNAL with its traceback, and raised as InternalError.
"""

from __future__ import annotations

import functools
import json
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future
from pathlib import Path
from typing import Any, Protocol

import pytest

from pytest_distill.core import redact
from pytest_distill.core.cost import api_cost
from pytest_distill.core.errors import DistillError
from pytest_distill.core.records import (
    ERROR,
    INTERNAL,
    MISS,
    PASS,
    PROPERTY_PREFIX,
    SKIP,
    Outcome,
    Record,
)
from pytest_distill.models.base import Completion, ProviderError, Request
from pytest_distill.models.registry import ModelEntry
from pytest_distill.plugin.options import DEFAULT_JUDGE, RunOptions
from pytest_distill.runtime.engine import Engine
from pytest_distill.scoring import (
    Scorer,
    make_scorer,
    scorer_name_for,
    uses_judge,
)
from pytest_distill.scoring.base import Score, ScoringError
from pytest_distill.scoring.judge import Judge
from pytest_distill.suite import Example, build_request

INTERNAL_ERROR = "pytest-distill internal error"
_MAX_TRACEBACK = 8000  # characters kept in the record


class Target(Protocol):
    """What the evaluator needs to know of an item."""

    @property
    def example(self) -> Example: ...
    @property
    def model(self) -> str: ...
    @property
    def repetition(self) -> int: ...
    @property
    def suite_label(self) -> str: ...  # the table row's suite: @examples tests get their own

    distill_request: Request | None  # built once: prefetch and the answer share it (and its cache key)


class ProviderFailure(Exception):
    """The model could not answer (timeout, HTTP error, crashed server) or the answer could not
    be scored: an error, not a miss. Shown as one line."""


class Miss(AssertionError):
    """The model answered, and the answer was wrong."""


class InternalError(Exception):
    """A bug in pytest-distill while evaluating an item: shown with its traceback."""

    def __init__(self, nodeid: str, trace: str) -> None:
        super().__init__(
            f"{INTERNAL_ERROR} in {nodeid} (a bug in the plugin, not the model's error; please report it):\n{trace}"
        )
        self.trace = trace


OUR_ERRORS = (ProviderError, ScoringError, DistillError, ProviderFailure, Miss)  # expected, never a bug


class Evaluator:
    def __init__(
        self,
        options: RunOptions,
        entries: Mapping[str, ModelEntry],
        resolve: Callable[[str], ModelEntry],
        engine: Callable[[], Engine],
    ) -> None:
        self.options = options
        self.entries = entries
        self._resolve = resolve  # a model name -> its entry, ready for this process (judges)
        self._make_engine = engine
        self._engine: Engine | None = None
        self._judge_entries: dict[str, ModelEntry] = {}
        self._judged: dict[str, Score] = {}  # nodeid -> the judge's Score, made in setup

    # --- requests ----------------------------------------------------------
    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = self._make_engine()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    def replica_stats(self) -> dict[str, list[dict[str, Any]]]:
        """This process's requests per replica (models with replicas), before close()."""
        return self._engine.replica_stats() if self._engine is not None else {}

    def build_request(self, example: Example, model: str) -> Request:
        entry = self.entries[model]
        return build_request(
            example,
            constrain=self.options.constrain,
            temperature=entry.temperature,
            max_tokens=entry.max_tokens,
            seed=entry.seed,
        )

    def request_for(self, target: Target) -> Request:
        if target.distill_request is None:
            target.distill_request = self.build_request(target.example, target.model)
        return target.distill_request

    def submit(self, target: Target) -> Future[Completion]:
        return self.engine.submit(self.entries[target.model], self.request_for(target), target.repetition)

    def prefetch(self, targets: Iterable[Target]) -> None:
        """Queue the targets' requests now: the engine runs them at each model's concurrency
        while pytest walks the items in order. A request that can't be built is left to the
        item itself, which then reports it (prefetching must not end the run)."""
        for target in targets:
            try:
                self.submit(target)
            except Exception:
                continue

    # --- folder items --------------------------------------------------------
    def answer(self, item: pytest.Item, target: Target) -> Completion:
        """Setup: the model's answer, and the judge's verdict for judged scorers."""
        try:
            return self._answer(item, target)
        except OUR_ERRORS:
            raise
        except Exception as exc:
            raise self.internal_error(item, target, exc) from None

    def score(self, item: pytest.Item, target: Target, completion: Completion) -> None:
        """Call: score the answer; a wrong answer raises Miss."""
        try:
            self._score(item, target, completion)
        except OUR_ERRORS:
            raise
        except Exception as exc:
            raise self.internal_error(item, target, exc) from None

    def _answer(self, item: pytest.Item, target: Target) -> Completion:
        name = scorer_name_for(target.example)
        if name is None:  # a task type without a scorer yet (an unknown one stops collection)
            task = target.example.suite.task_type.value
            reason = f"no scorer yet for task type '{task}'"
            self.record(item, target, SKIP, explanation=reason)
            pytest.skip(reason)
        try:
            completion = self.engine.complete(self.entries[target.model], self.request_for(target), target.repetition)
        except ProviderError as exc:
            self.record(item, target, ERROR, error=str(exc), scorer=name)
            raise ProviderFailure(f"error: {exc}") from None
        if uses_judge(name):
            # The judge is a second model call: made in setup as well, so that its failure is
            # a pytest error like the model's own, never a miss.
            self._judged[item.nodeid] = self._score_or_error(item, target, completion, name)
        return completion

    def _score(self, item: pytest.Item, target: Target, completion: Completion) -> None:
        name = scorer_name_for(target.example)
        assert name is not None  # answer() skipped the item otherwise
        result = self._judged.pop(item.nodeid, None) or self._score_or_error(item, target, completion, name)
        extra = {**_jsonable(result.details), **self._also(target, completion, name)}
        self.record_answer(item, target, completion, result, name, extra=extra)
        if not result.passed:
            raise Miss(f"miss: {result.explanation}")

    def _scorer(self, name: str, example: Example) -> Scorer:
        return make_scorer(name, self.judge_for(example) if uses_judge(name) else None)

    def _score_or_error(self, item: pytest.Item, target: Target, completion: Completion, name: str) -> Score:
        """Score, or record an error and raise ProviderFailure when the answer can't be scored
        (no readable judge verdict, a reference query that fails): never a pass or a miss."""
        try:
            return self._scorer(name, target.example)(target.example, completion)
        except (ScoringError, DistillError) as exc:
            self.record_answer(item, target, completion, None, name, error=str(exc))
            raise ProviderFailure(f"error: {exc}") from None

    def _also(self, target: Target, completion: Completion, primary: str) -> dict[str, Any]:
        """distill.toml `also` scorers: recorded into Record.extra["also"], never gating."""
        results: dict[str, Any] = {}
        for name in target.example.suite.settings.also:
            if name == primary:
                continue
            try:
                score = self._scorer(name, target.example)(target.example, completion)
            except (ScoringError, DistillError) as exc:
                results[name] = {"error": str(exc)}
                continue
            results[name] = {"value": round(score.value, 4), "passed": score.passed, **_jsonable(score.details)}
        return {"also": results} if results else {}

    # --- the judge -----------------------------------------------------------
    def judge_entry(self, name: str) -> ModelEntry:
        """The judge's entry: an evaluated model's own entry when it is one (one provider, one load)."""
        entry = self.entries.get(name) or self._judge_entries.get(name)
        if entry is None:
            entry = self._judge_entries[name] = self._resolve(name)
        return entry

    @property
    def judge_entries(self) -> list[ModelEntry]:
        return list(self._judge_entries.values())

    def judge_for(self, example: Example) -> Judge:
        """--judge, else the suite's distill.toml judge, else the embedded model. Its requests go
        through the engine: same cache, retries and rate limits as the evaluated models."""
        return self.judge_named(self.options.judge or example.suite.settings.judge or DEFAULT_JUDGE)

    def judge_named(self, name: str) -> Judge:
        """The judge model called `name` (assert_judged names one too)."""
        entry = self.judge_entry(name)
        return Judge(
            lambda request: self.engine.complete(entry, request), name=name, cost=lambda usage: api_cost(entry, usage)
        )

    # --- records ---------------------------------------------------------------
    def record(self, item: pytest.Item, target: Target, outcome: Outcome, **values: Any) -> Record:
        suite = target.example.suite
        record = Record(
            suite=target.suite_label,
            suite_path=_relative(suite.path, self.options.rootdir),
            model=target.model,
            example_id=target.example.id,
            repetition=target.repetition,
            outcome=outcome,
            nodeid=item.nodeid,
            expected=_show(target.example.answer),
            **values,
        )
        item.user_properties.extend(record.to_properties())
        return record

    def record_answer(
        self,
        item: pytest.Item,
        target: Target,
        completion: Completion,
        result: Score | None,
        scorer: str,
        *,
        extra: dict[str, Any] | None = None,
        error: str = "",
    ) -> None:
        """The Record of a scored answer; with `error` (and no result) an answer that could not be scored."""
        entry = self.entries[target.model]
        usage = completion.usage
        outcome = ERROR if error or result is None else PASS if result.passed else MISS
        self.record(
            item,
            target,
            outcome,
            error=error,
            extra=extra or {},
            score=result.value if result else None,
            latency_s=completion.latency_s,
            input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens,
            cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens,
            cost_usd=api_cost(entry, usage),
            finished_at=completion.finished_at or time.time(),
            cached=completion.cached,
            constrained=completion.constrained,
            finish_reason=completion.finish_reason,
            output=completion.text
            if not completion.tool_calls
            else _show([c.to_dict() for c in completion.tool_calls]),
            explanation=result.explanation if result else error,
            scorer=scorer,
        )

    def internal_error(self, item: pytest.Item, target: Target, exc: BaseException) -> InternalError:
        """Record a plugin bug (once per item) and the exception to raise for it."""
        trace = redact.text("".join(traceback.format_exception(exc)).rstrip())
        if not recorded(item):
            self.record(
                item,
                target,
                INTERNAL,
                error=trace[-_MAX_TRACEBACK:],
                explanation=f"{INTERNAL_ERROR}: {type(exc).__name__}",
            )
        return InternalError(item.nodeid, trace)


def recorded(item: pytest.Item) -> bool:
    """Whether the item has its Record already."""
    return any(name == PROPERTY_PREFIX + "outcome" for name, _ in item.user_properties)


@functools.lru_cache(maxsize=1024)  # once per suite folder, not per record: resolve() stats every part
def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _jsonable(value: Any) -> Any:
    """Scorer details as plain JSON data: records travel through xdist and into reports."""
    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    return json.dumps(value, ensure_ascii=False, sort_keys=True)
