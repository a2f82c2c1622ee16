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
class RunState:
    config: pytest.Config
    options: RunOptions
    registry: Registry
    entries: dict[str, ModelEntry]  # every --model, resolved and made ready for this process
    cache: SqliteCache | None
    servers: ServerPool  # managed model servers (vLLM), controller side
    evaluator: Evaluator
    baseline: dict[str, Any] | None = None  # the results.json document compared against (controller)
    records: list[Record] = field(default_factory=list)  # the controller's, from the item reports
    result: RunResult | None = None  # set by finish()
    bench_results: list[BenchResult] = field(default_factory=list)  # --distill-bench
    serving: list[ServingMeasurement] = field(default_factory=list)  # --distill-bench: one per model
    stored_serving: dict[str, ServingMeasurement] = field(default_factory=dict)  # --distill-serving, matched
    notes: list[tuple[str, bool]] = field(default_factory=list)  # (line, is a problem): reports written or not
    started_at: float = field(default_factory=time.time)
    plan: RunPlan | None = None  # which models each suite runs, how many times (plans.py)
    resolve: Callable[[str], ModelEntry] | None = None  # a model name -> its entry, ready for this process
    # Replicas (base_urls or `replicas = N`): each process's raw per-replica counts (this one's,
    # then each xdist worker's), and each model's replicas as configured: (url, devices).
    replica_parts: list[dict[str, Any]] = field(default_factory=list)
    replica_layout: dict[str, list[tuple[str, str | None]]] = field(default_factory=dict)
    folded_misses: list[Record] = field(default_factory=list)  # misses shown one line each (misses.py)

    @property
    def is_worker(self) -> bool:
        return xdist.is_worker(self.config)


SESSION_KEY = pytest.StashKey[RunState]()
