"""The run's decision: which model serves which task, what that costs blended over a traffic
mix, and the saving against sending all traffic to the best frontier model.

Pure (no pytest, no I/O).

- Each suite is served by its route (core.compare.route: the cheapest model within the
  tolerance of the best, by the paired test's ranking); a suite run with one model is
  served by it; a suite with no route (no cost known within the tolerance) by its best.
- The traffic mix weighs the suites: equal by default; given weights are normalised, and
  suites the mix leaves out get no traffic.
- Blended $ per million requests = sum over suites of share x the serving model's
  $ per million requests (unknown when any served suite's cost is unknown).
- The best frontier model: of the API-priced entries that ran every served suite, the one
  with the highest mean rate over those suites (equal means: the tie key, then the name).
  Saving = 1 - blended / that model's blended cost at the same mix.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from pytest_distill.core.compare import SuiteComparison
from pytest_distill.core.cost import Priced
from pytest_distill.core.gates import gated_rate
from pytest_distill.core.matrix import is_frontier
from pytest_distill.core.records import Summary


@dataclass(frozen=True)
class Served:
    suite: str
    model: str
    share: float  # of the traffic, 0..1
    rate: float | None
    delta_pp: float | None  # its rate - the suite's best rate
    per_million: float | None


@dataclass(frozen=True)
class Routing:
    rows: tuple[Served, ...]
    mix_given: bool
    blended_per_million: float | None
    frontier_model: str | None  # the best frontier model over the served suites
    frontier_per_million: float | None  # all traffic to it, at the same mix
    saving: float | None  # 1 - blended / frontier (a fraction; negative: routing costs more)
    notes: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def shares(suites: Sequence[str], mix: Mapping[str, float] | None) -> tuple[dict[str, float], list[str]]:
    """Each suite's share of the traffic, and notes about the mix."""
    if not mix:
        return {s: 1 / len(suites) for s in suites}, []
    notes = []
    unknown = sorted(set(mix) - set(suites))
    if unknown:
        notes.append(f"traffic mix names suites not in this run: {', '.join(unknown)}")
    left_out = [s for s in suites if s not in mix]
    if left_out:
        notes.append(f"traffic mix gives no traffic to: {', '.join(left_out)}")
    total = sum(mix.get(s, 0.0) for s in suites)
    if total <= 0:
        notes.append("traffic mix gives no traffic to any suite of this run: equal traffic used")
        return {s: 1 / len(suites) for s in suites}, notes
    return {s: mix.get(s, 0.0) / total for s in suites}, notes


def _blend(
    serving: Mapping[str, str], share: Mapping[str, float], per_million: Mapping[tuple[str, str], float | None]
) -> float | None:
    total = 0.0
    for suite, model in serving.items():
        if share[suite] == 0:
            continue
        cost = per_million.get((suite, model))
        if cost is None:
            return None
        total += share[suite] * cost
    return total


def plan_routing(
    summaries: Sequence[Summary],
    comparisons: Sequence[SuiteComparison],
    per_million: Mapping[tuple[str, str], float | None],
    entries: Mapping[str, Priced],
    tie_keys: Mapping[str, tuple[Any, ...]] | None = None,
    mix: Mapping[str, float] | None = None,
) -> Routing | None:
    """The routing table of a run; None for a run of fewer than two suites (its suite's route says it)."""
    suites = sorted({s.suite for s in summaries})
    if len(suites) < 2:
        return None
    keys = tie_keys or {}
    by_key = {(s.suite, s.model): s for s in summaries}
    compared = {c.suite: c for c in comparisons}
    share, notes = shares(suites, mix)
    rows, serving = [], {}
    for suite in suites:
        comparison = compared.get(suite)
        if comparison is None:
            model = next(s.model for s in summaries if s.suite == suite)
            delta: float | None = 0.0
        elif comparison.route is not None:
            model, delta = comparison.route.model, comparison.route.delta_pp
        else:
            model, delta = comparison.best, 0.0
            notes.append(
                f"{suite}: no cost known within {comparison.tolerance_pp:g} pp of the best: served by the best"
            )
        serving[suite] = model
        rate = gated_rate(by_key[(suite, model)])
        rows.append(
            Served(
                suite=suite,
                model=model,
                share=share[suite],
                rate=rate,
                delta_pp=delta if rate is not None else None,
                per_million=per_million.get((suite, model)),
            )
        )
    blended = _blend(serving, share, per_million)
    served = [s for s in suites if share[s] > 0]
    candidates = []
    for model in sorted({s.model for s in summaries}):
        if not is_frontier(entries.get(model)):
            continue
        rates = [gated_rate(by_key[(s, model)]) if (s, model) in by_key else None for s in served]
        if served and all(r is not None for r in rates):
            mean = sum(r or 0.0 for r in rates) / len(rates)
            candidates.append((-mean, keys.get(model, ()), model))
    frontier = min(candidates)[2] if candidates else None
    frontier_cost = None if frontier is None else _blend(dict.fromkeys(suites, frontier), share, per_million)
    if frontier is None:
        notes.append("no API-priced model ran every served suite: no saving against a frontier model")
    saving = None
    if blended is not None and frontier_cost:
        saving = 1 - blended / frontier_cost
    return Routing(
        rows=tuple(rows),
        mix_given=bool(mix),
        blended_per_million=blended,
        frontier_model=frontier,
        frontier_per_million=frontier_cost,
        saving=saving,
        notes=tuple(notes),
    )
