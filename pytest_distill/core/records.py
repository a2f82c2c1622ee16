"""One Record per evaluated item, and their aggregation per suite x model."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict, dataclass, field, fields
from enum import StrEnum
from typing import Any

from pytest_distill.core import stats


class Outcome(StrEnum):
    """What became of one item. str-valued: records stay plain JSON (xdist, results.json)."""

    PASS = "pass"
    MISS = "miss"  # the model answered, wrongly
    ERROR = "error"  # the model could not answer (timeout, HTTP error) or the answer could not be scored
    SKIP = "skip"
    INTERNAL = "internal"  # a bug in pytest-distill itself: never the model's error rate


PASS, MISS, ERROR, SKIP, INTERNAL = Outcome.PASS, Outcome.MISS, Outcome.ERROR, Outcome.SKIP, Outcome.INTERNAL
PROPERTY_PREFIX = "distill."


@dataclass
class Record:
    suite: str
    suite_path: str  # the suite folder, relative to the rootdir: settings are read from it
    model: str
    example_id: str
    repetition: int
    outcome: str  # an Outcome value
    nodeid: str = ""
    score: float | None = None
    latency_s: float | None = None
    input_tokens: int = 0
    output_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0
    cost_usd: float | None = None  # API price x tokens; None for self-hosted models
    finished_at: float | None = None  # when the answer arrived (throughput)
    cached: bool = False  # answered from the response cache
    constrained: str | None = None
    finish_reason: str | None = None
    output: str = ""
    expected: str = ""
    explanation: str = ""
    error: str = ""
    scorer: str = ""
    extra: dict[str, Any] = field(default_factory=dict)  # judge verdicts, extra scorers

    def __post_init__(self) -> None:
        # A plain str: records cross xdist's channel (execnet serialises no str subclass) and JSON.
        self.outcome = Outcome(self.outcome).value

    def to_properties(self) -> list[tuple[str, Any]]:
        """Flat (name, value) pairs: pytest user_properties, hence JUnit <property> elements."""
        # Shallow (no asdict deep copy): values are plain; `extra` is copied by hand.
        return [
            (PROPERTY_PREFIX + f.name, dict(v) if isinstance(v := getattr(self, f.name), dict) else v) for f in _FIELDS
        ]

    @classmethod
    def from_properties(cls, properties: list[tuple[str, Any]]) -> Record | None:
        names = _NAMES
        data = {
            k[len(PROPERTY_PREFIX) :]: v
            for k, v in properties
            if k.startswith(PROPERTY_PREFIX) and k[len(PROPERTY_PREFIX) :] in names
        }
        if "outcome" not in data:
            return None
        return cls(**data)

    @classmethod
    def all_from_properties(cls, properties: list[tuple[str, Any]]) -> list[Record]:
        """Every Record in the properties: a plain test that asked two models carries two,
        each starting with its `suite` property."""
        start = PROPERTY_PREFIX + "suite"
        groups: list[list[tuple[str, Any]]] = []
        for name, value in properties:
            if name == start or not groups:
                groups.append([])
            groups[-1].append((name, value))
        return [record for group in groups if (record := cls.from_properties(group)) is not None]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_FIELDS = fields(Record)
_NAMES = frozenset(f.name for f in _FIELDS)


@dataclass
class Summary:
    """The numbers of one suite x model."""

    suite: str
    suite_path: str
    model: str
    n: int
    passed: int
    missed: int
    errors: int
    skipped: int
    pass_rate: float | None  # passes / (passes + misses): errors are not misses
    ci_low: float
    ci_high: float
    error_rate: float
    repetitions: int
    rep_mean: float | None  # mean of the per-repetition pass rates
    rep_std: float | None
    flips: int  # examples whose outcome differs between repetitions
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    mean_input_tokens: float | None
    mean_output_tokens: float | None
    cost_per_request: float | None
    cost_total: float | None
    internal: int = 0  # pytest-distill's own errors (bugs): apart from the model's error rate


def summarize(records: list[Record]) -> list[Summary]:
    groups: dict[tuple[str, str, str], list[Record]] = defaultdict(list)
    for record in records:
        groups[(record.suite, record.model, record.suite_path)].append(record)
    return [_summary(suite, model, path, group) for (suite, model, path), group in sorted(groups.items())]


def _summary(suite: str, model: str, suite_path: str, records: list[Record]) -> Summary:
    scored = [r for r in records if r.outcome in (PASS, MISS)]
    passed = sum(r.outcome == PASS for r in records)
    missed = sum(r.outcome == MISS for r in records)
    errors = sum(r.outcome == ERROR for r in records)
    skipped = sum(r.outcome == SKIP for r in records)
    internal = sum(r.outcome == INTERNAL for r in records)
    ran = [r for r in records if r.outcome != SKIP]
    # A plugin bug says nothing about the model: out of its error rate.
    judged = [r for r in ran if r.outcome != INTERNAL]
    by_example: dict[str, set[str]] = defaultdict(set)
    for r in scored:
        by_example[r.example_id].add(r.outcome)
    # Repetitions of one example are not independent samples: the interval's n is the
    # number of examples (with the pooled rate), not examples x repetitions.
    n_examples = len(by_example)
    rate = passed / len(scored) if scored else 0.0
    low, high = stats.wilson_interval(rate * n_examples, n_examples)
    # Cached answers took no time: they would flatter the latency figures.
    latencies = [r.latency_s for r in judged if r.latency_s is not None and not r.cached and r.outcome != ERROR]
    answered = [r for r in judged if r.outcome != ERROR]
    reps = sorted({r.repetition for r in scored})
    rep_rates = []
    for rep in reps:
        rows = [r for r in scored if r.repetition == rep]
        rep_rates.append(sum(r.outcome == PASS for r in rows) / len(rows))
    costs = [r.cost_usd for r in judged if r.cost_usd is not None]
    return Summary(
        suite=suite,
        suite_path=suite_path,
        model=model,
        n=len(ran),
        passed=passed,
        missed=missed,
        errors=errors,
        skipped=skipped,
        pass_rate=passed / len(scored) if scored else None,
        ci_low=low,
        ci_high=high,
        error_rate=errors / len(judged) if judged else 0.0,
        repetitions=len(reps),
        rep_mean=stats.mean(rep_rates),
        rep_std=stats.stdev(rep_rates),
        flips=sum(len(outcomes) > 1 for outcomes in by_example.values()),
        latency_p50=stats.percentile(latencies, 50),
        latency_p95=stats.percentile(latencies, 95),
        latency_p99=stats.percentile(latencies, 99),
        mean_input_tokens=stats.mean([r.input_tokens for r in answered]),
        mean_output_tokens=stats.mean([r.output_tokens for r in answered]),
        cost_per_request=stats.mean(costs) if costs else None,
        cost_total=sum(costs) if costs else None,
        internal=internal,
    )
