"""Command-line and ini options, read once into a typed, validated RunOptions.

Every option problem is a ConfigError with one line (the hooks turn it into a usage error).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from pytest_distill.bench.saturate import SaturationSettings
from pytest_distill.core.cost import DEFAULT_PEAK_FACTOR, DEFAULT_TRAFFIC, parse_traffic
from pytest_distill.core.errors import ConfigError
from pytest_distill.core.sampling import DEFAULT_SEED
from pytest_distill.core.serving import DEFAULT_KNEE, DEFAULT_MAX_CONCURRENCY
from pytest_distill.core.shard import Shard, parse_shard
from pytest_distill.plugin import xdist
from pytest_distill.suite.loader import (
    CONFIG_FILES,
    JOB_FILE,
    SETTINGS_FILE,
    TEST_FILES,
)

DEFAULT_MODEL = "smollm2-135m"  # the embedded model: runs offline
DEFAULT_SHOWN_MISSES = 20  # suite misses printed one line each; the rest are counted
DEFAULT_JUDGE = "smollm2-135m"  # offline default; --judge or distill.toml `judge` for a real one


def add_options(parser: pytest.Parser) -> None:
    group = parser.getgroup("distill", "pytest-distill: evaluate language models on suite folders")
    group.addoption(
        "--model",
        action="append",
        dest="distill_models",
        metavar="NAME",
        help="model to evaluate (repeatable, or @group; each model runs every example): replaces "
        "the suites' distill.toml `models` plans for this run. Default: each suite's plan, "
        "else smollm2-135m, the embedded model.",
    )
    group.addoption(
        "--limit", type=int, dest="distill_limit", metavar="N", help="evaluate only the first N examples of each suite"
    )
    group.addoption(
        "--sample",
        type=int,
        dest="distill_sample",
        metavar="N",
        help="evaluate a seeded sample of N examples of each suite, the same on every machine and "
        "under -n: stratified by label for classification suites; ids keep their row numbers",
    )
    group.addoption(
        "--sample-seed",
        type=int,
        default=None,
        dest="distill_sample_seed",
        metavar="S",
        help=f"the --sample seed (default {DEFAULT_SEED}): another seed, another sample",
    )
    group.addoption(
        "--distill-show-misses",
        dest="distill_show_misses",
        metavar="N|all|none",
        help="suite items' misses shown one line each at the end (default 20; all with -v); the "
        "rest are counted, their detail kept in JUnit and results.json. all: pytest's full "
        "failure sections. Errors always print in full",
    )
    group.addoption(
        "--repeat",
        type=int,
        default=None,
        dest="distill_repeat",
        metavar="N",
        help="run every example N times on every model, as separate items (ids carry -rK); default: "
        "each model's models.toml `repeat` (frontier entries 3), else 1",
    )
    group.addoption(
        "--distill-models",
        dest="distill_models_file",
        metavar="FILE",
        help="project models file (default: models.toml at the rootdir)",
    )
    group.addoption(
        "--judge",
        dest="distill_judge",
        metavar="NAME",
        help="model that grades free-text answers (scorer 'judge'); default: the suite's "
        "distill.toml judge, else smollm2-135m (offline)",
    )
    group.addoption(
        "--distill-unconstrained",
        action="store_true",
        dest="distill_unconstrained",
        help="don't constrain classification output to the label set",
    )
    group.addoption(
        "--min-pass-rate",
        type=float,
        dest="distill_min_pass_rate",
        metavar="RATE",
        help="gate every suite x model on this pass rate (0..1), overriding distill.toml",
    )
    group.addoption(
        "--max-regression",
        type=float,
        dest="distill_max_regression",
        metavar="PP",
        help="with --distill-baseline: fail a suite x model whose pass rate dropped more than PP "
        "percentage points, overriding distill.toml [gate] max_regression",
    )
    group.addoption(
        "--distill-baseline",
        dest="distill_baseline",
        metavar="FILE",
        help="compare the run with a results.json from an earlier --distill-report",
    )
    group.addoption(
        "--distill-report",
        dest="distill_report",
        metavar="DIR",
        help="write results.json, report.html and summary.md into DIR",
    )
    group.addoption(
        "--route-tolerance",
        type=float,
        default=1.0,
        dest="distill_route_tolerance",
        metavar="PP",
        help="routing advice: the cheapest model within PP percentage points of the best (default 1)",
    )
    group.addoption(
        "--distill-cache",
        dest="distill_cache",
        metavar="DIR",
        help="response cache directory (sqlite); answers are reused by request key",
    )
    group.addoption(
        "--distill-cache-mode",
        dest="distill_cache_mode",
        metavar="MODE",
        choices=["off", "readwrite", "read", "write", "replay"],
        help="off | readwrite (default with a DIR) | read (no stores) | write (refresh) | "
        "replay (a miss is an error: offline CI)",
    )
    group.addoption(
        "--distill-bench",
        action="store_true",
        dest="distill_bench",
        help="load benchmark instead of evaluating: replay the collected items' requests at a fixed "
        "concurrency and report req/s, tokens/s, latency and TTFT percentiles, server memory",
    )
    group.addoption(
        "--distill-bench-concurrency",
        type=int,
        dest="distill_bench_concurrency",
        metavar="C",
        help="requests in flight during --distill-bench (default: the model's max_concurrency, else 8)",
    )
    group.addoption(
        "--distill-bench-requests",
        type=int,
        dest="distill_bench_requests",
        metavar="N",
        help="measured requests (default 100 unless --distill-bench-duration is given)",
    )
    group.addoption(
        "--distill-bench-duration",
        type=float,
        dest="distill_bench_duration",
        metavar="S",
        help="measure for S seconds instead of a number of requests",
    )
    group.addoption(
        "--distill-bench-warmup",
        type=int,
        dest="distill_bench_warmup",
        metavar="W",
        help="uncounted warm-up requests first (default: the concurrency)",
    )
    # --- CI shards (issue 14) ---
    group.addoption(
        "--distill-shard",
        dest="distill_shard",
        metavar="K/N",
        help="evaluate shard K of N: a fixed 1/N of the examples (all models and repetitions of an "
        "example together); combine the shards' results.json with `pytest-distill merge`",
    )
    # --- serving: saturation search, stored serving figures, cost at volume (docs/benchmarks.md)
    group.addoption(
        "--distill-bench-saturate",
        action="store_true",
        dest="distill_bench_saturate",
        help="with --distill-bench: step concurrency 1, 2, 4, ... up to --distill-bench-max-concurrency "
        "until throughput stops rising (the knee); the rate there prices the model",
    )
    group.addoption(
        "--distill-bench-max-concurrency",
        type=int,
        default=None,
        dest="distill_bench_max_concurrency",
        metavar="C",
        help="the saturation search's last step (default 64)",
    )
    group.addoption(
        "--distill-bench-knee",
        type=float,
        default=None,
        dest="distill_bench_knee",
        metavar="PCT",
        help="the search stops when doubling concurrency raises throughput by less than PCT percent (default 5)",
    )
    group.addoption(
        "--distill-bench-slo-p95-ms",
        type=float,
        default=None,
        dest="distill_bench_slo_p95_ms",
        metavar="MS",
        help="the search stops before the first step whose latency p95 exceeds MS",
    )
    group.addoption(
        "--distill-serving",
        dest="distill_serving",
        metavar="FILE",
        help="price self-hosted models with the serving figures (bench section) of an earlier "
        "run's results.json, matched by entry name and serving settings",
    )
    group.addoption(
        "--distill-traffic",
        action="append",
        dest="distill_traffic",
        metavar="N/day",
        help="monthly cost at this traffic (repeatable; /day, /hour, /min or /s); "
        "default 10k, 100k, 1M and 10M requests/day",
    )
    group.addoption(
        "--distill-peak-factor",
        type=float,
        default=None,
        dest="distill_peak_factor",
        metavar="F",
        help="peak over mean request rate that self-hosted capacity must carry (default 1: flat traffic)",
    )
    group.addoption(
        "--distill-traffic-mix",
        dest="distill_traffic_mix",
        metavar="SUITE=WEIGHT,...",
        help="the overall routing table's traffic mix, e.g. banking77=3,trec=1 (default: equal "
        "traffic per suite; suites left out get none)",
    )
    parser.addini("distill_models_file", "project models file (default: models.toml at the rootdir)")
    parser.addini("distill_cache", "response cache directory (as --distill-cache)")
    parser.addini("distill_cache_mode", "response cache mode (as --distill-cache-mode)")


@dataclass(frozen=True)
class BenchOptions:
    """--distill-bench's settings (None where the model's default applies)."""

    concurrency: int | None
    requests: int | None
    duration_s: float | None
    warmup: int | None
    saturation: SaturationSettings | None = None  # --distill-bench-saturate


@dataclass(frozen=True)
class RunOptions:
    models: tuple[str, ...]
    limit: int | None
    repeat: int
    constrain: bool
    min_pass_rate: float | None
    max_regression: float | None
    route_tolerance: float  # percentage points
    report_dir: Path | None  # absolute
    baseline_path: str | None  # as given (reports show it)
    judge: str | None
    models_file: Path | None  # absolute; None: the built-in models only
    cache_dir: str | None
    cache_mode: str | None
    collect_only: bool
    bench: BenchOptions | None  # set with --distill-bench
    invocation_dir: Path
    rootdir: Path
    # model plans (plugin/plans.py): --model as given (empty: each suite's plan), --repeat as
    # given (None: each model's `repeat`); `models` / `repeat` above keep their defaults
    cli_models: tuple[str, ...] = ()
    forced_repeat: int | None = None
    shard: Shard | None = None  # --distill-shard K/N
    serving_path: str | None = None  # --distill-serving, as given
    traffic: tuple[float, ...] = DEFAULT_TRAFFIC  # requests per day
    peak_factor: float = DEFAULT_PEAK_FACTOR
    traffic_mix: tuple[tuple[str, float], ...] = ()  # --distill-traffic-mix; empty: equal traffic
    sample: int | None = None  # --sample N
    sample_seed: int = DEFAULT_SEED
    show_misses: int | None = DEFAULT_SHOWN_MISSES  # --distill-show-misses; None: all (pytest's own sections)

    @classmethod
    def from_config(cls, config: pytest.Config) -> RunOptions:
        """Read and check every option; raises ConfigError with one line."""
        get = config.getoption
        options = cls(
            models=tuple(dict.fromkeys(get("distill_models") or [DEFAULT_MODEL])),
            limit=get("distill_limit"),
            repeat=get("distill_repeat") or 1,
            constrain=not get("distill_unconstrained"),
            min_pass_rate=get("distill_min_pass_rate"),
            max_regression=get("distill_max_regression"),
            route_tolerance=get("distill_route_tolerance"),
            report_dir=config.invocation_params.dir / get("distill_report") if get("distill_report") else None,
            baseline_path=get("distill_baseline"),
            judge=get("distill_judge", None),
            models_file=_models_file(config),
            cache_dir=get("distill_cache") or config.getini("distill_cache") or None,
            cache_mode=get("distill_cache_mode") or config.getini("distill_cache_mode") or None,
            collect_only=bool(get("collectonly")),
            bench=_bench(config),
            invocation_dir=config.invocation_params.dir,
            rootdir=config.rootpath,
            cli_models=tuple(dict.fromkeys(get("distill_models") or [])),
            forced_repeat=get("distill_repeat"),
            shard=parse_shard(get("distill_shard")) if get("distill_shard") else None,
            serving_path=get("distill_serving"),
            traffic=_traffic(config),
            peak_factor=_peak_factor(config),
            traffic_mix=parse_traffic_mix(get("distill_traffic_mix")),
            sample=get("distill_sample"),
            sample_seed=_sample_seed(config),
            show_misses=parse_show_misses(get("distill_show_misses"), verbose=config.get_verbosity() > 0),
        )
        options.check()
        if not xdist.is_worker(config):
            check_named_folders([str(a) for a in config.args], config.invocation_params.dir)
        return options

    def check(self) -> None:
        if self.forced_repeat is not None and self.forced_repeat < 1:
            raise ConfigError(f"--repeat must be at least 1, got {self.forced_repeat}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if self.sample is not None and self.sample < 1:
            raise ConfigError(f"--sample must be at least 1, got {self.sample}")
        if self.sample is not None and self.limit is not None:
            raise ConfigError("--limit and --sample both choose the examples: give one of them")
        if self.min_pass_rate is not None and not 0 <= self.min_pass_rate <= 1:
            raise ConfigError(f"--min-pass-rate must be between 0 and 1, got {self.min_pass_rate:g}")
        if self.max_regression is not None and self.max_regression < 0:
            raise ConfigError(f"--max-regression is in percentage points, at least 0; got {self.max_regression:g}")
        if self.route_tolerance < 0:
            raise ConfigError(f"--route-tolerance is in percentage points, at least 0; got {self.route_tolerance:g}")

    @property
    def baseline_file(self) -> Path | None:
        return None if self.baseline_path is None else self.invocation_dir / self.baseline_path

    @property
    def serving_file(self) -> Path | None:
        return None if self.serving_path is None else self.invocation_dir / self.serving_path


def _sample_seed(config: pytest.Config) -> int:
    seed = config.getoption("distill_sample_seed")
    if seed is None:
        return DEFAULT_SEED
    if config.getoption("distill_sample") is None:
        raise ConfigError("--sample-seed chooses --sample's sample: give --sample N too")
    return int(seed)


def parse_show_misses(text: str | None, *, verbose: bool = False) -> int | None:
    """--distill-show-misses: a count of one-line misses, or None for all (pytest's full sections).
    Unset: 20, or all under -v."""
    if text is None:
        return None if verbose else DEFAULT_SHOWN_MISSES
    value = text.strip().lower()
    if value == "all":
        return None
    if value == "none":
        return 0
    if value.isdigit():
        return int(value)
    raise ConfigError(f"--distill-show-misses takes a number, all or none; got {text!r}")


def parse_traffic_mix(text: str | None) -> tuple[tuple[str, float], ...]:
    """'banking77=3,trec=1' -> (("banking77", 3.0), ("trec", 1.0)); ConfigError naming the bad part."""
    if not text:
        return ()
    mix: dict[str, float] = {}
    for part in text.split(","):
        name, eq, weight = part.strip().partition("=")
        try:
            value = float(weight)
        except ValueError:
            value = -1.0
        if not eq or not name.strip() or not value >= 0 or value == float("inf"):
            raise ConfigError(
                f"--distill-traffic-mix: {part.strip()!r} is not SUITE=WEIGHT with a weight >= 0 "
                "(e.g. banking77=3,trec=1)"
            )
        if name.strip() in mix:
            raise ConfigError(f"--distill-traffic-mix names {name.strip()} twice")
        mix[name.strip()] = value
    return tuple(mix.items())


def _models_file(config: pytest.Config) -> Path | None:
    option = config.getoption("distill_models_file") or config.getini("distill_models_file")
    if option:
        path = Path(option)
        return path if path.is_absolute() else config.rootpath / path
    default = config.rootpath / "models.toml"
    return default if default.is_file() else None


def _bench(config: pytest.Config) -> BenchOptions | None:
    get = config.getoption
    if not get("distill_bench"):
        return None
    if xdist.requested(config) and not xdist.is_worker(config):
        raise ConfigError("--distill-bench measures one client at a fixed concurrency: run it without -n")
    for name in ("distill_bench_concurrency", "distill_bench_requests", "distill_bench_warmup"):
        value = get(name)
        least = 0 if name.endswith("warmup") else 1
        if value is not None and value < least:
            raise ConfigError(f"--{name.replace('_', '-')} must be at least {least}")
    duration = get("distill_bench_duration")
    if duration is not None and duration <= 0:
        raise ConfigError("--distill-bench-duration must be positive")
    return BenchOptions(
        get("distill_bench_concurrency"),
        get("distill_bench_requests"),
        duration,
        get("distill_bench_warmup"),
        _saturation(config),
    )


def _saturation(config: pytest.Config) -> SaturationSettings | None:
    get = config.getoption
    if not get("distill_bench_saturate"):
        for name in ("distill_bench_max_concurrency", "distill_bench_knee", "distill_bench_slo_p95_ms"):
            if get(name) is not None:
                raise ConfigError(f"--{name.replace('_', '-')} applies to --distill-bench-saturate only")
        return None
    if get("distill_bench_concurrency") is not None:
        raise ConfigError(
            "--distill-bench-saturate chooses the concurrency: drop --distill-bench-concurrency "
            "(or cap it with --distill-bench-max-concurrency)"
        )
    if get("distill_bench_duration") is not None:
        raise ConfigError(
            "--distill-bench-saturate measures a number of requests per step: use "
            "--distill-bench-requests, not --distill-bench-duration"
        )
    cap = get("distill_bench_max_concurrency")
    if cap is not None and cap < 1:
        raise ConfigError("--distill-bench-max-concurrency must be at least 1")
    knee = get("distill_bench_knee")
    if knee is not None and not 0 <= knee < 100:
        raise ConfigError(f"--distill-bench-knee is a percentage, 0 to 100; got {knee:g}")
    slo = get("distill_bench_slo_p95_ms")
    if slo is not None and slo <= 0:
        raise ConfigError("--distill-bench-slo-p95-ms must be positive")
    return SaturationSettings(
        max_concurrency=cap or DEFAULT_MAX_CONCURRENCY,
        knee=DEFAULT_KNEE if knee is None else knee / 100,
        slo_p95_s=None if slo is None else slo / 1000,
        requests_per_step=get("distill_bench_requests"),
        warmup=get("distill_bench_warmup"),
    )


def _traffic(config: pytest.Config) -> tuple[float, ...]:
    given = config.getoption("distill_traffic")
    if not given:
        return DEFAULT_TRAFFIC
    levels = []
    for text in given:
        for part in text.split(","):
            try:
                levels.append(parse_traffic(part))
            except ValueError as exc:
                raise ConfigError(f"--distill-traffic {text}: {exc}") from None
    return tuple(sorted(set(levels)))


def _peak_factor(config: pytest.Config) -> float:
    factor = config.getoption("distill_peak_factor")
    if factor is None:
        return DEFAULT_PEAK_FACTOR
    if not factor >= 1:
        raise ConfigError(f"--distill-peak-factor is peak over mean traffic, at least 1; got {factor:g}")
    return float(factor)


# Files that only a suite folder has: a named folder holding one of them, but no
# job_description.json, was meant as a suite.
_SUITE_FILES = (*TEST_FILES, SETTINGS_FILE, *CONFIG_FILES)


def check_named_folders(args: list[str], invocation_dir: Path) -> None:
    """A folder named on the command line that looks like a suite but is not one stops the run
    with one line, instead of 'no tests ran'."""
    for arg in args:
        path = Path(arg.split("::", 1)[0])
        folder = path if path.is_absolute() else invocation_dir / path
        if not folder.is_dir() or (folder / JOB_FILE).is_file():
            continue
        found = [name for name in _SUITE_FILES if (folder / name).is_file()]
        if found == [SETTINGS_FILE]:
            continue  # a distill.toml alone: settings shared by the suites below (plans.py)
        if found:
            raise ConfigError(f"{arg} is not a suite folder: it has {', '.join(found)} but no {JOB_FILE}")
