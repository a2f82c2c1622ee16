"""The Python API for hand-written tests over suites.

    from pytest_distill import examples, assert_tool_call_equivalent

    @examples("suites/smart-home")
    def test_smart_home(model, example):
        reply = model.respond(example)
        assert_tool_call_equivalent(reply, example.answer, tools=example.suite.tools)

`@examples` parametrizes the test over the suite's examples x --model (x --repeat), with
the same ids as folder suites and honouring --limit. Each item records a results.Record
through the plugin's session, so it shows in the end table, the JSON report and the JUnit
properties: a failing assert is a miss, a provider error is an error. plugin.py routes the
hooks and fixtures here.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from pytest_distill.plugin.collect import SESSION_KEY, item_params
from pytest_distill.core.errors import DistillError
from pytest_distill.models.base import Completion, ProviderError
from pytest_distill.core.records import ERROR, MISS, PASS, SKIP, PROPERTY_PREFIX
from pytest_distill.scoring.base import Score
from pytest_distill.scoring.toolcalls import tool_call_equivalence
from pytest_distill.suite import Example, Suite, load_suite, is_suite_dir

if TYPE_CHECKING:
    from pytest_distill.plugin.session import DistillSession

EXAMPLES_MARK = "distill_examples"
CASE_FIXTURE = "distill_case"
_SUITES = pytest.StashKey[dict[Path, Suite]]()
_HANDLE = pytest.StashKey["ModelHandle"]()


# --- assertions ----------------------------------------------------------------------


class ToolCallMismatch(AssertionError):
    """A reply that is not the expected call: an assertion failure, hence a miss."""

    def __init__(self, score: Score) -> None:
        super().__init__(score.explanation)
        self.score = score


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
    current directory. --limit applies, and `limit` caps it further for this test."""
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be at least 1, got {limit}")

    def decorate(function):
        function = pytest.mark.distill_examples(os.fspath(suite), limit=limit)(function)
        # A hidden fixture carries the parameter, so `model` and `example` stay optional.
        return pytest.mark.usefixtures(CASE_FIXTURE)(function)

    return decorate


@dataclass(eq=False)  # identity: an Example is not hashable; the session memoizes its request here
class Case:
    """One parametrized item: which example, on which model, which repetition."""

    example: Example
    model: str
    repetition: int


def generate_tests(metafunc: pytest.Metafunc, session: DistillSession) -> None:
    mark = metafunc.definition.get_closest_marker(EXAMPLES_MARK)
    if mark is None:
        return
    if not mark.args:
        raise pytest.Collector.CollectError("@examples needs a suite folder")
    suite = _suite(mark.args[0], metafunc)
    limits = [n for n in (session.limit, mark.kwargs.get("limit")) if n]
    rows = suite.examples[: min(limits)] if limits else suite.examples
    cases, ids = [], []
    for model in session.model_names:
        for repetition in range(1, session.repeat + 1):
            for example in rows:
                cases.append(Case(example, model, repetition))
                ids.append(item_params(model, example, repetition, session.repeat))  # as folder suites
    metafunc.parametrize(CASE_FIXTURE, cases, ids=ids, indirect=True)


def _suite(spec: Any, metafunc: pytest.Metafunc) -> Suite:
    path = Path(spec)
    config = metafunc.config
    candidates = [path] if path.is_absolute() else [
        metafunc.definition.path.parent / path, config.rootpath / path, Path.cwd() / path]
    folder = next((c for c in candidates if is_suite_dir(c)), None)
    if folder is None:
        looked = ", ".join(str(c) for c in dict.fromkeys(candidates))
        raise pytest.Collector.CollectError(
            f"@examples({os.fspath(spec)!r}): no suite folder (a folder with job_description.json) at {looked}")
    cache = config.stash.setdefault(_SUITES, {})
    key = folder.resolve()
    if key not in cache:
        try:
            cache[key] = load_suite(folder)
        except DistillError as exc:  # bad data: one line naming the file, line and field
            raise pytest.Collector.CollectError(str(exc)) from None
    return cache[key]


def case_of(item: pytest.Item) -> Case | None:
    callspec = getattr(item, "callspec", None)
    value = callspec.params.get(CASE_FIXTURE) if callspec is not None else None
    return value if isinstance(value, Case) else None


# --- fixtures (plugin.py declares them) ------------------------------------------------


def case_fixture(request: pytest.FixtureRequest) -> Case:
    case = getattr(request, "param", None)
    if not isinstance(case, Case):
        pytest.fail("the 'model' and 'example' fixtures come with @examples(...) from pytest_distill", pytrace=False)
    return case


def model_fixture(request: pytest.FixtureRequest, case: Case) -> ModelHandle:
    """The example's answer is requested now, in setup: a provider failure is then a pytest
    error (not a failure), and serial runs have it prefetched with every other request."""
    handle = ModelHandle(request.config.stash[SESSION_KEY], request.node, case)
    request.node.stash[_HANDLE] = handle
    handle.prepare()
    return handle


class _Target:
    """What the session reads from an item to build requests and records."""

    def __init__(self, item: pytest.Item, case: Case, example: Example | None = None) -> None:
        self.example = example or case.example
        self.model = case.model
        self.repetition = case.repetition
        self.nodeid = item.nodeid
        self.user_properties = item.user_properties
        # Its own row in the table: a custom test beside the folder suite must not merge with it.
        self.suite_label = f"{case.example.suite.name}::{getattr(item, 'originalname', item.name)}"


class ModelHandle:
    """The `model` fixture: one --model, bound to the running test."""

    def __init__(self, session: DistillSession, item: pytest.Item, case: Case) -> None:
        self.name = case.model
        self.entry = session.entries[case.model]
        self.repetition = case.repetition
        self.last: Completion | None = None  # the latest reply: its latency and tokens are recorded
        self._session = session
        self._item = item
        self._case = case
        self._prepared: Completion | None = None

    def __repr__(self) -> str:
        return f"<model {self.name}>"

    def request(self, example: Example | None = None, **changes: Any):
        """The Request the model gets for an example (the suite's prompt), with changes."""
        own = example is None or example is self._case.example
        request = self._session.request_for(self._case if own else _Target(self._item, self._case, example))
        return request.with_params(**changes) if changes else request

    def prepare(self) -> None:
        self._prepared = self.respond()

    def respond(self, example: Example | None = None, **changes: Any) -> Completion:
        """The model's reply (a Completion: .text, .tool_calls, .usage, .latency_s) to the
        example, through the session's engine (cache, retries, rate limits). `changes` are
        Request fields, e.g. max_tokens=64 or system="..."."""
        if self._prepared is not None and (example is None or example is self._case.example) and not changes:
            self.last = self._prepared
            return self._prepared
        try:
            completion = self._session.engine.complete(self.entry, self.request(example, **changes), self.repetition)
        except ProviderError as exc:
            if not _recorded(self._item):
                self._session._record(_Target(self._item, self._case), ERROR, error=str(exc), scorer=_scorer(self._item))
            # One line, no traceback: in setup, pytest reports it as an error, not a failure.
            pytest.fail(f"error: {exc}", pytrace=False)
        self.last = completion
        return completion


# --- recording the outcome ---------------------------------------------------------------


def record_call(item: pytest.Item, session: DistillSession, exc: BaseException | None) -> None:
    """After the test body of an @examples item: its Record, unless one is written already."""
    case = case_of(item)
    if case is None or _recorded(item):
        return
    if isinstance(exc, (KeyboardInterrupt, SystemExit, pytest.exit.Exception, pytest.xfail.Exception)):
        return
    target = _Target(item, case)
    handle = item.stash.get(_HANDLE, None)
    completion = handle.last if handle is not None else None
    scorer = _scorer(item)
    if isinstance(exc, pytest.skip.Exception):
        session._record(target, SKIP, explanation=str(exc.msg if hasattr(exc, "msg") else exc), scorer=scorer)
        return
    if exc is not None and not isinstance(exc, (AssertionError, pytest.fail.Exception)):
        # The test could not decide (a bug, or unexpected data): an error, never a miss.
        session._record(target, ERROR, error=f"{type(exc).__name__}: {exc}"[:1000], scorer=scorer)
        return
    if isinstance(exc, ToolCallMismatch):
        score = exc.score
    elif exc is not None:  # a failed assert or pytest.fail(): the model's answer was wrong
        score = Score(False, 0.0, (str(exc).strip() or "assertion failed")[:1000])
    else:
        score = Score(True, 1.0, "")
    if completion is None:
        session._record(target, PASS if score.passed else MISS, score=score.value,
                        explanation=score.explanation, scorer=scorer)
    else:
        session.record_answer(target, completion, score, scorer)


def _recorded(item: pytest.Item) -> bool:
    return any(name == PROPERTY_PREFIX + "outcome" for name, _ in item.user_properties)


def _scorer(item: pytest.Item) -> str:
    return f"test:{getattr(item, 'originalname', item.name)}"


__all__ = ["Case", "ModelHandle", "ToolCallMismatch", "assert_tool_call_equivalent", "examples"]
