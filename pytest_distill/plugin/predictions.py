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
from pathlib import Path
from typing import TYPE_CHECKING

from pytest_distill.core.errors import ConfigError, DistillError
from pytest_distill.models.base import Completion, ProviderError
from pytest_distill.models.registry import create_provider
from pytest_distill.suite import build_request, load_suite

if TYPE_CHECKING:
    from pytest_distill.plugin.session import DistillSession


def prediction_text(completion: Completion) -> str:
    """What the model answered: its text, or its tool calls as canonical JSON."""
    if completion.tool_calls:
        return json.dumps([c.to_dict() for c in completion.tool_calls], ensure_ascii=False, sort_keys=True)
    return completion.text.strip()


def predict(session: DistillSession, suite_dir: str | Path, model: str | None = None,
            limit: int | None = None) -> dict[str, str]:
    """{example id: prediction} for the suite's examples (the first `limit`, default --limit)."""
    if model is None:
        if len(session.model_names) != 1:
            raise ConfigError(f"this run has several models ({', '.join(session.model_names)}): "
                              "pass model= to distill_predictions")
        model = session.model_names[0]
    entry = session.entries.get(model)
    if entry is None:
        assert session.registry is not None
        entry = session.registry.get(model)
        create_provider(entry).check()
        session.entries[model] = entry
    if entry.temperature != 0:
        raise ConfigError(f"model '{model}' runs at temperature {entry.temperature!r}: snapshot predictions "
                          "need temperature = 0 in its models.toml entry, or they change from run to run")
    path = Path(suite_dir)
    suite = load_suite(path if path.is_absolute() else session.config.rootpath / path)
    limit = limit if limit is not None else session.limit
    examples = suite.examples[:limit] if limit else suite.examples
    requests = [build_request(e, constrain=session.constrain, temperature=entry.temperature, seed=entry.seed,
                              max_tokens=entry.max_tokens)
                for e in examples]
    futures = [session.engine.submit(entry, r) for r in requests]  # all in flight at the model's concurrency
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


def fixture_for(session: DistillSession) -> Callable[..., dict[str, str]]:
    def distill_predictions(suite_dir: str | Path, model: str | None = None, limit: int | None = None):
        import pytest

        try:
            return predict(session, suite_dir, model=model, limit=limit)
        except (DistillError, ProviderError) as exc:  # one line, no traceback into the plugin
            pytest.fail(f"distill_predictions: {exc}", pytrace=False)

    return distill_predictions
