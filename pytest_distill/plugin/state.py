"""The run's state, stashed on the pytest config under SESSION_KEY: state only.

lifecycle.py creates and closes it; the hooks route to the modules that act on it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from pytest_distill.bench.load import BenchResult
from pytest_distill.core.records import Record
from pytest_distill.core.result import RunResult
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.models.registry import ModelEntry, Registry
from pytest_distill.plugin import xdist
from pytest_distill.plugin.evaluate import Evaluator
from pytest_distill.plugin.options import RunOptions
from pytest_distill.plugin.plans import RunPlan
from pytest_distill.runtime.cache import SqliteCache
from pytest_distill.runtime.servers import ServerPool


@dataclass
class RunModels:
    """Which models this run evaluates, resolved and made ready for this process."""

    registry: Registry
    entries: dict[str, ModelEntry]  # every --model and every model a suite plans
    plan: RunPlan | None = None  # which models each suite runs, how many times (plans.py)
    resolve: Callable[[str], ModelEntry] | None = None  # a model name -> its entry, ready for this process
    # each model's replicas as configured (base_urls or `replicas = N`): (url, devices)
    replica_layout: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)


@dataclass
class Gathered:
    """What the controller gathers from the item reports and the workers' output."""

    records: list[Record] = field(default_factory=list)
    folded_misses: list[Record] = field(default_factory=list)  # misses shown one line each (misses.py)
    # each process's raw per-replica counts (this one's, then each xdist worker's)
    replica_parts: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class ServingFigures:
    """Serving measurements: this run's (--distill-bench) and stored ones (--distill-serving)."""

    bench_results: list[BenchResult] = field(default_factory=list)  # --distill-bench
    measured: list[ServingMeasurement] = field(default_factory=list)  # --distill-bench: one per model
    stored: dict[str, ServingMeasurement] = field(default_factory=dict)  # --distill-serving, matched


@dataclass
class RunState:
    """Twelve fields at most (tests/test_architecture.py): group what grows, don't add here."""

    config: pytest.Config
    options: RunOptions
    models: RunModels
    cache: SqliteCache | None
    servers: ServerPool  # managed model servers (vLLM), controller side
    evaluator: Evaluator
    baseline: dict[str, Any] | None = None  # the results.json document compared against (controller)
    gathered: Gathered = field(default_factory=Gathered)
    serving: ServingFigures = field(default_factory=ServingFigures)
    result: RunResult | None = None  # set by finish()
    notes: list[tuple[str, bool]] = field(default_factory=list)  # (line, is a problem): reports written or not
    started_at: float = field(default_factory=time.time)

    @property
    def is_worker(self) -> bool:
        return xdist.is_worker(self.config)


SESSION_KEY = pytest.StashKey[RunState]()
