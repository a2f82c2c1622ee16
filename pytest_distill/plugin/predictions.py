"""Per-example predictions for snapshot tests (the `distill_predictions` fixture).

    def test_banking77_predictions(distill_predictions, snapshot):
        assert distill_predictions("suites/banking77", model="smollm2-135m") == snapshot

`snapshot` is syrupy's fixture: the first `pytest --snapshot-update` stores the
predictions ({example id: prediction}) beside the test; later runs diff against them and
show which examples changed. Only deterministic models make stable snapshots, so the
model must run at temperature 0.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest

from pytest_distill.core.errors import ConfigError, DistillError
from pytest_distill.models.base import Completion, ProviderError
from pytest_distill.models.registry import create_provider
from pytest_distill.plugin.collect import select_examples
from pytest_distill.plugin.state import RunState
from pytest_distill.suite import build_request, load_suite


def prediction_text(completion: Completion) -> str:
    """What the model answered: its text, or its tool calls as canonical JSON."""
    if completion.tool_calls:
        return json.dumps([c.to_dict() for c in completion.tool_calls], ensure_ascii=False, sort_keys=True)
    return completion.text.strip()


def predict(
    state: RunState, suite_dir: str | Path, model: str | None = None, limit: int | None = None
) -> dict[str, str]:
    """{example id: prediction} for the suite's examples (the first `limit`, default --limit; --sample's sample)."""
    options = state.options
    if model is None:
        if len(options.models) != 1:
            raise ConfigError(
                f"this run has several models ({', '.join(options.models)}): pass model= to distill_predictions"
            )
        model = options.models[0]
    entry = state.models.entries.get(model)
    if entry is None:
        entry = state.models.registry.get(model)
        create_provider(entry).check()
        state.models.entries[model] = entry
    if entry.temperature != 0:
        raise ConfigError(
            f"model '{model}' runs at temperature {entry.temperature!r}: snapshot predictions "
            "need temperature = 0 in its models.toml entry, or they change from run to run"
        )
    path = Path(suite_dir)
    suite = load_suite(path if path.is_absolute() else options.rootdir / path, options.rootdir)
    # the fixture's own limit replaces --limit; --sample applies as to the run's items
    examples = select_examples(suite, replace(options, shard=None, limit=limit if limit is not None else options.limit))
    requests = [
        build_request(
            e, constrain=options.constrain, temperature=entry.temperature, seed=entry.seed, max_tokens=entry.max_tokens
        )
        for e in examples
    ]
    futures = [state.evaluator.engine.submit(entry, r) for r in requests]  # all in flight at the model's concurrency
    predictions, failures = {}, []
    for example, future in zip(examples, futures, strict=True):
        try:
            predictions[example.id] = prediction_text(future.result())
        except ProviderError as exc:
            failures.append(f"{example.id}: {exc}")
    if failures:
        # An error is not a prediction: snapshotting it would store the outage.
        raise ProviderError(f"{len(failures)} of {len(examples)} requests failed: " + "; ".join(failures[:5]))
    return predictions


def fixture_for(state: RunState) -> Callable[..., dict[str, str]]:
    def distill_predictions(suite_dir: str | Path, model: str | None = None, limit: int | None = None):
        try:
            return predict(state, suite_dir, model=model, limit=limit)
        except (DistillError, ProviderError) as exc:  # one line, no traceback into the plugin
            pytest.fail(f"distill_predictions: {exc}", pytrace=False)

    return distill_predictions
