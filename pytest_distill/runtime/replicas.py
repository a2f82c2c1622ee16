"""Replicas of one model (`base_urls = [...]`, or the servers of a managed entry with
`replicas = N`): each request goes to the replica with the
fewest requests in flight; a replica that refuses connections, times out or answers 5xx is
taken out for a cool-down, and the request is sent again to another one (a retry, never
a miss). The in-flight limit (max_concurrency) is per replica.

The engine (engine.py) owns the choice; providers stay ignorant: one provider per URL.

Each process counts what its own requests did on each replica (`raw_stats`: counts and raw
latencies); the controller of an xdist run sums the workers' counts and pools their
latencies (`merge_stats`), so a serial run and `-n N` report the same numbers.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_distill.core.stats import percentile
from pytest_distill.models.base import Provider, ProviderError

COOLDOWN_S = 10.0  # how long a failed replica gets no requests
_WAIT_S = 0.05  # how often a request waiting for a free replica looks again


def is_replica_failure(error: ProviderError, provider: Provider | None = None) -> bool:
    """The replica, not the request, failed: no connection or no answer (no HTTP status), a 5xx,
    or the managed server behind the provider (`replicas = N`) has exited."""
    if (error.status is None and error.retryable) or (error.status is not None and error.status >= 500):
        return True
    server = getattr(provider, "server", None)  # a managed replica: vLLM's provider knows its server
    return error.status is None and server is not None and bool(server.exited())


@dataclass
class Replica:
    url: str
    provider: Provider
    limit: int  # requests in flight at most
    in_flight: int = 0
    down_until: float = 0.0
    requests: int = 0  # answered
    errors: int = 0  # failures of the replica (each one retried elsewhere)
    latencies: list[float] = field(default_factory=list)
    devices: str | None = None  # a managed replica's CUDA_VISIBLE_DEVICES

    def raw(self) -> dict[str, Any]:
        """This process's counts and raw latencies on the replica: plain data, mergeable."""
        return {
            "url": self.url,
            "devices": self.devices,
            "requests": self.requests,
            "errors": self.errors,
            "latencies_s": list(self.latencies),
        }

    def stats(self) -> dict[str, Any]:
        return summarize_replica(self.raw())


class ReplicaSet:
    def __init__(
        self, replicas: Sequence[Replica], clock: Callable[[], float] = time.monotonic, cooldown_s: float = COOLDOWN_S
    ) -> None:
        self.replicas = list(replicas)
        self.clock = clock
        self.cooldown_s = cooldown_s

    async def acquire(self, avoid: set[str]) -> Replica:
        """The up replica with the fewest in flight and a free slot, preferring one this request
        hasn't failed on; waits while none has a slot (or while all are cooling down)."""
        while True:
            now = self.clock()
            free = [r for r in self.replicas if r.in_flight < r.limit and r.down_until <= now]
            preferred = [r for r in free if r.url not in avoid] or free
            if preferred:
                chosen = min(preferred, key=lambda r: (r.in_flight, r.requests + r.errors))
                chosen.in_flight += 1
                return chosen
            await asyncio.sleep(_WAIT_S)

    def release(self, replica: Replica, latency_s: float | None = None, failed: bool = False) -> None:
        replica.in_flight -= 1
        if failed:
            replica.errors += 1
            replica.down_until = self.clock() + self.cooldown_s
        elif latency_s is not None:
            replica.requests += 1
            replica.latencies.append(latency_s)

    def stats(self) -> list[dict[str, Any]]:
        return [r.stats() for r in self.replicas]

    def raw_stats(self) -> list[dict[str, Any]]:
        return [r.raw() for r in self.replicas]


def summarize_replica(raw: Mapping[str, Any]) -> dict[str, Any]:
    """One replica's line in results.json: answered requests, failed attempts (each retried on
    another replica, or the item's error once every replica failed it), latency p50/p95/mean."""
    latencies = [float(x) for x in raw.get("latencies_s") or []]
    return {
        "url": raw["url"],
        "devices": raw.get("devices"),
        "requests": int(raw.get("requests") or 0),
        "errors": int(raw.get("errors") or 0),
        "latency_p50_s": percentile(latencies, 50),
        "latency_p95_s": percentile(latencies, 95),
        "latency_mean_s": sum(latencies) / len(latencies) if latencies else None,
    }


def merge_stats(
    parts: Iterable[Mapping[str, Sequence[Mapping[str, Any]]]],
    replicas: Mapping[str, Sequence[tuple[str, str | None]]] | None = None,
) -> dict[str, list[dict[str, Any]]]:
    """Per model with more than one replica, one summary per replica: the processes' raw stats
    (`ReplicaSet.raw_stats`, one mapping per process) summed by URL, latencies pooled.
    `replicas`: each model's replicas (url, devices) as configured, so a replica no process
    used still has its line (0 requests), in the configured order."""
    merged: dict[str, dict[str, dict[str, Any]]] = {}
    for model, urls in (replicas or {}).items():
        if len(urls) > 1:
            merged[model] = {
                url: {"url": url, "devices": devices, "requests": 0, "errors": 0, "latencies_s": []}
                for url, devices in urls
            }
    for part in parts:
        for model, rows in part.items():
            for row in rows:
                into = merged.setdefault(model, {}).setdefault(
                    row["url"],
                    {"url": row["url"], "devices": row.get("devices"), "requests": 0, "errors": 0, "latencies_s": []},
                )
                into["requests"] += int(row.get("requests") or 0)
                into["errors"] += int(row.get("errors") or 0)
                into["latencies_s"] += list(row.get("latencies_s") or [])
                into["devices"] = into["devices"] or row.get("devices")
    return {
        model: [summarize_replica(raw) for raw in by_url.values()]
        for model, by_url in merged.items()
        if len(by_url) > 1
    }
