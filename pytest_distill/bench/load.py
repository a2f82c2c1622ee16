"""Load benchmark: replay a suite's prompts against a model at a fixed concurrency.

`pytest SUITES --model M --distill-bench [--distill-bench-concurrency C]
[--distill-bench-requests N | --distill-bench-duration S] [--distill-bench-warmup W]`
collects the suites as usual, then, instead of evaluating, sends the items' requests
(cycled as often as needed) with C in flight: first W warm-up requests that are not
counted, then N requests or S seconds. It reports sustained requests/s (completed
requests / seconds from the end of the warm-up to the last answer), output tokens/s,
latency p50/p95/p99, time to first token (streamed, for OpenAI-compatible servers),
errors, and the server's memory: resident set of the managed server's whole process
tree, and GPU memory where nvidia-smi exists. The rate is saved in pytest's cache, and
later runs price the self-hosted model with it (GPU $/hour / sustained req/s).
"""

from __future__ import annotations

import asyncio
import itertools
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from pytest_distill.core import stats
from pytest_distill.core.cost import BenchRate, Priced, bench_cost_per_million
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.core.serving import fingerprint as serving_fingerprint
from pytest_distill.models.base import Provider, ProviderError, Request
from pytest_distill.models.registry import ModelEntry
from pytest_distill.report.fmt import gib, money
from pytest_distill.report.fmt import ms as _ms
from pytest_distill.report.terminal import format_table
from pytest_distill.runtime.memory import gpu_memory_of, process_tree_pids, process_tree_rss
from pytest_distill.runtime.servers import ServerPool

CACHE_KEY = "pytest-distill/bench/"


@dataclass
class BenchResult:
    model: str
    concurrency: int
    warmup: int
    requests: int  # measured requests that completed (errors included)
    errors: int
    duration_s: float  # end of warm-up to the last answer
    requests_per_s: float | None
    output_tokens_per_s: float | None
    latency_p50: float | None
    latency_p95: float | None
    latency_p99: float | None
    ttft_p50: float | None = None
    ttft_p95: float | None = None
    ttft_p99: float | None = None
    mean_output_tokens: float | None = None
    server_rss_bytes: int | None = None  # peak over the run, whole process tree
    gpu_memory_mib: int | None = None  # peak GPU memory of the server's processes (nvidia-smi)
    streamed: bool = False
    first_error: str = ""
    measured_at: float = field(default_factory=time.time)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class _Sample:
    latency: float
    ttft: float | None
    output_tokens: int
    finished: float
    error: str = ""


async def _one_streamed(provider: Provider, request: Request) -> _Sample:
    started = time.perf_counter()
    try:
        timing = await provider.stream(request)
    except ProviderError as exc:
        return _Sample(time.perf_counter() - started, None, 0, time.time(), error=str(exc))
    return _Sample(timing.latency_s, timing.ttft_s, timing.output_tokens, time.time())


async def _one_plain(provider: Provider, request: Request) -> _Sample:
    started = time.perf_counter()
    try:
        completion = await provider.complete(request)
    except ProviderError as exc:
        return _Sample(time.perf_counter() - started, None, 0, time.time(), error=str(exc))
    return _Sample(time.perf_counter() - started, None, completion.usage.output_tokens, time.time())


class _MemorySampler:
    """Peak server RSS (process tree) and the GPU memory of that tree's processes, sampled
    every second in a thread (runtime/memory.py)."""

    def __init__(self, pid: int | None) -> None:
        self.pid = pid
        self.rss: int | None = None
        self.gpu: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="distill-bench-memory", daemon=True)
        self._nvidia = shutil.which("nvidia-smi")

    def __enter__(self) -> _MemorySampler:
        self._sample()
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sample()

    def _run(self) -> None:
        while not self._stop.wait(1.0):
            self._sample()

    def _sample(self) -> None:
        if self.pid is not None:
            rss = process_tree_rss(self.pid)
            if rss is not None:
                self.rss = max(self.rss or 0, rss)
        if self._nvidia and self.pid is not None:
            used = gpu_memory_of(process_tree_pids(self.pid), self._nvidia)
            if used is not None:
                self.gpu = max(self.gpu or 0, used)


async def run(
    provider: Provider,
    model: str,
    requests: list[Request],
    *,
    concurrency: int,
    count: int | None = None,
    duration_s: float | None = None,
    warmup: int | None = None,
    stream: bool = True,
    server_pid: int | None = None,
) -> BenchResult:
    """Replay `requests` (cycled) with `concurrency` in flight: `warmup` uncounted
    requests, then `count` requests or `duration_s` seconds, whichever is given."""
    if not requests:
        raise ValueError("no requests to replay")
    if count is None and duration_s is None:
        count = 100
    warmup = concurrency if warmup is None else warmup
    streamed = stream and provider.supports_streaming

    async def one(provider: Provider, request: Request) -> _Sample:
        if streamed:
            return await _one_streamed(provider, request)
        return await _one_plain(provider, request)

    source = itertools.cycle(requests)
    await asyncio.to_thread(provider.start)

    # warm-up: fills caches, compiles grammars, brings the batch to its steady size
    if warmup:
        semaphore = asyncio.Semaphore(concurrency)

        async def warm(request: Request) -> None:
            async with semaphore:
                await one(provider, request)

        await asyncio.gather(*(warm(next(source)) for _ in range(warmup)))

    samples: list[_Sample] = []
    issued = 0
    start = time.perf_counter()
    start_wall = time.time()
    deadline = start + duration_s if duration_s is not None else None

    async def worker() -> None:
        nonlocal issued
        while True:
            if count is not None and issued >= count:
                return
            if deadline is not None and time.perf_counter() >= deadline:
                return
            issued += 1
            samples.append(await one(provider, next(source)))

    with _MemorySampler(server_pid) as memory:
        await asyncio.gather(*(worker() for _ in range(concurrency)))
    ok = [s for s in samples if not s.error]
    errors = [s for s in samples if s.error]
    span = (max(s.finished for s in samples) - start_wall) if samples else 0.0
    latencies = [s.latency for s in ok]
    ttfts = [s.ttft for s in ok if s.ttft is not None]
    out_tokens = sum(s.output_tokens for s in ok)
    return BenchResult(
        model=model,
        concurrency=concurrency,
        warmup=warmup,
        requests=len(samples),
        errors=len(errors),
        duration_s=span,
        requests_per_s=len(ok) / span if span > 0 and ok else None,
        output_tokens_per_s=out_tokens / span if span > 0 and ok else None,
        latency_p50=stats.percentile(latencies, 50),
        latency_p95=stats.percentile(latencies, 95),
        latency_p99=stats.percentile(latencies, 99),
        ttft_p50=stats.percentile(ttfts, 50),
        ttft_p95=stats.percentile(ttfts, 95),
        ttft_p99=stats.percentile(ttfts, 99),
        mean_output_tokens=out_tokens / len(ok) if ok else None,
        server_rss_bytes=memory.rss,
        gpu_memory_mib=memory.gpu,
        streamed=streamed,
        first_error=errors[0].error if errors else "",
    )


def run_sync(provider: Provider, model: str, requests: list[Request], **kwargs: Any) -> BenchResult:
    """run() on a fresh event loop; the provider's client is made inside it."""

    async def _main() -> BenchResult:
        try:
            return await run(provider, model, requests, **kwargs)
        finally:
            provider.close()

    return asyncio.run(_main())


def server_pid_for(servers: ServerPool, model: str) -> int | None:
    info = servers.get(model)
    return info.pid if info is not None else None


# --- presentation -----------------------------------------------------------------


def format_results(results: list[BenchResult], cost_per_million: list[str]) -> list[str]:
    header = [
        "model",
        "conc",
        "requests",
        "errors",
        "seconds",
        "req/s",
        "out tok/s",
        "p50",
        "p95",
        "p99",
        "TTFT p50",
        "TTFT p95",
        "TTFT p99",
        "server RSS",
        "GPU mem",
        "$/1M req",
    ]
    rows = [header]
    for r, cost in zip(results, cost_per_million, strict=True):
        rows.append(
            [
                r.model,
                str(r.concurrency),
                str(r.requests),
                str(r.errors),
                f"{r.duration_s:.1f}",
                f"{r.requests_per_s:.2f}" if r.requests_per_s else "-",
                f"{r.output_tokens_per_s:.1f}" if r.output_tokens_per_s else "-",
                _ms(r.latency_p50),
                _ms(r.latency_p95),
                _ms(r.latency_p99),
                _ms(r.ttft_p50),
                _ms(r.ttft_p95),
                _ms(r.ttft_p99),
                gib(r.server_rss_bytes),
                f"{r.gpu_memory_mib} MiB" if r.gpu_memory_mib is not None else "-",
                cost,
            ]
        )
    return format_table(rows)


# --- saved rates and the summary ---------------------------------------------------


def fingerprint(entry: ModelEntry) -> dict[str, Any]:
    """What a saved rate belongs to: a rate measured with other serve args doesn't apply."""
    return {
        "provider": entry.provider,
        "model": entry.model,
        "serve_args": list(entry.serve_args),
        "base_url": entry.base_url,
    }


def fingerprint_id(entry: ModelEntry) -> str:
    """The short id of fingerprint(entry), as results.json's bench section stores it."""
    return serving_fingerprint(fingerprint(entry))


def saved_rate(pytest_cache: Any, entry: ModelEntry) -> ServingMeasurement | BenchRate | None:
    """The --distill-bench measurement saved in pytest's cache for this entry, if any still applies."""
    if pytest_cache is None:
        return None
    saved = pytest_cache.get(CACHE_KEY + entry.name, None)
    if not isinstance(saved, dict) or saved.get("fingerprint") != fingerprint(entry):
        return None
    if isinstance(saved.get("measurement"), dict):
        found = ServingMeasurement.from_dict(saved["measurement"], source="pytest cache")
        return found if found.requests_per_s else None
    if not saved.get("requests_per_s"):  # saved by an older version
        return None
    return BenchRate(requests_per_s=float(saved["requests_per_s"]), concurrency=int(saved.get("concurrency") or 0))


def save_rate(pytest_cache: Any, entry: ModelEntry, measured: ServingMeasurement) -> None:
    if pytest_cache is not None and measured.requests_per_s:
        pytest_cache.set(CACHE_KEY + entry.name, {"fingerprint": fingerprint(entry), "measurement": measured.to_dict()})


def summary_lines(
    results: list[BenchResult], entries: dict[str, Priced], measurements: list[ServingMeasurement] | None = None
) -> list[str]:
    """The bench table and its notes (under a '= pytest-distill bench =' separator)."""
    costs = [
        money(bench_cost_per_million(entries[r.model], r.requests_per_s))
        if r.model in entries and entries[r.model].self_hosted
        else "-"
        for r in results
    ]
    lines = format_results(results, costs)
    for m in measurements or []:
        if m.mode != "saturation":
            continue
        rate = m.describe() if m.requests_per_s else f"no sustained rate at c={m.concurrency}"
        cost = f", {money(m.cost_per_million)} per 1M requests" if m.cost_per_million is not None else ""
        lines.append(f"{m.model}: {rate}{cost}; knee: {m.knee_reason}")
    lines += [f"{r.model}: {r.errors} request(s) failed, e.g.: {r.first_error}" for r in results if r.errors]
    lines.append(
        "req/s = completed requests / seconds from the end of the warm-up to the last answer; "
        "latency and TTFT over completed requests"
        + ("; TTFT from streamed replies" if any(r.streamed for r in results) else "")
    )
    return lines
