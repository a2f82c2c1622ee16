"""What an answer costs: API tokens x published price, or GPU time for self-hosted models."""

from __future__ import annotations

from pytest_distill.models.base import Usage
from pytest_distill.models.registry import DEFAULT_GPU_HOURLY_USD, ModelEntry


def api_cost(entry: ModelEntry, usage: Usage) -> float | None:
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


def gpu_hourly(entry: ModelEntry) -> float:
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
