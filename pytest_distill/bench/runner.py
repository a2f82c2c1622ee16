"""--distill-bench over the run's models, one model at a time.

A managed server (vLLM) is started for its model's turn and stopped before the next model's
server starts: two variants of one model (bf16 and fp8, two max_num_seqs) never share the
device, and each is measured alone. Each model gets a fixed-concurrency run, or with
--distill-bench-saturate the saturation search (saturate.py); either way a
ServingMeasurement that prices it (this run, later runs through pytest's cache, and other
machines' runs through results.json and --distill-serving).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pytest_distill.bench import saturate
from pytest_distill.bench.load import BenchResult, fingerprint_id, run_sync, save_rate, server_pid_for
from pytest_distill.core.cost import gpu_hourly, hardware_label
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.models.base import Request
from pytest_distill.models.registry import ModelEntry
from pytest_distill.runtime.servers import ServerPool


@dataclass(frozen=True)
class BenchPlan:
    concurrency: int | None
    count: int | None
    duration_s: float | None
    warmup: int | None
    saturation: saturate.SaturationSettings | None  # None: one fixed concurrency


def device_of(server_pid: int | None, results: list[BenchResult]) -> str:
    """GPU when the managed server's processes held GPU memory, CPU when they held none;
    unknown for a server we did not start (base_url) or an in-process model."""
    if server_pid is None:
        return "unknown"
    return "GPU" if any(r.gpu_memory_mib for r in results) else "CPU"


def run_models(
    entries: dict[str, ModelEntry],
    requests: dict[str, list[Request]],
    plan: BenchPlan,
    *,
    pytest_cache: Any,
    servers: ServerPool,
    log_dir: Callable[[], Path],
    say: Callable[[str], None] | None = None,
) -> tuple[list[BenchResult], list[ServingMeasurement]]:
    """Benchmark every model on its requests, one at a time; saves each clean measurement."""
    results: list[BenchResult] = []
    measurements: list[ServingMeasurement] = []
    for name, entry in entries.items():
        if not requests.get(name):
            continue
        started_here = servers.needs_server(entry) and servers.get(name) is None
        if started_here:
            servers.start([entry], log_dir(), say)
        try:
            model_results, measured = _one_model(entry, requests[name], plan, servers, say)
        finally:
            if started_here:
                pid = servers.stop_one(name)
                if say is not None:
                    say(f"pytest-distill: stopped the server for '{name}' (pid {pid})")
        results += model_results
        measurements.append(measured)
        save_rate(pytest_cache, entry, measured)
    return results, measurements


def _one_model(
    entry: ModelEntry, requests: list[Request], plan: BenchPlan, servers: ServerPool, say: Callable[[str], None] | None
) -> tuple[list[BenchResult], ServingMeasurement]:
    name = entry.name
    pid = server_pid_for(servers, name)

    def new_provider() -> Any:
        return servers.provider_for(entry)  # a fresh provider: its client belongs to the bench loop

    if plan.saturation is not None:
        settings = plan.saturation
        if say is not None:
            say(
                f"pytest-distill: bench {name}: saturation search, c=1..{settings.max_concurrency} "
                f"({len(requests)} distinct prompts)"
            )
        results, knee = saturate.search(new_provider, name, requests, settings, server_pid=pid, say=say)
    else:
        provider = new_provider()
        in_flight = plan.concurrency or entry.max_concurrency or provider.max_concurrency or 8
        measured = plan.count or (None if plan.duration_s else 100)
        if say is not None:
            what = f"{plan.duration_s:g} s" if plan.duration_s else f"{measured} requests"
            say(
                f"pytest-distill: bench {name}: {what} at concurrency {in_flight} "
                f"({len(requests)} distinct prompts, warm-up {in_flight if plan.warmup is None else plan.warmup})"
            )
        results = [
            run_sync(
                provider,
                name,
                requests,
                concurrency=in_flight,
                count=measured,
                duration_s=plan.duration_s,
                warmup=plan.warmup,
                server_pid=pid,
            )
        ]
        knee = None
    measured_by = saturate.measurement(
        entry,
        fingerprint_id(entry),
        results,
        knee,
        hourly_usd=gpu_hourly(entry),
        hardware=hardware_label(entry),
        device=device_of(pid, results),
    )
    return results, measured_by
