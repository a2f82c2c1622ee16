"""Model comparison per suite: ranking, paired significance against the best, routing advice.

Pure functions over records and summaries (no pytest).

- Ranking: by the gated rate (mean over repetitions when repeated, else the pass rate),
  highest first; ties are broken by a rule that does not depend on timing (a measured
  self-hosted cost does): the tie key of each model (core.cost.tie_key: listed price,
  then name), else the name.
- Significance: each model against the best, with the exact McNemar test on the
  examples both scored (errors and skips are left out of the pairing). With repetitions,
  an example counts as passed for a model when it passed in more than half of that
  model's scored repetitions (a tie counts as a miss): repetitions of two models are
  independent draws, so pairing repetition k with repetition k would be arbitrary.
- Routing: the cheapest model (by cost per request) whose rate is within the tolerance
  (percentage points) of the best. Models without a known cost are not candidates; of
  candidates with the same rate only the first in the ranking is one, so equal rates
  never route by a timing-dependent measured cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_distill.core import stats
from pytest_distill.core.gates import gated_rate
from pytest_distill.core.records import MISS, PASS, Record, Summary

DEFAULT_ALPHA = 0.05
DEFAULT_TOLERANCE_PP = 1.0


@dataclass
class Ranked:
    model: str
    rank: int
    rate: float | None
    delta_pp: float | None  # this rate - the best rate, in percentage points (0 for the best)
    paired: int = 0  # examples both this model and the best scored
    best_only: int = 0  # discordant pairs: the best passed, this model missed
    this_only: int = 0  # discordant pairs: this model passed, the best missed
    p_value: float | None = None  # exact McNemar; None for the best itself
    significant: bool | None = None
    cost_per_request: float | None = None


@dataclass
class Route:
    model: str
    delta_pp: float  # its rate - the best rate
    cost_ratio: float | None  # its cost / the best model's cost; None when the best has no cost
    is_best: bool


@dataclass
class SuiteComparison:
    suite: str
    best: str
    alpha: float
    tolerance_pp: float
    ranking: list[Ranked] = field(default_factory=list)
    route: Route | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SuiteComparison:
        route = data.get("route")
        return cls(
            suite=data["suite"],
            best=data["best"],
            alpha=data["alpha"],
            tolerance_pp=data["tolerance_pp"],
            ranking=[Ranked(**r) for r in data["ranking"]],
            route=Route(**route) if route else None,
        )


def example_outcomes(records: Iterable[Record]) -> dict[str, bool]:
    """Per example id: passed by majority of its scored repetitions (ties count as misses)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for r in records:
        if r.outcome in (PASS, MISS):
            counts[r.example_id][0] += r.outcome == PASS
            counts[r.example_id][1] += 1
    return {example: 2 * passed > total for example, (passed, total) in counts.items()}


def paired_test(a: dict[str, bool], b: dict[str, bool]) -> tuple[int, int, int, float]:
    """(shared examples, a-only passes, b-only passes, exact McNemar p) over examples in both."""
    shared = a.keys() & b.keys()
    a_only = sum(a[k] and not b[k] for k in shared)
    b_only = sum(b[k] and not a[k] for k in shared)
    return len(shared), a_only, b_only, stats.mcnemar_exact(a_only, b_only)


def compare(
    summaries: list[Summary],
    records: list[Record],
    costs: dict[tuple[str, str], float | None],
    tolerance_pp: float = DEFAULT_TOLERANCE_PP,
    alpha: float = DEFAULT_ALPHA,
    tie_keys: Mapping[str, tuple[Any, ...]] | None = None,
) -> list[SuiteComparison]:
    """One comparison for every suite evaluated with two or more models. `tie_keys`: per
    model, how equal rates are ordered (core.cost.tie_key); without one, by name."""
    keys = tie_keys or {}
    by_suite: dict[str, list[Summary]] = defaultdict(list)
    for s in summaries:
        by_suite[s.suite].append(s)
    grouped: dict[tuple[str, str], list[Record]] = defaultdict(list)
    for r in records:
        grouped[(r.suite, r.model)].append(r)
    comparisons = []
    for suite, group in sorted(by_suite.items()):
        if len(group) < 2:
            continue

        def order(s: Summary) -> tuple[Any, ...]:
            rate = gated_rate(s)
            return (rate is None, -(rate or 0.0), keys.get(s.model, ()), s.model)

        group = sorted(group, key=order)
        best = group[0]
        best_rate = gated_rate(best)
        best_outcomes = example_outcomes(grouped[(suite, best.model)])
        comparison = SuiteComparison(suite=suite, best=best.model, alpha=alpha, tolerance_pp=tolerance_pp)
        for rank, s in enumerate(group, start=1):
            rate = gated_rate(s)
            entry = Ranked(
                model=s.model,
                rank=rank,
                rate=rate,
                cost_per_request=costs.get((suite, s.model)),
                delta_pp=None if rate is None or best_rate is None else 100 * (rate - best_rate),
            )
            if s is best:
                entry.delta_pp = 0.0 if rate is not None else None
            else:
                outcomes = example_outcomes(grouped[(suite, s.model)])
                entry.paired, entry.best_only, entry.this_only, p = paired_test(best_outcomes, outcomes)
                entry.p_value = p
                entry.significant = p < alpha
            comparison.ranking.append(entry)
        comparison.route = route(comparison.ranking, tolerance_pp)
        comparisons.append(comparison)
    return comparisons


def route(ranking: list[Ranked], tolerance_pp: float) -> Route | None:
    """The cheapest model within tolerance_pp of the best; None without costs to compare."""
    if not ranking or ranking[0].rate is None:
        return None
    best = ranking[0]
    # A hair of slack: rates are fractions of small integers, so -1.0 pp may come out as -1.0000000001.
    candidates = [
        r
        for r in ranking
        if r.delta_pp is not None and r.delta_pp >= -tolerance_pp - 1e-9 and r.cost_per_request is not None
    ]
    # Equal rates: the ranking's tie rule decides, never a cost measured with timing noise.
    first_at_rate: dict[float | None, Ranked] = {}
    for r in candidates:
        first_at_rate.setdefault(r.rate, r)
    candidates = list(first_at_rate.values())
    if not candidates:
        return None
    chosen = min(candidates, key=lambda r: (r.cost_per_request or 0.0, -(r.rate or 0.0), r.rank))
    ratio = None
    if best.cost_per_request:
        ratio = (chosen.cost_per_request or 0.0) / best.cost_per_request
    elif best.cost_per_request == 0 and chosen.cost_per_request == 0:
        ratio = 1.0
    return Route(model=chosen.model, delta_pp=chosen.delta_pp or 0.0, cost_ratio=ratio, is_best=chosen is best)
