"""Replicas of one model (`base_urls = [...]`): each request goes to the replica with the
fewest requests in flight; a replica that refuses connections, times out or answers 5xx is
taken out for a cool-down, and the request is sent again to another one (a retry, never
a miss). The in-flight limit (max_concurrency) is per replica.

The engine (engine.py) owns the choice; providers stay ignorant: one provider per URL.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from pytest_distill.models.base import Provider, ProviderError

COOLDOWN_S = 10.0  # how long a failed replica gets no requests
_WAIT_S = 0.05  # how often a request waiting for a free replica looks again


def is_replica_failure(error: ProviderError) -> bool:
    """The replica, not the request, failed: no connection or no answer (no HTTP status), or a 5xx."""
    return (error.status is None and error.retryable) or (error.status is not None and error.status >= 500)


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

    def stats(self) -> dict[str, Any]:
        ordered = sorted(self.latencies)
        p50 = ordered[len(ordered) // 2] if ordered else None
        return {
            "url": self.url,
            "requests": self.requests,
            "errors": self.errors,
            "latency_p50_s": p50,
            "latency_mean_s": sum(ordered) / len(ordered) if ordered else None,
        }


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
