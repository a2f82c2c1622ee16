"""Every pytest-xdist concern in one place: who is a worker, how a model's limits are
shared out, the prefetch window, and what the controller hands each worker.

Workers run items; only the controller (or a serial run) aggregates records, so the
numbers are the same with and without -n.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from pytest_distill.runtime import servers
from pytest_distill.runtime.servers import ServerPool

SERVERS_INPUT = "distill_servers"  # workerinput key: the controller's managed servers
REPLICAS_OUTPUT = "distill_replicas"  # workeroutput key: the worker's requests per replica
TURNS_INPUT = "distill_turns"  # workerinput key: managed servers taking turns (plugin/phases.py)


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def is_controller(config: pytest.Config) -> bool:
    """The xdist controller: it runs no items itself."""
    return config.pluginmanager.hasplugin("dsession")


def requested(config: pytest.Config) -> bool:
    """-n N was given (N > 0)."""
    return bool(getattr(config.option, "numprocesses", None))


def worker_count() -> int:
    """Processes sharing this machine's cores and each model's in-flight limit (1 when serial)."""
    return int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)


def workers_for_report(config: pytest.Config) -> int:
    """The run's worker count as reports show it: 0 for a serial run."""
    if not is_controller(config):
        return 0
    count = getattr(config.option, "numprocesses", None)
    return count if isinstance(count, int) else len(getattr(config.option, "tx", None) or [])


def share_out(entry: Any, provider_max_concurrency: int | None, worker: bool) -> None:
    """Make an entry fit this process: llama.cpp threads per worker, and (on a worker) its
    share of the model's in-flight limit."""
    workers = worker_count()
    if entry.provider == "llama-cpp":
        # Workers share the cores; more threads than cores makes them starve each other.
        share = max(1, (os.cpu_count() or 1) // workers)
        entry.n_threads = min(entry.n_threads or share, share)
        entry.n_threads_batch = min(entry.n_threads_batch or share, share)
    if worker and workers > 1:
        # The in-flight limit is the model's, not each worker's.
        limit = entry.max_concurrency or provider_max_concurrency or 1
        entry.max_concurrency = max(1, -(-limit // workers))


def worker_servers(config: pytest.Config) -> ServerPool:
    """On a worker: the servers the controller started (pytest_configure_node), to use, never stop."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})  # set by xdist on workers only
    pool = servers.from_worker_input(workerinput.get(SERVERS_INPUT))
    pool.later = set(worker_turns(config).get("order") or ())  # started by the controller for their turn
    return pool


def worker_turns(config: pytest.Config) -> dict[str, Any]:
    """On a worker: the controller's turns of managed servers (plugin/phases.py), or {}."""
    workerinput: dict[str, Any] = getattr(config, "workerinput", {})
    return dict(workerinput.get(TURNS_INPUT) or {})


def worker_input(pool: ServerPool) -> dict[str, Any]:
    """What the controller hands each worker: its managed servers, as plain data."""
    return {SERVERS_INPUT: servers.worker_input(pool)}


def keep_replica_stats(state: Any, raw: dict[str, Any]) -> None:
    """This process's requests per replica: a worker sends them to the controller (workeroutput,
    read in pytest_testnodedown); the controller (or a serial run) keeps its own."""
    if is_worker(state.config):
        state.config.workeroutput[REPLICAS_OUTPUT] = raw
    elif raw:
        state.gathered.replica_parts.append(raw)


def worker_finished(state: Any, node: Any) -> None:
    """Controller: a worker is done; keep what it counted per replica."""
    raw = (getattr(node, "workeroutput", None) or {}).get(REPLICAS_OUTPUT)
    if raw:
        state.gathered.replica_parts.append(raw)


def _worker_queue(config: pytest.Config) -> Any | None:
    """The worker's queue of item indices still to run (xdist's WorkerInteractor.torun).

    xdist has no public API for it: found by class name, used only under its lock, and
    only to prefetch (items the controller takes back are wasted requests, not wrong ones)."""
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor":
            queue = getattr(plugin, "torun", None)
            return queue if hasattr(queue, "lock") else None
    return None


def upcoming(item: pytest.Item, nextitem: pytest.Item | None, window: int) -> list[pytest.Item]:
    """On a worker: this item, the next one, and up to `window` items this worker was given."""
    queue = _worker_queue(item.config)
    if queue is None:
        return []
    with queue.lock() as pending:
        indices = [i for i in list(pending)[:window] if isinstance(i, int)]
    items = item.session.items
    return [item] + ([nextitem] if nextitem is not None else []) + [items[i] for i in indices if i < len(items)]
