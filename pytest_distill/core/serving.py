"""Serving figures: the load curve of a saturation search, its knee, and the measurement
that prices a self-hosted model (and travels in results.json's `bench` section).

The saturation search (bench/saturate.py) measures throughput at concurrency 1, 2, 4, ...
Here, pure: where the curve stops paying. The knee is the last step before

- throughput rose by less than `knee` (default 5%) over the step before it: doubling the
  requests in flight no longer buys throughput, only latency;
- latency p95 passed the service-level limit (`slo_p95_s`);
- requests failed (a server that errors under load is not sustaining that load);

or the last step measured when the cap was reached first.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

DEFAULT_KNEE = 0.05  # throughput must rise by more than this fraction per doubling
DEFAULT_MAX_CONCURRENCY = 64


@dataclass(frozen=True)
class LoadStep:
    """One concurrency level of a load run (bench.load.BenchResult, the numbers only)."""

    concurrency: int
    requests: int
    errors: int
    duration_s: float
    requests_per_s: float | None
    output_tokens_per_s: float | None = None
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    ttft_p99: float | None = None
    server_rss_bytes: int | None = None
    gpu_memory_mib: int | None = None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LoadStep:
        known = cls.__dataclass_fields__
        return cls(**{k: v for k, v in data.items() if k in known})


@dataclass(frozen=True)
class Knee:
    """Where the search stopped, and why."""

    index: int  # the step whose rate is the sustained rate
    reason: str  # one line: "throughput rose 2.1% from c=4 to c=8 (< 5%)"
    slo_met: bool = True  # False when even the first step broke the p95 limit


def concurrency_steps(max_concurrency: int, start: int = 1) -> list[int]:
    """1, 2, 4, ... up to max_concurrency (which is always the last step)."""
    if max_concurrency < 1 or start < 1:
        raise ValueError("concurrency must be at least 1")
    steps, c = [], start
    while c < max_concurrency:
        steps.append(c)
        c *= 2
    steps.append(max_concurrency)
    return steps


def find_knee(
    steps: Sequence[LoadStep],
    *,
    knee: float = DEFAULT_KNEE,
    slo_p95_s: float | None = None,
    max_concurrency: int | None = None,
) -> Knee | None:
    """The knee of the curve measured so far, or None while it still rises (measure the next step).

    With max_concurrency, a curve whose last step is at the cap is finished.
    """
    for i, step in enumerate(steps):
        previous = steps[i - 1] if i else None
        if step.errors or not step.requests_per_s:
            if previous is None:
                return Knee(0, f"requests failed at c={step.concurrency}", slo_met=False)
            return Knee(i - 1, f"requests failed at c={step.concurrency}")
        if slo_p95_s is not None and step.latency_p95 is not None and step.latency_p95 > slo_p95_s:
            what = f"p95 {step.latency_p95 * 1000:.0f} ms > {slo_p95_s * 1000:.0f} ms at c={step.concurrency}"
            if previous is None:
                return Knee(0, what + " (the limit is not met even at c=1)", slo_met=False)
            return Knee(i - 1, what)
        if previous is not None and previous.requests_per_s:
            gain = step.requests_per_s / previous.requests_per_s - 1
            if gain < knee:
                change = f"rose {gain * 100:.1f}%" if gain >= 0 else f"fell {-gain * 100:.1f}%"
                return Knee(
                    i - 1,
                    f"throughput {change} from c={previous.concurrency} "
                    f"to c={step.concurrency} (< {knee * 100:g}% gain)",
                )
    if steps and max_concurrency is not None and steps[-1].concurrency >= max_concurrency:
        return Knee(len(steps) - 1, f"still rising at the cap, c={max_concurrency} (--distill-bench-max-concurrency)")
    return None


def fingerprint(settings: Mapping[str, Any]) -> str:
    """A short, stable id of a model's serving settings: a rate measured under other
    settings (another serve_args, another model folder) does not apply."""
    text = json.dumps(dict(settings), sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class ServingMeasurement:
    """A model's serving figures: the rate that prices it, where it came from, the curve."""

    model: str  # the models-file entry name
    fingerprint: str  # of the serving settings (fingerprint())
    mode: str  # "saturation" or "fixed" (one concurrency)
    concurrency: int  # at the knee (or the fixed concurrency)
    requests_per_s: float | None  # sustained, at that concurrency
    measured_at: str  # ISO date-time (UTC)
    device: str = "unknown"  # "GPU" | "CPU" | "unknown" (a server we did not start)
    hardware: str = "GPU"  # the entry's label for what hourly_usd buys
    hourly_usd: float | None = None
    knee_reason: str = ""
    latency_p50: float | None = None
    latency_p95: float | None = None
    latency_p99: float | None = None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    ttft_p99: float | None = None
    output_tokens_per_s: float | None = None
    server_rss_bytes: int | None = None  # peak, the managed server's process tree
    gpu_memory_mib: int | None = None  # peak, the GPU memory of that tree's processes
    curve: tuple[LoadStep, ...] = field(default=())
    source: str = "this run"  # or the results.json it was read from (--distill-serving)

    @property
    def cost_per_million(self) -> float | None:
        """$ per million requests: hourly_usd / (requests/s x 3600) x 1e6."""
        if not self.requests_per_s or self.hourly_usd is None:
            return None
        return self.hourly_usd / (self.requests_per_s * 3600) * 1e6

    def describe(self) -> str:
        """The rate and where it came from, for the cost basis:
        'sustained 7.50 req/s at c=8 (saturation search, 2026-12-01)'."""
        how = "saturation search" if self.mode == "saturation" else "--distill-bench"
        where = "" if self.source == "this run" else f", {self.source}"
        cpu = ", on a CPU" if self.device == "CPU" else ""
        rate = self.requests_per_s or 0.0
        return f"sustained {rate:.2f} req/s at c={self.concurrency} ({how}, {self.measured_at[:10]}{cpu}{where})"

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["cost_per_million"] = self.cost_per_million
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str | None = None) -> ServingMeasurement:
        known = cls.__dataclass_fields__
        values = {k: v for k, v in data.items() if k in known and k != "curve"}
        values["curve"] = tuple(LoadStep.from_dict(s) for s in data.get("curve") or ())
        if source is not None:
            values["source"] = source
        return cls(**values)
