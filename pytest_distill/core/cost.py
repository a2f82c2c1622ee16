"""All cost policy: what an answer costs, and how that figure was arrived at (its basis).

- API models: tokens x the models file's dated prices (per million tokens).
- Self-hosted models: GPU $/hour / sustained requests per second x 3600, the rate being
  a --distill-bench measurement when one was saved for the entry, else the rate this run
  measured (answers not cached, not errors, first request's start to last answer).

Pure: a model entry is anything with the fields of `Priced` (models.registry.ModelEntry).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Protocol

DEFAULT_GPU_HOURLY_USD = 2.40  # an entry without gpu_hourly_usd (docs/models.md)


class Priced(Protocol):
    """What cost needs from a model entry."""

    @property
    def self_hosted(self) -> bool: ...
    @property
    def price_input(self) -> float | None: ...  # USD per million tokens
    @property
    def price_output(self) -> float | None: ...
    @property
    def price_cached_input(self) -> float | None: ...
    @property
    def gpu_hourly_usd(self) -> float | None: ...


class TokenCounts(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...


class Timed(Protocol):
    """What a rate is measured from (core.records.Record)."""

    suite: str
    model: str
    outcome: str
    cached: bool
    latency_s: float | None
    finished_at: float | None


@dataclass(frozen=True)
class BenchRate:
    """A --distill-bench measurement saved for an entry."""

    requests_per_s: float
    concurrency: int


@dataclass(frozen=True)
class Cost:
    """The cost of one suite x model: per request (None: unknown) and how it was measured."""

    per_request: float | None
    basis: str  # "API price", "$2.40/h GPU / 3.10 req/s measured", ... or "-"

    @property
    def per_million(self) -> float | None:
        return None if self.per_request is None else self.per_request * 1e6


def api_cost(entry: Priced, usage: TokenCounts) -> float | None:
    """USD for one request at the entry's prices per million tokens; None without prices.

    Cached input tokens are billed at the cached price where one is published.
    """
    if entry.self_hosted or entry.price_input is None or entry.price_output is None:
        return None
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_price = entry.price_cached_input if entry.price_cached_input is not None else entry.price_input
    fresh = usage.input_tokens - cached
    # Reasoning tokens are billed as output and already counted in output_tokens by the APIs.
    return (fresh * entry.price_input + cached * cached_price + usage.output_tokens * entry.price_output) / 1e6


def gpu_hourly(entry: Priced) -> float:
    """The entry's GPU $/hour, else the default."""
    return DEFAULT_GPU_HOURLY_USD if entry.gpu_hourly_usd is None else entry.gpu_hourly_usd


def self_hosted_cost_per_request(gpu_hourly_usd: float | None, requests_per_s: float | None) -> float | None:
    """GPU $/hour divided by sustained requests/hour."""
    if not requests_per_s:
        return None
    hourly = DEFAULT_GPU_HOURLY_USD if gpu_hourly_usd is None else gpu_hourly_usd
    return hourly / (requests_per_s * 3600)


def sustained_rate(intervals: list[tuple[float, float]]) -> float | None:
    """Requests per second over the span from the first start to the last finish."""
    if len(intervals) < 2:
        return None
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    return len(intervals) / span if span > 0 else None


def measured_rate(records: Iterable[Timed]) -> float | None:
    """The sustained rate of these answers: not cached, not errors (a cached answer took no time)."""
    intervals = [(r.finished_at - r.latency_s, r.finished_at) for r in records
                 if r.finished_at and r.latency_s and not r.cached and r.outcome in ("pass", "miss")]
    return sustained_rate(intervals)


def self_hosted_cost(entry: Priced, measured: float | None, bench: BenchRate | None = None) -> Cost:
    """GPU $/hour over the rate: a saved --distill-bench rate wins over this run's measurement."""
    hourly = gpu_hourly(entry)
    if bench is not None:
        rate: float | None = bench.requests_per_s
        basis = f"${hourly:.2f}/h GPU / {bench.requests_per_s:.2f} req/s (--distill-bench, c={bench.concurrency})"
    else:
        rate = measured
        basis = f"${hourly:.2f}/h GPU / {measured:.2f} req/s measured" if measured else "-"
    per_request = self_hosted_cost_per_request(entry.gpu_hourly_usd, rate)
    return Cost(per_request, basis if per_request is not None else "-")


def summary_costs(summaries: Iterable[_SummaryLike], records: Iterable[Timed], entries: Mapping[str, Priced],
                  bench_rates: Mapping[str, BenchRate] | None = None) -> dict[tuple[str, str], Cost]:
    """The cost of every suite x model of a run."""
    bench_rates = bench_rates or {}
    by_key: dict[tuple[str, str], list[Timed]] = {}
    for r in records:
        by_key.setdefault((r.suite, r.model), []).append(r)
    costs = {}
    for s in summaries:
        entry = entries.get(s.model)
        key = (s.suite, s.model)
        if entry is not None and entry.self_hosted:
            costs[key] = self_hosted_cost(entry, measured_rate(by_key.get(key, [])), bench_rates.get(s.model))
        else:
            costs[key] = Cost(s.cost_per_request, "API price" if s.cost_per_request is not None else "-")
    return costs


class _SummaryLike(Protocol):
    suite: str
    model: str
    cost_per_request: float | None


def bench_cost_per_million(entry: Priced, requests_per_s: float | None) -> float | None:
    """--distill-bench's $/1M requests for a self-hosted entry (None for API models)."""
    if not entry.self_hosted:
        return None
    per_request = self_hosted_cost_per_request(entry.gpu_hourly_usd, requests_per_s)
    return None if per_request is None else per_request * 1e6


def tie_key(entry: Priced | None, name: str) -> tuple[int, float, str]:
    """How models with equal pass rates are ordered, whatever the timing: API models by their
    listed price per token (input + output), then self-hosted ones by their GPU $/hour, then
    models without a price; within each, the lower price first, then the name."""
    if entry is None:
        return (2, math.inf, name)
    if entry.self_hosted:
        return (1, gpu_hourly(entry), name)
    if entry.price_input is None or entry.price_output is None:
        return (2, math.inf, name)
    return (0, entry.price_input + entry.price_output, name)


def cost_notes(entries: Iterable[Priced], cached_answers: int) -> list[str]:
    """How the summary's cost and rate figures were measured."""
    entries = list(entries)
    notes = []
    if any(e.self_hosted for e in entries):
        notes.append("self-hosted cost = GPU $/hour (gpu_hourly_usd, default "
                     f"${DEFAULT_GPU_HOURLY_USD:.2f}) / (requests/s x 3600); requests/s = answers (not cached, "
                     "not errors) / seconds from the first request's start to the last answer, in this run")
    if any(not e.self_hosted for e in entries):
        notes.append("API cost per request = uncached input tokens x input price + cached input tokens x "
                     "cached price + output tokens (incl. reasoning) x output price, at the models file's dated prices")
    if cached_answers:
        notes.append(f"{cached_answers} answer(s) came from the response cache: left out of latency and throughput")
    return notes
