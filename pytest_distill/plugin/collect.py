"""pytest collection nodes: a suite's test file becomes one item per example x model x repetition."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pytest

from pytest_distill.core.errors import DistillError
from pytest_distill.suite import Example, load_suite

if TYPE_CHECKING:
    from pytest_distill.plugin.session import DistillSession


class ProviderFailure(Exception):
    """The model could not answer (timeout, HTTP error, crashed server): an error, not a miss."""


class Miss(AssertionError):
    """The model answered, and the answer was wrong."""


def item_params(model: str, example: Example, repetition: int, repeat: int) -> str:
    """`model[-rK]-row`: the part of every distill id that --lf, -k and CI history match on."""
    rep = f"-r{repetition}" if repeat > 1 else ""
    return f"{model}{rep}-{example.id}"


def item_name(suite: str, model: str, example: Example, repetition: int, repeat: int) -> str:
    return f"{suite}[{item_params(model, example, repetition, repeat)}]"


class SuiteFile(pytest.File):
    """A suite folder's test file (or its job_description.json when the test file is missing)."""

    def collect(self):
        session: DistillSession = self.config.stash[SESSION_KEY]
        try:
            suite = load_suite(self.path.parent)
        except DistillError as exc:
            raise self.CollectError(str(exc)) from None
        examples = suite.examples[: session.limit] if session.limit else suite.examples
        for model in session.model_names:
            for repetition in range(1, session.repeat + 1):
                for example in examples:
                    name = item_name(suite.name, model, example, repetition, session.repeat)
                    yield ExampleItem.from_parent(self, name=name, example=example, model=model,
                                                  repetition=repetition, **_structured_nodeid(self, name))


class ExampleItem(pytest.Item):
    def __init__(self, *, example: Example, model: str, repetition: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.example = example
        self.model = model
        self.repetition = repetition
        self.completion = None
        self.add_marker(pytest.mark.distill)

    @property
    def distill(self) -> DistillSession:
        return self.config.stash[SESSION_KEY]

    def setup(self) -> None:
        # The model is asked in setup: a provider failure is then a pytest *error*,
        # and only a wrong answer (in the call phase) is a *failure*.
        self.completion = self.distill.answer(self)

    def runtest(self) -> None:
        self.distill.score(self)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (Miss, ProviderFailure)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _repr_failure_py(self, excinfo, style=None):
        # pytest formats setup-phase errors here, not in repr_failure: a provider's
        # failure is one message, not a traceback through pluggy.
        if isinstance(excinfo.value, ProviderFailure):
            return str(excinfo.value)
        return super()._repr_failure_py(excinfo, style)

    def reportinfo(self):
        return self.path, self.example.line - 1, f"{self.name} ({self.example.suite.test_file.name}:{self.example.line})"


def _structured_nodeid(parent: pytest.Collector, name: str) -> dict[str, Any]:
    """pytest >= 9 keeps node ids as NodeId(path, names, params) and parses --lf's stored
    ids that way: an item named 'suite[model-id]' must carry 'model-id' as its params,
    or --lf never matches it."""
    parent_id = getattr(parent, "id", None)
    base, bracket, params = name.partition("[")
    if parent_id is None or not bracket or not hasattr(parent_id, "with_params"):
        return {}
    return {"nodeid": parent_id.child(base).with_params(params.removesuffix("]"))}


SESSION_KEY = pytest.StashKey["DistillSession"]()
