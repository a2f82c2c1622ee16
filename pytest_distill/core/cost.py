"""All cost policy: what an answer costs, and how that figure was arrived at (its basis).

- API models: tokens x the models file's dated prices (per million tokens).
- Self-hosted models: GPU $/hour / sustained requests per second x 3600, the rate being
  a --distill-bench measurement when one was saved for the entry, else the rate this run
  measured (answers not cached, not errors, first request's start to last answer).

Pure: a model entry is anything with the fields of `Priced` (models.registry.ModelEntry).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass
from typing import Protocol

from pytest_distill.core.serving import ServingMeasurement

DEFAULT_GPU_HOURLY_USD = 2.40  # an entry without gpu_hourly_usd (docs/models.md)


class Priced(Protocol):
    """What cost needs from a model entry."""

    @property
    def self_hosted(self) -> bool: ...
    @property
    def price_input(self) -> float | None: ...  # USD per million tokens
    @property
    def price_output(self) -> float | None: ...
    @property
    def price_cached_input(self) -> float | None: ...
    @property
    def gpu_hourly_usd(self) -> float | None: ...


class TokenCounts(Protocol):
    @property
    def input_tokens(self) -> int: ...
    @property
    def output_tokens(self) -> int: ...
    @property
    def cached_tokens(self) -> int: ...


class Timed(Protocol):
    """What a rate is measured from (core.records.Record)."""

    suite: str
    model: str
    outcome: str
    cached: bool
    latency_s: float | None
    finished_at: float | None


@dataclass(frozen=True)
class BenchRate:
    """A --distill-bench measurement saved for an entry."""

    requests_per_s: float
    concurrency: int


@dataclass(frozen=True)
class Cost:
    """The cost of one suite x model: per request (None: unknown) and how it was measured."""

    per_request: float | None
    basis: str  # "API price", "$2.40/h GPU / 3.10 req/s measured", ... or "-"

    @property
    def per_million(self) -> float | None:
        return None if self.per_request is None else self.per_request * 1e6


def api_cost(entry: Priced, usage: TokenCounts) -> float | None:
    """USD for one request at the entry's prices per million tokens; None without prices.

    Cached input tokens are billed at the cached price where one is published.
    """
    if entry.self_hosted or entry.price_input is None or entry.price_output is None:
        return None
    cached = min(usage.cached_tokens, usage.input_tokens)
    cached_price = entry.price_cached_input if entry.price_cached_input is not None else entry.price_input
    fresh = usage.input_tokens - cached
    # Reasoning tokens are billed as output and already counted in output_tokens by the APIs.
    return (fresh * entry.price_input + cached * cached_price + usage.output_tokens * entry.price_output) / 1e6


def gpu_hourly(entry: Priced) -> float:
    """The entry's $/hour of the hardware serving it (`hourly_usd`, or its older name
    `gpu_hourly_usd`), else the default."""
    hourly: float | None = getattr(entry, "hourly_usd", None)
    if hourly is None:
        hourly = entry.gpu_hourly_usd
    return DEFAULT_GPU_HOURLY_USD if hourly is None else hourly


def hardware_label(entry: Priced) -> str:
    """What the entry's $/hour buys, as the cost basis names it ("GPU" unless `hardware` says)."""
    label: str | None = getattr(entry, "hardware", None)
    return label or "GPU"


def self_hosted_cost_per_request(gpu_hourly_usd: float | None, requests_per_s: float | None) -> float | None:
    """GPU $/hour divided by sustained requests/hour."""
    if not requests_per_s:
        return None
    hourly = DEFAULT_GPU_HOURLY_USD if gpu_hourly_usd is None else gpu_hourly_usd
    return hourly / (requests_per_s * 3600)


def sustained_rate(intervals: list[tuple[float, float]]) -> float | None:
    """Requests per second over the span from the first start to the last finish."""
    if len(intervals) < 2:
        return None
    span = max(end for _, end in intervals) - min(start for start, _ in intervals)
    return len(intervals) / span if span > 0 else None


def measured_rate(records: Iterable[Timed]) -> float | None:
    """The sustained rate of these answers: not cached, not errors (a cached answer took no time)."""
    intervals = [
        (r.finished_at - r.latency_s, r.finished_at)
        for r in records
        if r.finished_at and r.latency_s and not r.cached and r.outcome in ("pass", "miss")
    ]
    return sustained_rate(intervals)


def self_hosted_cost(
    entry: Priced,
    measured: float | None,
    bench: BenchRate | ServingMeasurement | None = None,
    concurrency: int | None = None,
) -> Cost:
    """$/hour over the rate: a serving measurement (a saturation search, --distill-serving, a
    saved --distill-bench rate) wins over the rate this run's evaluation happened to reach."""
    hourly = gpu_hourly(entry)
    label = hardware_label(entry)
    if isinstance(bench, ServingMeasurement):
        rate: float | None = bench.requests_per_s
        basis = f"${hourly:.2f}/h {label} / {bench.describe()}"
    elif bench is not None:
        rate = bench.requests_per_s
        basis = f"${hourly:.2f}/h {label} / {bench.requests_per_s:.2f} req/s (--distill-bench, c={bench.concurrency})"
    else:
        rate = measured
        at = f" at c={concurrency}" if concurrency else ""
        basis = f"${hourly:.2f}/h {label} / {measured:.2f} req/s measured in this run{at}" if measured else "-"
    per_request = self_hosted_cost_per_request(hourly, rate)
    return Cost(per_request, basis if per_request is not None else "-")


def summary_costs(
    summaries: Iterable[_SummaryLike],
    records: Iterable[Timed],
    entries: Mapping[str, Priced],
    bench_rates: Mapping[str, BenchRate | ServingMeasurement] | None = None,
    concurrency: Mapping[str, int] | None = None,
) -> dict[tuple[str, str], Cost]:
    """The cost of every suite x model of a run."""
    bench_rates = bench_rates or {}
    concurrency = concurrency or {}
    by_key: dict[tuple[str, str], list[Timed]] = {}
    for r in records:
        by_key.setdefault((r.suite, r.model), []).append(r)
    costs = {}
    for s in summaries:
        entry = entries.get(s.model)
        key = (s.suite, s.model)
        if entry is not None and entry.self_hosted:
            costs[key] = self_hosted_cost(
                entry, measured_rate(by_key.get(key, [])), bench_rates.get(s.model), concurrency.get(s.model)
            )
        else:
            costs[key] = Cost(s.cost_per_request, "API price" if s.cost_per_request is not None else "-")
    return costs


class _SummaryLike(Protocol):
    suite: str
    model: str
    cost_per_request: float | None


def bench_cost_per_million(entry: Priced, requests_per_s: float | None) -> float | None:
    """--distill-bench's $/1M requests for a self-hosted entry (None for API models)."""
    if not entry.self_hosted:
        return None
    per_request = self_hosted_cost_per_request(gpu_hourly(entry), requests_per_s)
    return None if per_request is None else per_request * 1e6


def tie_key(entry: Priced | None, name: str) -> tuple[int, float, str]:
    """How models with equal pass rates are ordered, whatever the timing: API models by their
    listed price per token (input + output), then self-hosted ones by their GPU $/hour, then
    models without a price; within each, the lower price first, then the name."""
    if entry is None:
        return (2, math.inf, name)
    if entry.self_hosted:
        return (1, gpu_hourly(entry), name)
    if entry.price_input is None or entry.price_output is None:
        return (2, math.inf, name)
    return (0, entry.price_input + entry.price_output, name)


def cost_notes(entries: Iterable[Priced], cached_answers: int) -> list[str]:
    """How the summary's cost and rate figures were measured."""
    entries = list(entries)
    notes = []
    if any(e.self_hosted for e in entries):
        notes.append(
            "self-hosted cost = GPU $/hour (gpu_hourly_usd, default "
            f"${DEFAULT_GPU_HOURLY_USD:.2f}) / (requests/s x 3600); requests/s = answers (not cached, "
            "not errors) / seconds from the first request's start to the last answer, in this run"
        )
    if any(not e.self_hosted for e in entries):
        notes.append(
            "API cost per request = uncached input tokens x input price + cached input tokens x "
            "cached price + output tokens (incl. reasoning) x output price, at the models file's dated prices"
        )
    if cached_answers:
        notes.append(f"{cached_answers} answer(s) came from the response cache: left out of latency and throughput")
    return notes


# --- cost at volume -------------------------------------------------------------------

HOURS_PER_MONTH = 730  # 365 x 24 / 12
DAYS_PER_MONTH = HOURS_PER_MONTH / 24
DEFAULT_TRAFFIC = (10_000, 100_000, 1_000_000, 10_000_000)  # requests per day
# Peak request rate / mean request rate. 1 = flat traffic: the day's requests spread evenly,
# which is what a batch or queue-fed workload gets; interactive traffic peaks at 2-4x its
# mean and needs that much more serving capacity (--distill-peak-factor).
DEFAULT_PEAK_FACTOR = 1.0


@dataclass(frozen=True)
class VolumeModel:
    """What a model costs per month as a function of requests per day."""

    model: str
    self_hosted: bool
    per_request: float | None = None  # API: measured tokens/request x the listed prices
    hourly_usd: float | None = None  # self-hosted: one server's $/hour
    requests_per_s: float | None = None  # self-hosted: one server's sustained rate
    hardware: str = "GPU"
    rate_basis: str = ""  # where the rate came from (ServingMeasurement.describe(), or this run)
    on_cpu: bool = False  # the rate was measured on a CPU

    def servers(self, requests_per_day: float, peak_factor: float = DEFAULT_PEAK_FACTOR) -> int | None:
        """Servers needed to carry the peak: ceil(peak requests/s / sustained requests/s), at least 1."""
        if not self.self_hosted or not self.requests_per_s:
            return None
        peak = requests_per_day / 86400 * peak_factor
        return max(1, math.ceil(peak / self.requests_per_s - 1e-9))

    def monthly(self, requests_per_day: float, peak_factor: float = DEFAULT_PEAK_FACTOR) -> float | None:
        """USD per month at this traffic: API per request x requests; self-hosted servers x $/h x 730 h."""
        if self.self_hosted:
            servers = self.servers(requests_per_day, peak_factor)
            return None if servers is None or self.hourly_usd is None else servers * self.hourly_usd * HOURS_PER_MONTH
        return None if self.per_request is None else self.per_request * requests_per_day * DAYS_PER_MONTH


@dataclass(frozen=True)
class BreakEven:
    """Where a self-hosted model becomes cheaper than an API model (requests per day)."""

    self_hosted: str
    api: str
    first: float | None  # the lowest volume at which self-hosting costs less (None: never)
    always: float | None  # from this volume on it always costs less (None: never)

    def text(self) -> str:
        if self.first is None:
            return f"{self.api} is cheaper than {self.self_hosted} at every volume"
        always = (
            ""
            if self.always is None or self.always <= self.first
            else (
                f"; always from {self.always:,.0f}/day (below that, just after each added server, {self.api} "
                "can be cheaper)"
            )
        )
        return f"{self.self_hosted} is cheaper than {self.api} from {self.first:,.0f} requests/day{always}"


def break_even(hosted: VolumeModel, api: VolumeModel, peak_factor: float = DEFAULT_PEAK_FACTOR) -> BreakEven | None:
    """Self-hosted costs n x C per month (n servers, C = $/h x 730) for up to n x V requests/day
    (V = one server's capacity, rate x 86400 / peak factor); the API costs a x requests.
    Self-hosting is first cheaper at C / a when one server can carry that (a x V >= C), else
    never; it is cheaper at every volume above C / (a - C / V), where even a partly used last
    server no longer tips the balance. None when either side has no figure."""
    if not hosted.requests_per_s or hosted.hourly_usd is None or not api.per_request:
        return None
    monthly_server = hosted.hourly_usd * HOURS_PER_MONTH
    capacity = hosted.requests_per_s * 86400 / peak_factor  # requests/day one server carries
    per_request = api.per_request * DAYS_PER_MONTH  # monthly $ per (request/day)
    if per_request * capacity < monthly_server:
        return BreakEven(hosted.model, api.model, None, None)
    first = monthly_server / per_request
    margin = per_request - monthly_server / capacity
    always = monthly_server / margin if margin > 0 else None
    return BreakEven(hosted.model, api.model, first, always)


def volume_models(
    records: Iterable[_Costed], entries: Mapping[str, Priced], serving: Mapping[str, ServingMeasurement]
) -> list[VolumeModel]:
    """Every model of a run, as the volume table needs it: an API model's mean measured cost
    per request over all its answers; a self-hosted model's serving measurement when there
    is one, else the rate its answers reached in this run."""
    by_model: dict[str, list[_Costed]] = {}
    for r in records:
        by_model.setdefault(r.model, []).append(r)
    models = []
    for name in sorted(entries):
        entry = entries[name]
        answers = by_model.get(name, [])
        if entry.self_hosted:
            measurement = serving.get(name)
            if measurement is not None and measurement.requests_per_s:
                rate: float | None = measurement.requests_per_s
                basis, on_cpu = measurement.describe(), measurement.device == "CPU"
            else:
                rate = measured_rate(answers)
                basis, on_cpu = (f"{rate:.2f} req/s measured in this run" if rate else ""), False
            models.append(
                VolumeModel(
                    name,
                    True,
                    hourly_usd=gpu_hourly(entry),
                    requests_per_s=rate,
                    hardware=hardware_label(entry),
                    rate_basis=basis,
                    on_cpu=on_cpu,
                )
            )
        else:
            costs = [r.cost_usd for r in answers if r.cost_usd is not None and r.outcome in ("pass", "miss")]
            models.append(VolumeModel(name, False, per_request=sum(costs) / len(costs) if costs else None))
    return models


class _Costed(Timed, Protocol):
    cost_usd: float | None


def parse_traffic(text: str) -> float:
    """'100000/day', '1e6/day', '5000/hour', '20/s' or a bare number (per day) -> requests per day."""
    value, _, unit = text.strip().replace(",", "").replace("_", "").partition("/")
    per_day = {
        "": 1,
        "day": 1,
        "d": 1,
        "hour": 24,
        "h": 24,
        "min": 1440,
        "minute": 1440,
        "s": 86400,
        "sec": 86400,
        "second": 86400,
    }
    unit = unit.strip().lower()
    if unit not in per_day:
        raise ValueError(f"unknown unit '/{unit}' (use /day, /hour, /min or /s)")
    try:
        number = float(value)
    except ValueError:
        raise ValueError(f"not a number: '{value}'") from None
    if not number > 0 or math.isinf(number):
        raise ValueError(f"traffic must be a positive number, got '{value}'")
    return number * per_day[unit]


@dataclass(frozen=True)
class VolumeReport:
    """Monthly cost of every model at each traffic level, and the break-even volumes."""

    traffic: tuple[float, ...]  # requests per day
    peak_factor: float
    models: tuple[VolumeModel, ...]
    break_evens: tuple[BreakEven, ...]

    def monthly(self, model: VolumeModel) -> list[float | None]:
        return [model.monthly(level, self.peak_factor) for level in self.traffic]

    def to_dict(self) -> dict[str, object]:
        return {
            "traffic_per_day": list(self.traffic),
            "peak_factor": self.peak_factor,
            "hours_per_month": HOURS_PER_MONTH,
            "models": [
                {
                    **asdict(m),
                    "monthly_usd": self.monthly(m),
                    "servers": [m.servers(level, self.peak_factor) for level in self.traffic],
                }
                for m in self.models
            ],
            "break_even": [{**asdict(b), "text": b.text()} for b in self.break_evens],
        }


def volume_report(
    models: Iterable[VolumeModel], traffic: Iterable[float], peak_factor: float = DEFAULT_PEAK_FACTOR
) -> VolumeReport:
    models = tuple(models)
    pairs = [break_even(h, a, peak_factor) for h in models if h.self_hosted for a in models if not a.self_hosted]
    return VolumeReport(tuple(sorted(traffic)), peak_factor, models, tuple(p for p in pairs if p is not None))
