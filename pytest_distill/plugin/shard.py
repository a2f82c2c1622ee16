"""--distill-shard K/N: which items a shard collects, and what results.json records so that
`pytest-distill merge` can check its shards belong to one run (pytest_distill/cli/merge.py).
"""

from __future__ import annotations

from importlib import metadata
from pathlib import Path
from typing import Any

import pytest

from pytest_distill.core.decide import PytestOutcome
from pytest_distill.core.shard import Shard
from pytest_distill.plugin.options import RunOptions

# distill options that don't change what a run evaluates or decides: shards may differ in them.
_NOT_DEFINING = frozenset(
    {
        "distill_shard",
        "distill_show_misses",
        "distill_report",
        "distill_cache",
        "distill_cache_mode",
        "distill_bench",
        "distill_bench_concurrency",
        "distill_bench_requests",
        "distill_bench_duration",
        "distill_bench_warmup",
    }
)


def suite_key(folder: Path, rootdir: Path) -> str:
    """The suite folder as every runner of the same checkout names it: relative, '/'-separated."""
    try:
        return folder.resolve().relative_to(rootdir.resolve()).as_posix()
    except ValueError:
        return folder.resolve().as_posix()


def holds(options: RunOptions, folder: Path, example_id: str) -> bool:
    """Whether this run evaluates the example (always, without --distill-shard)."""
    return options.shard is None or options.shard.holds(suite_key(folder, options.rootdir), example_id)


def plugin_version() -> str | None:
    try:
        return metadata.version("pytest-distill")
    except metadata.PackageNotFoundError:
        return None


def run_definition(config: pytest.Config, options: RunOptions) -> dict[str, Any]:
    """What makes two shards parts of one run: the paths and selection given to pytest, every
    distill option that changes what is evaluated or decided, and the plugin's version."""
    root = options.rootdir
    paths = []
    for arg in config.args:
        path, sep, rest = str(arg).partition("::")
        full = Path(path) if Path(path).is_absolute() else options.invocation_dir / path
        paths.append(suite_key(full, root) + sep + rest)
    distill = {}
    for name, value in sorted(vars(config.option).items()):
        if name.startswith("distill_") and name not in _NOT_DEFINING:
            distill[name] = _plain(value)
    if "distill_sample_seed" in distill:  # the seed in effect: unset and the default are one sample
        distill["distill_sample_seed"] = options.sample_seed if options.sample is not None else None
    if options.models_file is not None:
        distill["distill_models_file"] = suite_key(options.models_file, root)
    return {
        "paths": sorted(paths),
        "keyword": config.getoption("keyword", "") or "",
        "markexpr": config.getoption("markexpr", "") or "",
        "options": distill,
        "plugin_version": plugin_version(),
    }


def _plain(value: Any) -> Any:
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value if isinstance(value, (str, int, float, bool, type(None))) else str(value)


def shard_info(shard: Shard | None, outcome: PytestOutcome) -> dict[str, Any] | None:
    """results.json's run.shard: which shard, and what pytest concluded before gates (merge sums it)."""
    if shard is None:
        return None
    return {
        "index": shard.index,
        "total": shard.total,
        "pytest_exit_status": outcome.status,
        "tests_failed": outcome.tests_failed,
        "stopped_early": outcome.stopped_early,
    }
