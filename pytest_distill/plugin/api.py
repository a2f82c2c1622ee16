"""The Python API for hand-written tests over suites.

    from pytest_distill import examples, assert_tool_call_equivalent

    @examples("suites/smart-home")
    def test_smart_home(distill_model, distill_example):
        reply = distill_model.respond(distill_example)
        assert_tool_call_equivalent(reply, distill_example.answer, tools=distill_example.suite.tools)

`@examples` parametrizes the test over the suite's examples x --model (x --repeat), with
the same ids as folder suites and honouring --limit and --sample. Each item's Record is written by the
run's Evaluator (a Case is its Target), so it shows in the end table, the JSON report and
the JUnit properties: a failing assert is a miss, a provider error is an error, an
exception from pytest-distill itself an internal error. hooks.py routes the hooks and
fixtures here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from pytest_distill.core.errors import DistillError
from pytest_distill.core.records import ERROR, MISS, PASS, SKIP
from pytest_distill.models.base import Completion, ProviderError, Request
from pytest_distill.plugin.calls import JUDGED, CallError, ModelFactory, ScoredMiss, record_plain
from pytest_distill.plugin.collect import ExampleItem, item_params, planned_models, select_examples
from pytest_distill.plugin.evaluate import OUR_ERRORS, Evaluator, Target, recorded
from pytest_distill.plugin.state import SESSION_KEY, RunState
from pytest_distill.scoring import (
    scorer_name_for,
)
from pytest_distill.scoring.base import Score
from pytest_distill.scoring.toolcalls import tool_call_equivalence
from pytest_distill.suite import Example, Suite, is_suite_dir, load_suite

EXAMPLES_MARK = "distill_examples"
CASE_FIXTURE = "distill_case"
MODEL_FIXTURE = "distill_model"
MODEL_NAME_FIXTURE = "distill_model_name"
_SUITES = pytest.StashKey[dict[Path, Suite]]()
_HANDLE = pytest.StashKey["ModelHandle"]()


# --- assertions ----------------------------------------------------------------------


class ToolCallMismatch(ScoredMiss):
    """A reply that is not the expected call: an assertion failure, hence a miss."""


def assert_tool_call_equivalent(reply: Any, expected: Any, tools: Any = None) -> Score:
    """Assert the reply makes the expected call(s) under the equivalence rules of
    docs/tool-calling.md. `reply`: a Completion, text, or a call as a dict; `expected`: a
    call {"name", "parameters"}, a list of calls, or their JSON; `tools`: the OpenAI tools
    list (or a Suite) whose schemas give defaults and types; without it, no defaults."""
    __tracebackhide__ = True
    score = tool_call_equivalence(expected, reply, tools)
    if not score.passed:
        raise ToolCallMismatch(score)
    return score


# --- the decorator and parametrization -------------------------------------------------


def examples(suite: str | os.PathLike[str], *, limit: int | None = None):
    """Run the decorated test once per example of the suite folder x --model x --repeat.

    A relative path is looked up beside the test file, then at the rootdir, then in the
    current directory. --limit (or --sample) applies, and `limit` caps it further for this test
    (the first `limit` of the sample)."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")

    def decorate(function):
        function = pytest.mark.distill_examples(os.fspath(suite), limit=limit)(function)
        # A hidden fixture carries the parameter, so `distill_model` and `distill_example` stay optional.
        return pytest.mark.usefixtures(CASE_FIXTURE)(function)

    return decorate


@dataclass(eq=False)  # identity: an Example is not hashable
class Case:
    """One parametrized item: which example, on which model, which repetition (an evaluate.Target)."""

    example: Example
    model: str
    repetition: int
    suite_label: str  # its own table row: a custom test beside the folder suite must not merge with it
    distill_request: Request | None = field(default=None, repr=False)


def generate_tests(metafunc: pytest.Metafunc, state: RunState) -> None:
    mark = metafunc.definition.get_closest_marker(EXAMPLES_MARK)
    if mark is None:
        if MODEL_NAME_FIXTURE in metafunc.fixturenames:  # a plain test, once per --model
            metafunc.parametrize(MODEL_NAME_FIXTURE, list(state.options.models), indirect=True)
        return
    if not mark.args:
        raise pytest.Collector.CollectError("@examples needs a suite folder")
    suite = _suite(mark.args[0], metafunc)
    options = state.options
    rows = select_examples(suite, options, cap=mark.kwargs.get("limit"))
    label = f"{suite.name}::{metafunc.definition.originalname}"
    cases, ids = [], []
    try:
        models = planned_models(state, suite.path)
    except DistillError as exc:
        raise pytest.Collector.CollectError(str(exc)) from None
    for model in models:
        repeat = state.models.plan.repeat_for(model) if state.models.plan is not None else options.repeat
        for repetition in range(1, repeat + 1):
            for example in rows:
                cases.append(Case(example, model, repetition, label))
                ids.append(item_params(model, example, repetition, repeat))  # as folder suites
    metafunc.parametrize(CASE_FIXTURE, cases, ids=ids, indirect=True)


def _suite(spec: Any, metafunc: pytest.Metafunc) -> Suite:
    path = Path(spec)
    config = metafunc.config
    candidates = (
        [path]
        if path.is_absolute()
        else [metafunc.definition.path.parent / path, config.rootpath / path, Path.cwd() / path]
    )
    folder = next((c for c in candidates if is_suite_dir(c)), None)
    if folder is None:
        looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise pytest.Collector.CollectError(
            f"@examples({os.fspath(spec)!r}): no suite folder (a folder with job_description.json) at {looked}"
        )
    cache = config.stash.setdefault(_SUITES, {})
    key = folder.resolve()
    if key not in cache:
        try:
            cache[key] = load_suite(folder, config.rootpath)
        except DistillError as exc:  # bad data: one line naming the file, line and field
            raise pytest.Collector.CollectError(str(exc)) from None
    return cache[key]


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get(CASE_FIXTURE) if callspec is not None else None
    return value if isinstance(value, Case) else None


def targets(items: list[pytest.Item]) -> list[Target]:
    """The items whose model answer can be requested ahead: folder items with a scorer, and
    @examples tests that use the model fixture."""
    found: list[Target] = []
    for item in items:
        if isinstance(item, ExampleItem):
            if scorer_name_for(item.example) is not None:
                found.append(item)
        elif (case := case_of(item)) is not None and MODEL_FIXTURE in getattr(item, "fixturenames", ()):
            found.append(case)
    return found


# --- fixtures (hooks.py declares them) ---------------------------------------------------


def case_fixture(request: pytest.FixtureRequest) -> Case:
    case = getattr(request, "param", None)
    if not isinstance(case, Case):
        pytest.fail(
            "the 'distill_example' fixture comes with @examples(...) from pytest_distill "
            "(a plain test asks a model with distill_model('name').respond(...))",
            pytrace=False,
        )
    return case


def model_fixture(request: pytest.FixtureRequest) -> ModelHandle | ModelFactory:
    """Inside @examples, the item's --model, its answer requested now, in setup: a provider
    failure is then a pytest error (not a failure), and serial runs have it prefetched with
    every other request. In a plain test, a factory: distill_model("name") -> ModelClient."""
    case = case_of(request.node)
    if case is None:
        return ModelFactory(request.node)
    handle = ModelHandle(request.config.stash[SESSION_KEY].evaluator, request.node, case)
    request.node.stash[_HANDLE] = handle
    handle.prepare()
    return handle


class ModelHandle:
    """The `distill_model` fixture: one --model, bound to the running test."""

    def __init__(self, evaluator: Evaluator, item: pytest.Item, case: Case) -> None:
        self.name = case.model
        self.entry = evaluator.entries[case.model]
        self.repetition = case.repetition
        self.last: Completion | None = None  # the latest reply: its latency and tokens are recorded
        self._evaluator = evaluator
        self._item = item
        self._case = case
        self._prepared: Completion | None = None

    def __repr__(self) -> str:
        return f"<model {self.name}>"

    def request(self, example: Example | None = None, **changes: Any) -> Request:
        """The Request the model gets for an example (the suite's prompt), with changes."""
        if example is None or example is self._case.example:
            request = self._evaluator.request_for(self._case)
        else:
            request = self._evaluator.build_request(example, self._case.model)
        return request.with_params(**changes) if changes else request

    def prepare(self) -> None:
        self._prepared = self.respond()

    def respond(self, example: Example | None = None, **changes: Any) -> Completion:
        """The model's reply (a Completion: .text, .tool_calls, .usage, .latency_s) to the
        example, through the run's engine (cache, retries, rate limits). `changes` are
        Request fields, e.g. max_tokens=64 or system="..."."""
        if self._prepared is not None and (example is None or example is self._case.example) and not changes:
            self.last = self._prepared
            return self._prepared
        try:
            completion = self._evaluator.engine.complete(self.entry, self.request(example, **changes), self.repetition)
        except ProviderError as exc:
            if not recorded(self._item):
                self._evaluator.record(self._item, self._case, ERROR, error=str(exc), scorer=_scorer(self._item))
            # One line, no traceback, and an error (in setup or in the test body), not a failure.
            raise CallError(f"error: {exc}") from None
        except OUR_ERRORS:
            raise
        except Exception as exc:
            raise self._evaluator.internal_error(self._item, self._case, exc) from None
        self.last = completion
        return completion


# --- recording the outcome ---------------------------------------------------------------


def record_call(item: pytest.Item, state: RunState, exc: BaseException | None) -> None:
    """After the test body of an @examples item: its Record, unless one is written already."""
    case = case_of(item)
    if case is None:
        record_plain(item, state, exc)
        return
    if recorded(item):
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit, pytest.exit.Exception, pytest.xfail.Exception)):
        return
    evaluator = state.evaluator
    handle = item.stash.get(_HANDLE, None)
    completion = handle.last if handle is not None else None
    scorer = _scorer(item)
    judged = item.stash.get(JUDGED, [])
    extra = {"judge": judged[0] if len(judged) == 1 else judged} if judged else {}
    if isinstance(exc, pytest.skip.Exception):
        evaluator.record(item, case, SKIP, explanation=str(exc.msg if hasattr(exc, "msg") else exc), scorer=scorer)
        return
    if isinstance(exc, CallError):  # the judge failed in the test body: an error, never a miss
        evaluator.record(item, case, ERROR, error=str(exc.msg), scorer=scorer)
        return
    if exc is not None and not isinstance(exc, (AssertionError, pytest.fail.Exception)):
        # The test could not decide (a bug in the test, or unexpected data): an error, never a miss.
        evaluator.record(item, case, ERROR, error=f"{type(exc).__name__}: {exc}"[:1000], scorer=scorer)
        return
    if isinstance(exc, ScoredMiss):
        score = exc.score
    elif exc is not None:  # a failed assert or pytest.fail(): the model's answer was wrong
        score = Score(False, 0.0, (str(exc).strip() or "assertion failed")[:1000])
    else:
        score = Score(True, 1.0, "")
    if completion is None:
        evaluator.record(
            item,
            case,
            PASS if score.passed else MISS,
            score=score.value,
            explanation=score.explanation,
            scorer=scorer,
            extra=extra,
        )
    else:
        evaluator.record_answer(item, case, completion, score, scorer, extra=extra)


def _scorer(item: pytest.Item) -> str:
    return f"test:{getattr(item, 'originalname', item.name)}"


__all__ = ["Case", "ModelHandle", "ToolCallMismatch", "assert_tool_call_equivalent", "examples"]
