"""The saturation search: load at concurrency 1, 2, 4, ... until throughput stops rising
(core/serving.find_knee), and the serving measurement that prices the model from it.

Each step is one load.run(): its own warm-up (the step's concurrency, unless
--distill-bench-warmup says), then its measured requests (--distill-bench-requests per
step, default max(32, 4 x concurrency)).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pytest_distill.bench.load import BenchResult, run_sync
from pytest_distill.core.serving import (
    DEFAULT_KNEE,
    DEFAULT_MAX_CONCURRENCY,
    Knee,
    LoadStep,
    ServingMeasurement,
    concurrency_steps,
    find_knee,
)
from pytest_distill.models.base import Provider, Request


@dataclass(frozen=True)
class SaturationSettings:
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    knee: float = DEFAULT_KNEE  # a fraction: 0.05 = 5%
    slo_p95_s: float | None = None
    requests_per_step: int | None = None  # None: max(32, 4 x concurrency)
    warmup: int | None = None  # None: the step's concurrency

    def requests_at(self, concurrency: int) -> int:
        return self.requests_per_step or max(32, 4 * concurrency)


def step_of(result: BenchResult) -> LoadStep:
    return LoadStep.from_dict(result.to_dict())


def search(
    new_provider: Callable[[], Provider],
    model: str,
    requests: list[Request],
    settings: SaturationSettings,
    *,
    server_pid: int | None = None,
    say: Callable[[str], None] | None = None,
) -> tuple[list[BenchResult], Knee]:
    """Step the concurrency up until the knee; every step on a fresh provider (its client
    belongs to that step's event loop)."""
    results: list[BenchResult] = []
    for concurrency in concurrency_steps(settings.max_concurrency):
        count = settings.requests_at(concurrency)
        result = run_sync(
            new_provider(),
            model,
            requests,
            concurrency=concurrency,
            count=count,
            warmup=settings.warmup,
            server_pid=server_pid,
        )
        results.append(result)
        if say is not None:
            rate = f"{result.requests_per_s:.2f} req/s" if result.requests_per_s else "no rate"
            p95 = f", p95 {result.latency_p95 * 1000:.0f} ms" if result.latency_p95 is not None else ""
            say(
                f"pytest-distill: bench {model}: c={concurrency}: {count} requests, {rate}{p95}"
                + (f", {result.errors} errors" if result.errors else "")
            )
        knee = find_knee(
            [step_of(r) for r in results],
            knee=settings.knee,
            slo_p95_s=settings.slo_p95_s,
            max_concurrency=settings.max_concurrency,
        )
        if knee is not None:
            return results, knee
    raise AssertionError("concurrency_steps ends at the cap, where find_knee always answers")  # pragma: no cover


def measurement(
    entry: Any,
    fingerprint: str,
    results: list[BenchResult],
    knee: Knee | None,
    *,
    hourly_usd: float,
    hardware: str,
    device: str,
    now: datetime | None = None,
) -> ServingMeasurement:
    """The serving measurement of a search (knee given) or of one fixed-concurrency run."""
    chosen = results[knee.index] if knee is not None else results[-1]
    rss = [r.server_rss_bytes for r in results if r.server_rss_bytes is not None]
    gpu = [r.gpu_memory_mib for r in results if r.gpu_memory_mib is not None]
    when = (now or datetime.now(UTC)).isoformat(timespec="seconds").replace("+00:00", "Z")
    return ServingMeasurement(
        model=entry.name,
        fingerprint=fingerprint,
        mode="saturation" if knee is not None else "fixed",
        concurrency=chosen.concurrency,
        requests_per_s=chosen.requests_per_s if not chosen.errors and (knee is None or knee.slo_met) else None,
        measured_at=when,
        device=device,
        hardware=hardware,
        hourly_usd=hourly_usd,
        knee_reason=knee.reason if knee is not None else f"fixed concurrency {chosen.concurrency}",
        latency_p50=chosen.latency_p50,
        latency_p95=chosen.latency_p95,
        latency_p99=chosen.latency_p99,
        ttft_p50=chosen.ttft_p50,
        ttft_p95=chosen.ttft_p95,
        ttft_p99=chosen.ttft_p99,
        output_tokens_per_s=chosen.output_tokens_per_s,
        server_rss_bytes=max(rss) if rss else None,
        gpu_memory_mib=max(gpu) if gpu else None,
        curve=tuple(step_of(r) for r in results),
    )
