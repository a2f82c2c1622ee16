"""RunResult: everything a finished run decided and measured, as one immutable value.

plugin/finish.py builds it (records -> summaries -> costs -> baseline -> gates -> exit
status -> comparisons); every report renders from it and nothing else.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pytest_distill.core.baseline import BaselineDelta
from pytest_distill.core.compare import SuiteComparison
from pytest_distill.core.cost import Cost, VolumeReport
from pytest_distill.core.gates import Gate, GateResult
from pytest_distill.core.matrix import Matrix
from pytest_distill.core.records import INTERNAL, SKIP, Record, Summary
from pytest_distill.core.routing import Routing
from pytest_distill.core.sampling import SuiteSample
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.core.variants import VariantComparison


@dataclass(frozen=True)
class RunInfo:
    """How the run was invoked (results.json's "run")."""

    args: tuple[str, ...]
    rootdir: str
    models: tuple[str, ...]
    limit: int | None
    repeat: int
    constrain: bool
    min_pass_rate: float | None
    max_regression: float | None
    route_tolerance_pp: float
    alpha: float
    baseline: str | None
    workers: int  # xdist workers; 0 for a serial run
    exit_status: int
    duration_s: float
    # What makes shards parts of one run (plugin/shard.py), and with --distill-shard which
    # shard this is and what pytest concluded before gates: `pytest-distill merge` checks and sums them.
    definition: Mapping[str, Any] | None = None
    shard: Mapping[str, Any] | None = None
    merged_from: tuple[str, ...] | None = None  # pytest-distill merge: the shards' results.json files
    sample: int | None = None  # --sample N
    sample_seed: int | None = None  # its seed (None without --sample)


@dataclass(frozen=True)
class BaselineRun:
    path: str
    created_at: str | None
    deltas: tuple[BaselineDelta, ...]


@dataclass(frozen=True)
class SuiteGate:
    path: str  # the suite folder, relative to the rootdir
    gate: Gate


@dataclass(frozen=True)
class RunResult:
    run: RunInfo
    records: tuple[Record, ...]
    summaries: tuple[Summary, ...]
    costs: Mapping[tuple[str, str], Cost]  # (suite, model) -> cost per request and its basis
    gates: tuple[GateResult, ...]
    suites: Mapping[str, SuiteGate]  # suite name -> its folder and gate
    comparisons: tuple[SuiteComparison, ...]
    baseline: BaselineRun | None
    models: Mapping[str, Mapping[str, Any]]  # the entries as reports show them (no secrets)
    cost_notes: tuple[str, ...] = field(default=())
    serving: tuple[ServingMeasurement, ...] = field(default=())  # measured in this run (--distill-bench)
    priced_with: Mapping[str, ServingMeasurement] = field(default_factory=dict)  # model -> the rate that priced it
    volume: VolumeReport | None = None  # monthly cost at traffic levels, break-even volumes
    variants: tuple[VariantComparison, ...] = field(default=())  # same weights, other serving settings
    matrix: Matrix | None = None  # more than one suite and more than one model
    routing: Routing | None = None  # the run's overall routing table
    # model -> one line per replica (base_urls or `replicas = N`): url, devices, requests, errors,
    # latency p50/p95/mean; workers' counts summed (runtime/replicas.merge_stats)
    replicas: Mapping[str, tuple[Mapping[str, Any], ...]] = field(default_factory=dict)
    samples: Mapping[str, SuiteSample] = field(default_factory=dict)  # --sample: suite -> size of total

    def cost(self, suite: str, model: str) -> Cost:
        return self.costs.get((suite, model)) or Cost(None, "-")

    def gate_of(self, suite: str, model: str) -> GateResult | None:
        return next((g for g in self.gates if g.suite == suite and g.model == model), None)

    @property
    def skipped(self) -> int:
        return sum(r.outcome == SKIP for r in self.records)

    @property
    def internal_errors(self) -> tuple[Record, ...]:
        return tuple(r for r in self.records if r.outcome == INTERNAL)
