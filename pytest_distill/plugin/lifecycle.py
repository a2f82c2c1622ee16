"""Opening and closing a run: models resolved, cache opened, managed servers started.

Everything a typo or a missing key breaks is found here, before any request, as one line.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest

from pytest_distill.bench.load import fingerprint_id
from pytest_distill.core.serving import ServingMeasurement
from pytest_distill.models.registry import ModelEntry, Registry
from pytest_distill.plugin import xdist
from pytest_distill.plugin.evaluate import Evaluator
from pytest_distill.plugin.options import RunOptions
from pytest_distill.plugin.plans import RunPlan
from pytest_distill.plugin.state import RunModels, RunState
from pytest_distill.report.results_file import read_results
from pytest_distill.runtime import preflight
from pytest_distill.runtime.cache import SqliteCache, open_cache
from pytest_distill.runtime.engine import Engine
from pytest_distill.runtime.servers import ServerPool


def open_run(config: pytest.Config) -> RunState:
    """Read the options, plan the suites named on the command line (plans.py) and resolve
    their models (and --judge); raises DistillError."""
    options = RunOptions.from_config(config)
    worker = xdist.is_worker(config)
    # Read now: a bad baseline file stops the run before any request.
    baseline = read_results(options.baseline_file) if options.baseline_file and not worker else None
    registry = Registry(options.models_file)
    plan = RunPlan(registry, options)
    plan.discover([str(a) for a in config.args], list(config.getini("norecursedirs")))
    cache = open_cache(options.cache_dir, options.cache_mode, options.rootdir)
    # On a worker: the servers the controller started (pytest_configure_node).
    servers = xdist.worker_servers(config) if worker else ServerPool()
    # A server nobody starts is asked once, in the controller, before any item; never for
    # --collect-only or a replayed run (which calls no model).
    probe = not options.collect_only and (cache is None or not cache.replay_only)

    def resolve(name: str) -> ModelEntry:
        return resolve_entry(registry, name, cache, worker, servers, probe=probe)

    # --model names the models even where no suite folder is found (@examples tests)
    names = registry.expand(options.cli_models) if options.cli_models else plan.models
    entries = {name: resolve(name) for name in names}
    evaluator = Evaluator(options, entries, resolve, lambda: Engine(cache=cache, servers=servers))
    if options.judge:  # resolve now: a typo stops the run before any request
        evaluator.judge_entry(options.judge)
    state = RunState(
        config=config,
        options=options,
        models=RunModels(registry, entries, plan, resolve),
        cache=cache,
        servers=servers,
        evaluator=evaluator,
        baseline=baseline,
    )
    if options.serving_file is not None and not worker:  # read now: a bad file stops the run first
        state.serving.stored, unmatched = stored_serving(options.serving_file, options.serving_path or "", entries)
        state.notes += [(line, True) for line in unmatched]
    return state


def ensure_entries(state: RunState, names: tuple[str, ...]) -> None:
    """Entries planned after the run opened (a suite found by collection or @examples)."""
    for name in names:
        if name not in state.models.entries and state.models.resolve is not None:
            state.models.entries[name] = state.models.resolve(name)


def stored_serving(
    path: Path, shown: str, entries: dict[str, ModelEntry]
) -> tuple[dict[str, ServingMeasurement], list[str]]:
    """--distill-serving FILE: each self-hosted entry's measurement in the file's bench section,
    matched by entry name and the fingerprint of its serving settings; lines for the unmatched."""
    document = read_results(path, "--distill-serving")
    stored = [m for m in document.get("bench") or [] if isinstance(m, dict)]
    found: dict[str, ServingMeasurement] = {}
    unmatched = []
    for name, entry in entries.items():
        if not entry.self_hosted:
            continue
        same_name = [m for m in stored if m.get("model") == name and m.get("requests_per_s")]
        match = next((m for m in same_name if m.get("fingerprint") == fingerprint_id(entry)), None)
        if match is not None:
            found[name] = ServingMeasurement.from_dict(match, source=shown)
        elif same_name:
            unmatched.append(
                f"--distill-serving {shown}: '{name}' was measured with other serving settings "
                "(model, serve_args or base_url differ): not used"
            )
        else:
            unmatched.append(f"--distill-serving {shown}: no serving figures for '{name}'")
    return found, unmatched


def resolve_entry(
    registry: Registry, name: str, cache: SqliteCache | None, worker: bool, servers: ServerPool, probe: bool = False
) -> ModelEntry:
    """A registry entry made ready for this process: its share of threads and in-flight
    requests under xdist, and its key checked (a missing key stops the run in one line).
    `probe`: an openai-compatible server is asked once whether it is there (runtime/preflight),
    by the controller; a worker asks only for a `model = "@served"` name."""
    entry = registry.get(name)
    if probe and preflight.needs_preflight(entry) and (not worker or entry.model == preflight.SERVED_MODEL):
        preflight.resolve_served_model(entry, preflight.served_models(entry))
    provider = servers.provider_for(entry)
    xdist.share_out(entry, provider.max_concurrency, worker)
    # replay never calls the API: no key needed; a server the controller starts for its turn
    # was checked there
    if (cache is None or not cache.replay_only) and not (worker and entry.name in servers.later):
        provider.check()
    return entry


def start_servers(state: RunState) -> None:
    """Start the servers managed models need (vLLM): once, in the controller or a serial run."""
    if state.is_worker or state.options.collect_only:
        return
    if state.cache is not None and state.cache.replay_only:
        return  # replay never calls the model
    if state.options.bench is not None:
        return  # --distill-bench starts each model's server for its turn (bench/runner.py)
    # --judge was resolved at start: a managed judge gets its server too.
    candidates = [*state.models.entries.values(), *state.evaluator.judge_entries]
    # Models that take turns (plugin/phases.py) start later, one at a time.
    entries = [e for e in candidates if e.name not in state.servers.later and state.servers.needs_server(e)]
    if not entries:
        return
    reporter = state.config.pluginmanager.get_plugin("terminalreporter")

    def progress(line: str) -> None:
        if reporter is not None:
            reporter.write_line(line)

    state.servers.start(entries, log_dir(state), progress)


def replica_layout(state: RunState) -> dict[str, list[tuple[str, str | None]]]:
    """Each model with replicas: its replicas' (url, devices), base_urls or managed servers."""
    layout: dict[str, list[tuple[str, str | None]]] = {}
    for entry in [*state.models.entries.values(), *state.evaluator.judge_entries]:
        managed = state.servers.started_for(entry.name)  # a turn's servers are stopped by now
        if entry.base_urls:
            layout[entry.name] = [(url, None) for url in entry.base_urls]
        elif len(managed) > 1:
            layout[entry.name] = [(info.base_url, info.devices) for info in managed]
    return layout


def log_dir(state: RunState) -> Path:
    """Where managed servers' logs go: pytest's cache folder, else a temporary one."""
    cache = getattr(state.config, "cache", None)
    return cache.mkdir("pytest-distill") if cache is not None else Path(tempfile.mkdtemp(prefix="pytest-distill-"))


def close(state: RunState) -> None:
    xdist.keep_replica_stats(state, state.evaluator.replica_stats())
    if not state.is_worker:
        state.models.replica_layout = replica_layout(state)  # before the servers stop
    state.evaluator.close()
    if state.cache is not None:
        state.cache.close()
    state.servers.stop()
