"""pytest collection nodes: a suite's test file becomes one item per example x model x repetition.

What would fail every item of a suite is found here, as one collection error naming the
file and field: an unknown scorer, a prompt template naming a column the suite lacks.
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import pytest

from pytest_distill.core.errors import DistillError, SuiteError
from pytest_distill.core.sampling import SuiteSample, sample_positions
from pytest_distill.models.base import Completion, Request
from pytest_distill.plugin import lifecycle, shard
from pytest_distill.plugin.evaluate import InternalError, Miss, ProviderFailure
from pytest_distill.plugin.options import RunOptions
from pytest_distill.plugin.state import SESSION_KEY, RunState
from pytest_distill.scoring import (
    SCORERS,
)
from pytest_distill.suite import Example, Suite, TaskType, is_suite_dir, load_suite
from pytest_distill.suite.loader import (
    JOB_FILE,
    SETTINGS_FILE,
    TEST_FILES,
    find_test_file,
)


def item_params(model: str, example: Example, repetition: int, repeat: int) -> str:
    """`model[-rK]-row`: the part of every distill id that --lf, -k and CI history match on."""
    rep = f"-r{repetition}" if repeat > 1 else ""
    return f"{model}{rep}-{example.id}"


def item_name(suite: str, model: str, example: Example, repetition: int, repeat: int) -> str:
    return f"{suite}[{item_params(model, example, repetition, repeat)}]"


def collect_file(file_path: Path, parent: pytest.Collector) -> SuiteFile | None:
    """The suite's test file (or its job_description.json when there is none) as a SuiteFile."""
    folder = file_path.parent
    if not is_suite_dir(folder):
        return None
    try:
        test_file = find_test_file(folder)
    except DistillError:  # both formats present: report it once, from job_description.json
        return SuiteFile.from_parent(parent, path=file_path) if file_path.name == JOB_FILE else None
    if file_path.name in TEST_FILES and file_path == test_file:
        return SuiteFile.from_parent(parent, path=file_path)
    if file_path.name == JOB_FILE and test_file is None:
        return SuiteFile.from_parent(parent, path=file_path)
    return None


def check_suite(suite: Suite) -> None:
    """Settings that would break every item, as one SuiteError naming distill.toml and the field."""
    settings_file = suite.settings.file_of("scorer", suite.path / SETTINGS_FILE)
    name = suite.settings.scorer
    if name is not None and name not in SCORERS:
        raise SuiteError(settings_file, f"unknown scorer '{name}'; known: {', '.join(sorted(SCORERS))}", field="scorer")
    template = suite.settings.user_template
    if template:
        problem = template_problem(template, suite.examples)
        if problem:
            raise SuiteError(
                suite.settings.file_of("prompt.user_template", suite.path / SETTINGS_FILE),
                problem,
                field="prompt.user_template",
            )


def template_problem(template: str, examples: list[Example]) -> str | None:
    """Why `template` can't be filled for every example (None when it can)."""
    try:
        names = {
            field.split(".")[0].split("[")[0]
            for _, field, _, _ in string.Formatter().parse(template)
            if field is not None
        }
    except ValueError as exc:
        return f"not a valid template: {exc}"
    if any(not n or n.isdigit() for n in names):
        return "positional fields ({} or {0}) can't be filled: name a column, e.g. {question}"
    for example in examples:
        missing = sorted(names - {"question", "context", *example.fields})
        if missing:
            return (
                f"{', '.join('{' + m + '}' for m in missing)} is not a column of {example.suite.test_file.name} "
                f"(row {example.id}); columns: {', '.join(sorted({'question', 'context', *example.fields}))}"
            )
    return None


def sampled(suite: Suite, size: int, seed: int) -> list[Example]:
    """--sample: a seeded sample of the suite's examples, by label for a classification suite.
    Each keeps its id (its row in the full file), so --lf, -k and baselines line up."""
    labels = [str(e.answer) for e in suite.examples] if is_stratified(suite) else None
    positions = sample_positions(len(suite.examples), size, seed, suite.name, labels)
    return [suite.examples[p] for p in positions]


def is_stratified(suite: Suite) -> bool:
    return suite.task_type is TaskType.CLASSIFICATION


def suite_sample(suite: Suite, options: RunOptions) -> SuiteSample | None:
    """What a --sample run's rows of this suite stand for (None without --sample)."""
    if options.sample is None:
        return None
    size = min(options.sample, len(suite.examples))
    return SuiteSample(size, len(suite.examples), options.sample_seed, is_stratified(suite))


def select_examples(suite: Suite, options: RunOptions, cap: int | None = None) -> list[Example]:
    """The examples this process evaluates: --limit's first N or --sample's sample, then an
    @examples `cap` (the first of those), then this --distill-shard's part."""
    if options.sample is not None:
        examples = sampled(suite, options.sample, options.sample_seed)
    else:
        examples = suite.examples
    limits = [n for n in (options.limit, cap) if n]
    if limits:
        examples = examples[: min(limits)]
    if options.shard is not None:
        examples = [e for e in examples if shard.holds(options, suite.path, e.id)]
    return examples


def planned_models(state: RunState, folder: Path) -> tuple[str, ...]:
    """The suite's models from the run's plan, their entries made ready for this process."""
    if state.models.plan is None:
        return state.options.models
    models = state.models.plan.models_for(folder)
    lifecycle.ensure_entries(state, models)
    return models


class SuiteFile(pytest.File):
    """A suite folder's test file (or its job_description.json when the test file is missing)."""

    def collect(self):
        state: RunState = self.config.stash[SESSION_KEY]
        options = state.options
        try:
            suite = load_suite(self.path.parent, options.rootdir)
            check_suite(suite)
            models = planned_models(state, suite.path)
        except DistillError as exc:
            raise self.CollectError(str(exc)) from None
        examples = select_examples(suite, options)
        for model in models:
            repeat = state.models.plan.repeat_for(model) if state.models.plan is not None else options.repeat
            for repetition in range(1, repeat + 1):
                for example in examples:
                    name = item_name(suite.name, model, example, repetition, repeat)
                    yield ExampleItem.from_parent(
                        self,
                        name=name,
                        example=example,
                        model=model,
                        repetition=repetition,
                        **_structured_nodeid(self, name),
                    )


class ExampleItem(pytest.Item):
    """One example x model x repetition of a folder suite (an evaluate.Target)."""

    def __init__(self, *, example: Example, model: str, repetition: int, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.example = example
        self.model = model
        self.repetition = repetition
        self.completion: Completion | None = None
        self.distill_request: Request | None = None
        self.add_marker(pytest.mark.distill)

    @property
    def suite_label(self) -> str:
        return self.example.suite.name

    def setup(self) -> None:
        # The model is asked in setup: a provider failure is then a pytest *error*,
        # and only a wrong answer (in the call phase) is a *failure*.
        self.completion = self.config.stash[SESSION_KEY].evaluator.answer(self, self)

    def runtest(self) -> None:
        assert self.completion is not None
        self.config.stash[SESSION_KEY].evaluator.score(self, self, self.completion)

    def repr_failure(self, excinfo, style=None):
        if isinstance(excinfo.value, (Miss, ProviderFailure, InternalError)):
            return str(excinfo.value)
        return super().repr_failure(excinfo, style)

    def _repr_failure_py(self, excinfo, style=None):
        # pytest formats setup-phase errors here, not in repr_failure: a provider's
        # failure is one message, not a traceback through pluggy; a plugin bug is
        # its own traceback (InternalError's text), not pluggy's.
        if isinstance(excinfo.value, (ProviderFailure, InternalError)):
            return str(excinfo.value)
        return super()._repr_failure_py(excinfo, style)

    def reportinfo(self):
        return (
            self.path,
            self.example.line - 1,
            f"{self.name} ({self.example.suite.test_file.name}:{self.example.line})",
        )


def _structured_nodeid(parent: pytest.Collector, name: str) -> dict[str, Any]:
    """pytest >= 9 keeps node ids as NodeId(path, names, params) and parses --lf's stored
    ids that way: an item named 'suite[model-id]' must carry 'model-id' as its params,
    or --lf never matches it."""
    parent_id = getattr(parent, "id", None)
    base, bracket, params = name.partition("[")
    if parent_id is None or not bracket or not hasattr(parent_id, "with_params"):
        return {}
    return {"nodeid": parent_id.child(base).with_params(params.removesuffix("]"))}
