"""Send requests: concurrency per model, rate limits, timeouts, retries, the response cache.

The engine runs its own asyncio loop in a background thread. Test items submit their
request (or have it prefetched) and wait on a concurrent.futures.Future, so N items
cost about as much as N concurrent requests, while pytest still runs items one by one.
Retry *decisions* belong to the provider (ProviderError.retryable / retry_after); the
engine only carries them out.

What comes out is either a Completion or a ProviderError (the model's or its server's
failure: one line, counted as an error). Anything else raised inside a provider is a bug
in our code and propagates unchanged, traceback included, for the caller to report as an
internal error of the item. Every error message and every answer passes through
core.redact before it is cached or returned, so a key a server echoes never reaches the
cache, records or reports.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import dataclasses
import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from pytest_distill.core import redact
from pytest_distill.core.errors import DistillError
from pytest_distill.models.base import (
    Completion,
    Provider,
    ProviderError,
    Request,
    ToolCall,
)
from pytest_distill.models.registry import ModelEntry, create_provider
from pytest_distill.runtime.replicas import Replica, ReplicaSet, is_replica_failure

if TYPE_CHECKING:
    from pytest_distill.runtime.servers import ServerPool

BACKOFF_BASE_S = 1.0
BACKOFF_CAP_S = 60.0


class ResponseCache(Protocol):
    """Storage for answers by request key (see cache.py).

    get/put never raise for a storage failure: the cache turns itself off (one warning)
    and sets `problem`, and the run goes on without it."""

    replay_only: bool
    problem: str | None

    def get(self, key: str) -> dict[str, Any] | None: ...

    def put(self, key: str, value: dict[str, Any]) -> None: ...


CACHE_KEY_VERSION = 2  # bump when the key's contents change, so old entries stop matching


def request_key(provider: Provider, request: Request, repetition: int) -> str:
    """Everything that decides an answer: provider config, the full request, the repetition."""
    entry = getattr(provider, "entry", None)
    payload = {
        "version": CACHE_KEY_VERSION,
        "provider": provider.describe(),
        # They shape every request body, whatever the provider's describe() shows.
        "params": getattr(entry, "params", None),
        "constraint_style": getattr(entry, "constraint_style", None),
        "tool_style": getattr(entry, "tool_style", None),
        "request": request.to_dict(),
        "repetition": repetition,
    }
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


@dataclass
class _Limits:
    semaphore: asyncio.Semaphore
    requests_per_minute: int | None
    tokens_per_minute: int | None
    starts: collections.deque = field(default_factory=collections.deque)  # request start times
    tokens: collections.deque = field(default_factory=collections.deque)  # [time, tokens]
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    clock: Any = time.monotonic  # injectable with `sleep` so limit tests don't wait
    sleep: Any = asyncio.sleep

    async def wait_for_budget(self, estimated_tokens: int) -> list:
        """Sliding one-minute windows: wait until one more request (and its tokens) fits.

        Returns the request's [time, tokens] slot, to correct with the tokens it really used.
        """
        if not self.requests_per_minute and not self.tokens_per_minute:
            # No window to keep: tracking one would cost a sum over every request of the
            # last minute per request (10% of the client's time at 200 req/s, profiled).
            return [self.clock(), estimated_tokens]
        async with self.lock:
            while True:
                now = self.clock()
                while self.starts and now - self.starts[0] >= 60:
                    self.starts.popleft()
                while self.tokens and now - self.tokens[0][0] >= 60:
                    self.tokens.popleft()
                waits = []
                if self.requests_per_minute and len(self.starts) >= self.requests_per_minute:
                    waits.append(60 - (now - self.starts[0]))
                used = sum(t for _, t in self.tokens)
                if self.tokens_per_minute and self.tokens and used + estimated_tokens > self.tokens_per_minute:
                    waits.append(60 - (now - self.tokens[0][0]))
                if not waits:
                    self.starts.append(now)
                    slot = [now, estimated_tokens]
                    self.tokens.append(slot)
                    return slot
                await self.sleep(max(0.01, min(waits)))


def redact_completion(completion: Completion) -> Completion:
    """The answer with every registered secret replaced (core.redact), in place.

    Only registered secrets: a tool argument *named* `password` is the model's answer and
    is compared with the reference, so it is not masked by name."""
    completion.text = redact.text(completion.text)
    completion.model = redact.text(completion.model)
    completion.tool_calls = [ToolCall(redact.text(c.name), _redact_strings(c.arguments)) for c in completion.tool_calls]
    return completion


def _redact_strings(data: Any) -> Any:
    if isinstance(data, str):
        return redact.text(data)
    if isinstance(data, dict):
        return {_redact_strings(k): _redact_strings(v) for k, v in data.items()}
    if isinstance(data, list):
        return [_redact_strings(v) for v in data]
    return data


def redact_error(error: ProviderError, attempts: int = 1) -> ProviderError:
    """The error the caller gets: its message redacted, and the attempts made if several."""
    if attempts > 1:
        return ProviderError(redact.text(f"{error} (after {attempts} attempts)"), status=error.status)
    message = redact.text(str(error))
    if message == str(error):
        return error
    return ProviderError(message, retryable=error.retryable, retry_after=error.retry_after, status=error.status)


class Engine:
    def __init__(
        self,
        cache: ResponseCache | None = None,
        *,
        servers: ServerPool | None = None,
        sleep: Any = asyncio.sleep,
        clock: Any = time.monotonic,
    ) -> None:
        """`servers`: the managed servers this process uses (runtime.servers); a provider
        whose model runs on one is built attached to it."""
        self.cache = cache
        self.servers = servers
        self._sleep = sleep  # injectable so retry tests don't wait
        self._clock = clock
        self._providers: dict[str, Provider] = {}
        self._limits: dict[str, _Limits] = {}
        self._futures: dict[tuple[str, str], concurrent.futures.Future] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.RLock()
        self.retries = 0  # how many retries were made, over all requests
        self._replicas: dict[str, ReplicaSet] = {}  # entries with base_urls
        self._retired: list[tuple[str, ReplicaSet]] = []  # replica sets of servers that took their turn

    # --- lifecycle -------------------------------------------------------
    def _ensure_loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, name="distill-engine", daemon=True)
                self._thread.start()
            return self._loop

    def provider(self, entry: ModelEntry) -> Provider:
        with self._lock:
            provider = self._providers.get(entry.name)
            if provider is None:
                provider = self.servers.provider_for(entry) if self.servers is not None else create_provider(entry)
                self._providers[entry.name] = provider
        return provider

    def forget_model(self, name: str) -> None:
        """Build the model's provider afresh at its next request: its managed server changed
        (several managed servers take turns, runtime/rotation.py). Its replica counts are kept."""
        with self._lock:
            self._providers.pop(name, None)
            replicas = self._replicas.pop(name, None)
            if replicas is not None:
                self._retired.append((name, replicas))

    def close(self) -> None:
        """Cancel what is still in flight (after -x or Ctrl-C) and release providers."""
        for future in list(self._futures.values()):
            future.cancel()
        if self._loop is not None:
            loop = self._loop

            async def _cancel_all() -> None:
                tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)

            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=10)
            loop.call_soon_threadsafe(loop.stop)
            if self._thread is not None:
                self._thread.join(timeout=10)
            self._loop = None
        for provider in self._providers.values():
            provider.close()
        for replica_set in [*self._replicas.values(), *(kept for _, kept in self._retired)]:
            for replica in replica_set.replicas:
                replica.provider.close()
        self._providers.clear()
        self._replicas.clear()
        self._futures.clear()

    # --- requests --------------------------------------------------------
    def _key(self, entry: ModelEntry, provider: Provider, request: Request, repetition: int) -> str:
        # Memoized on the (frozen) request: prefetch, complete and forget ask for the same key.
        memo = request.__dict__.setdefault("_distill_keys", {})
        key = memo.get((entry.name, repetition))
        if key is None:
            key = memo[(entry.name, repetition)] = request_key(provider, request, repetition)
        return key

    def submit(self, entry: ModelEntry, request: Request, repetition: int = 1) -> concurrent.futures.Future:
        """Start (or join) the request for this model, request and repetition."""
        provider = self.provider(entry)
        key = self._key(entry, provider, request, repetition)
        with self._lock:
            future = self._futures.get((entry.name, key))
            if future is None:
                loop = self._ensure_loop()
                future = asyncio.run_coroutine_threadsafe(self._run(entry, provider, request, key), loop)
                self._futures[(entry.name, key)] = future
        return future

    def complete(self, entry: ModelEntry, request: Request, repetition: int = 1) -> Completion:
        """Blocking form of submit(); raises ProviderError."""
        future = self.submit(entry, request, repetition)
        try:
            return future.result()
        finally:
            self.forget(entry, request, repetition)

    def forget(self, entry: ModelEntry, request: Request, repetition: int) -> None:
        provider = self.provider(entry)
        with self._lock:
            self._futures.pop((entry.name, self._key(entry, provider, request, repetition)), None)

    def _limits_for(self, entry: ModelEntry, provider: Provider) -> _Limits:
        limits = self._limits.get(entry.name)
        if limits is None:
            concurrency = entry.max_concurrency or provider.max_concurrency
            limits = _Limits(
                asyncio.Semaphore(concurrency),
                entry.requests_per_minute,
                entry.tokens_per_minute,
                clock=self._clock,
                sleep=self._sleep,
            )
            self._limits[entry.name] = limits
        return limits

    async def _run(self, entry: ModelEntry, provider: Provider, request: Request, key: str) -> Completion:
        if self.cache is not None:
            # A local sqlite read takes microseconds: a thread-pool hop per request cost more
            # than the read (10,000 replayed items: the walk waited on the hops).
            hit = self.cache.get(key)
            if hit is not None:
                completion = redact_completion(Completion.from_dict(hit))  # stored by an older version?
                completion.cached = True
                return completion
            if self.cache.replay_only:
                why = f"; the cache is off: {self.cache.problem}" if self.cache.problem else ""
                raise ProviderError(f"{entry.name}: no cached answer for this request (cache in replay mode){why}")
        completion = await self._ask(entry, provider, request)
        if self.cache is not None:
            await asyncio.to_thread(self.cache.put, key, completion.to_dict())
        return completion

    def replica_stats(self) -> dict[str, list[dict[str, Any]]]:
        """Per model with replicas: each replica's answered requests, failures and raw latencies
        (mergeable over xdist workers: runtime/replicas.merge_stats)."""
        stats: dict[str, list[dict[str, Any]]] = {}
        for name, replicas in [*self._retired, *self._replicas.items()]:
            stats.setdefault(name, []).extend(replicas.raw_stats())  # merge_stats sums rows by URL
        return stats

    def _managed_replicas(self, entry: ModelEntry) -> list[Any]:
        """The entry's managed servers when the run started more than one (`replicas = N`)."""
        infos = self.servers.replicas_of(entry.name) if self.servers is not None else []
        return infos if len(infos) > 1 else []

    def _replicas_for(self, entry: ModelEntry, provider: Provider) -> ReplicaSet:
        replicas = self._replicas.get(entry.name)
        if replicas is None:
            limit = entry.max_concurrency or provider.max_concurrency
            if entry.base_urls:
                members = [
                    Replica(url, create_provider(dataclasses.replace(entry, base_url=url, base_urls=[])), limit)
                    for url in entry.base_urls
                ]
            else:  # managed replicas: each provider attached to its own server (and told when it dies)
                pool = self.servers
                assert pool is not None
                members = [
                    Replica(
                        info.base_url,
                        pool.provider_on(dataclasses.replace(entry), info),
                        limit,
                        devices=info.devices,
                    )
                    for info in self._managed_replicas(entry)
                ]
            replicas = ReplicaSet(members, clock=self._clock)
            self._replicas[entry.name] = replicas
        return replicas

    async def _ask_replicas(self, entry: ModelEntry, provider: Provider, request: Request) -> Completion:
        """As _ask, over the entry's replicas: a replica's failure sends the request to another one
        at once (a retry); once every replica failed it, the provider's retry decision applies."""
        replicas = self._replicas_for(entry, provider)
        limits = self._limits_for(entry, provider)  # its requests/tokens per minute are the model's
        estimated = len(json.dumps(request.to_dict(), default=str)) // 4 + request.max_tokens
        attempt, failed_on = 0, set[str]()
        while True:
            replica = await replicas.acquire(avoid=failed_on)
            started, replica_failed = self._clock(), False
            try:
                slot = await limits.wait_for_budget(estimated)
                await asyncio.to_thread(replica.provider.start)
                started = self._clock()  # the replica's latency: the request itself, not the wait for budget
                completion = await asyncio.wait_for(replica.provider.complete(request), timeout=entry.timeout_s)
                completion.finished_at = time.time()
                slot[1] = completion.usage.input_tokens + completion.usage.output_tokens or estimated
                replicas.release(replica, latency_s=self._clock() - started)
                return redact_completion(completion)
            except TimeoutError:
                error = ProviderError(
                    f"{entry.name}: no answer within {entry.timeout_s:g}s from {replica.url}", retryable=True
                )
                replica_failed = True
            except ProviderError as exc:
                error, replica_failed = exc, is_replica_failure(exc, replica.provider)
            except DistillError as exc:
                error = ProviderError(f"{entry.name}: {exc}")
            except BaseException:
                replicas.release(replica)
                raise
            replicas.release(replica, failed=replica_failed)
            if replica_failed:
                failed_on.add(replica.url)
                if len(failed_on) < len(replicas.replicas):
                    self.retries += 1
                    continue
            if not error.retryable or attempt >= entry.max_retries:
                raise redact_error(error, attempt + 1) from None
            attempt += 1
            self.retries += 1
            failed_on.clear()
            await self._sleep(self.backoff(attempt, error.retry_after))

    async def _ask(self, entry: ModelEntry, provider: Provider, request: Request) -> Completion:
        """The provider's answer, retried as the provider decides; a ProviderError otherwise."""
        if entry.base_urls or self._managed_replicas(entry):
            return await self._ask_replicas(entry, provider, request)
        limits = self._limits_for(entry, provider)
        estimated = len(json.dumps(request.to_dict(), default=str)) // 4 + request.max_tokens
        attempt = 0
        while True:
            async with limits.semaphore:
                slot = await limits.wait_for_budget(estimated)
                try:
                    await asyncio.to_thread(provider.start)
                    completion = await asyncio.wait_for(provider.complete(request), timeout=entry.timeout_s)
                    completion.finished_at = time.time()
                    usage = completion.usage
                    # the tokens/min window counts what the request really used, once known
                    slot[1] = usage.input_tokens + usage.output_tokens or estimated
                    return redact_completion(completion)
                except TimeoutError:
                    error = ProviderError(f"{entry.name}: no answer within {entry.timeout_s:g}s", retryable=True)
                except ProviderError as exc:
                    error = exc
                except DistillError as exc:  # a setup problem found late (e.g. a missing package): one line
                    error = ProviderError(f"{entry.name}: {exc}")
                # Anything else is a bug in our code: it propagates with its traceback.
            if not error.retryable or attempt >= entry.max_retries:
                raise redact_error(error, attempt + 1) from None
            attempt += 1
            self.retries += 1
            await self._sleep(self.backoff(attempt, error.retry_after))

    @staticmethod
    def backoff(attempt: int, retry_after: float | None) -> float:
        """Retry-After when the server gave one, else exponential backoff with full jitter."""
        if retry_after is not None:
            # Never before the server's time; a little jitter so concurrent requests don't
            # all come back at the same instant.
            wait = min(max(retry_after, 0.0), BACKOFF_CAP_S * 5)
            return wait + random.uniform(0, min(1.0, 0.1 * wait))
        return random.uniform(0, min(BACKOFF_CAP_S, BACKOFF_BASE_S * 2 ** (attempt - 1)))
