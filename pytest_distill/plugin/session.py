"""The plugin's state for one pytest run. plugin.py routes hooks here.

Items ask `answer()` in setup and `score()` in the call phase; every outcome becomes a
Record attached to the item's user_properties. Reports carry them to the controller
(in-process when serial, through xdist otherwise), which alone aggregates and prints,
so the numbers are the same with and without -n.
"""

from __future__ import annotations

import functools
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from pytest_distill.plugin import api
from pytest_distill import scoring
from pytest_distill.core.baseline import BaselineDelta, baseline_records, compare_to_baseline, format_delta, load_baseline
from pytest_distill.runtime.cache import SqliteCache, open_cache
from pytest_distill.plugin.collect import ExampleItem, Miss, ProviderFailure, SuiteFile
from pytest_distill.core.compare import SuiteComparison, compare, format_comparison
from pytest_distill.core.cost import api_cost, gpu_hourly, self_hosted_cost_per_request, sustained_rate
from pytest_distill.runtime.engine import Engine
from pytest_distill.core.errors import ConfigError, DistillError
from pytest_distill.core.gates import Gate, GateResult, check_gate, exit_status
from pytest_distill.models.base import ProviderError
from pytest_distill.models.registry import DEFAULT_GPU_HOURLY_USD, ModelEntry, Registry
from pytest_distill.report.generation import generation_lines
from pytest_distill.report.terminal import format_table, money, summary_rows
from pytest_distill.scoring.base import ScoringError
from pytest_distill.scoring.judge import Judge
from pytest_distill.core.records import ERROR, MISS, PASS, SKIP, Record, Summary, summarize
from pytest_distill.bench.load import saved_rate as saved_bench_rate
from pytest_distill.runtime.servers import ServerPool, from_worker_input, worker_input
from pytest_distill.suite import SuiteSettings, build_request, is_suite_dir
from pytest_distill.suite.loader import JOB_FILE, SETTINGS_FILE, TEST_FILES, find_test_file, read_settings

DEFAULT_MODEL = "smollm2-135m"
DEFAULT_JUDGE = "smollm2-135m"  # offline default; --judge or distill.toml `judge` for a real one


class DistillSession:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.limit: int | None = config.getoption("distill_limit")
        self.repeat: int = config.getoption("distill_repeat")
        self.constrain: bool = not config.getoption("distill_unconstrained")
        self.min_pass_rate: float | None = config.getoption("distill_min_pass_rate")
        self.max_regression: float | None = config.getoption("distill_max_regression")
        self.route_tolerance: float = config.getoption("distill_route_tolerance")
        self.report_dir: str | None = config.getoption("distill_report")
        self.baseline_path: str | None = config.getoption("distill_baseline")
        self.baseline: dict[str, Any] | None = None  # the results.json document compared against
        self.baseline_deltas: list[BaselineDelta] = []
        self.comparisons: list[SuiteComparison] = []
        self.report_paths: list[Path] = []
        self.report_problem: str | None = None
        self.started_at = time.time()
        self.model_names: list[str] = config.getoption("distill_models") or [DEFAULT_MODEL]
        self.registry: Registry | None = None
        self.entries: dict[str, ModelEntry] = {}
        self.records: list[Record] = []
        self.gate_results: list[GateResult] = []
        self.bench_results: list = []  # --distill-bench (bench.py)
        self._engine: Engine | None = None
        self.cache: SqliteCache | None = None
        self.servers = ServerPool()  # managed model servers (vLLM), controller side
        self._settings_cache: dict[str, SuiteSettings] = {}
        self.judge_name: str | None = config.getoption("distill_judge", None)
        self._judge_entries: dict[str, ModelEntry] = {}
        self._judged: dict[str, Any] = {}  # nodeid -> the judge's Score, made in setup

    # --- start-up ------------------------------------------------------
    def _models_file(self) -> Path | None:
        option = self.config.getoption("distill_models_file") or self.config.getini("distill_models_file")
        if option:
            path = Path(option)
            return path if path.is_absolute() else self.config.rootpath / path
        default = self.config.rootpath / "models.toml"
        return default if default.is_file() else None

    def configure(self) -> None:
        """Resolve every --model now, so a typo or missing key stops the run in one line."""
        if self.repeat < 1:
            raise ConfigError(f"--repeat must be at least 1, got {self.repeat}")
        if self.limit is not None and self.limit < 1:
            raise ConfigError(f"--limit must be at least 1, got {self.limit}")
        if self.min_pass_rate is not None and not 0 <= self.min_pass_rate <= 1:
            raise ConfigError(f"--min-pass-rate must be between 0 and 1, got {self.min_pass_rate:g}")
        if self.max_regression is not None and self.max_regression < 0:
            raise ConfigError(f"--max-regression is in percentage points, at least 0; got {self.max_regression:g}")
        if self.route_tolerance < 0:
            raise ConfigError(f"--route-tolerance is in percentage points, at least 0; got {self.route_tolerance:g}")
        if self.baseline_path and not self.is_worker:  # read now: a bad file stops the run before any request
            self.baseline = load_baseline(self.config.invocation_params.dir / self.baseline_path)
        self.registry = Registry(self._models_file())
        self.cache = open_cache(
            self.config.getoption("distill_cache") or self.config.getini("distill_cache") or None,
            self.config.getoption("distill_cache_mode") or self.config.getini("distill_cache_mode") or None,
            self.config.rootpath,
        )
        if self.is_worker:  # servers the controller started (pytest_configure_node)
            self.servers = from_worker_input(self.config.workerinput.get("distill_servers"))
        for name in dict.fromkeys(self.model_names):
            self.entries[name] = self._resolve_entry(name)
        self.model_names = list(self.entries)
        if self.judge_name:  # resolve now: a typo stops the run before any request
            self.judge_entry(self.judge_name)

    def _resolve_entry(self, name: str) -> ModelEntry:
        """A registry entry made ready for this process: threads and in-flight share under
        xdist, and its key checked (a typo or missing key stops the run in one line)."""
        entry = self.registry.get(name)
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        provider = self.servers.provider_for(entry)
        if entry.provider == "llama-cpp" and entry.n_threads is None:
            # Workers share the cores; more threads than cores makes them starve each other.
            entry.n_threads = max(1, (os.cpu_count() or 1) // workers)
        if self.cache is None or not self.cache.replay_only:  # replay never calls the API: no key needed
            provider.check()
        if self.is_worker and workers > 1:
            # The in-flight limit is the model's, not each worker's: share it out.
            limit = entry.max_concurrency or provider.max_concurrency
            entry.max_concurrency = max(1, -(-limit // workers))
        return entry

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine(cache=self.cache, servers=self.servers)
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()
        if self.cache is not None:
            self.cache.close()
        self.servers.stop()

    def start_servers(self) -> None:
        """Start the servers managed models need (vLLM): once, in the controller or a serial run."""
        if self.is_worker or self.config.getoption("collectonly"):
            return
        if self.cache is not None and self.cache.replay_only:
            return  # replay never calls the model
        # --judge was resolved in configure(): a managed judge gets its server too.
        entries = [e for e in (*self.entries.values(), *self._judge_entries.values()) if self.servers.needs_server(e)]
        if not entries:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")

        def progress(line: str) -> None:
            if reporter is not None:
                reporter.write_line(line)

        cache = getattr(self.config, "cache", None)
        log_dir = cache.mkdir("pytest-distill") if cache is not None else Path(tempfile.mkdtemp(prefix="pytest-distill-"))
        self.servers.start(entries, log_dir, progress)

    def worker_input(self) -> dict[str, Any]:
        """What xdist workers need from the controller: the managed servers' URLs and logs."""
        return {"distill_servers": worker_input(self.servers)}

    # --- collection ----------------------------------------------------
    def collect_file(self, file_path: Path, parent: pytest.Collector):
        folder = file_path.parent
        if not is_suite_dir(folder):
            return None
        try:
            test_file = find_test_file(folder)
        except DistillError:  # both formats present: report it once, from job_description.json
            return SuiteFile.from_parent(parent, path=file_path) if file_path.name == JOB_FILE else None
        if file_path.name in TEST_FILES and file_path == test_file:
            return SuiteFile.from_parent(parent, path=file_path)
        if file_path.name == JOB_FILE and test_file is None:
            return SuiteFile.from_parent(parent, path=file_path)
        return None

    def request_for(self, item: ExampleItem):
        # Built once per item: prefetch and answer() pass the same object, whose cache key
        # the engine then computes once.
        request = getattr(item, "_distill_request", None)
        if request is None:
            entry = self.entries[item.model]
            request = build_request(item.example, constrain=self.constrain, temperature=entry.temperature,
                                    max_tokens=entry.max_tokens, seed=entry.seed)
            item._distill_request = request
        return request

    def prefetch(self, items: list[pytest.Item]) -> None:
        """Queue every item's request now: the engine runs them at each model's concurrency
        while pytest walks the items in order."""
        for item in items:
            if isinstance(item, ExampleItem) and scoring.scorer_name_for(item.example) in scoring.SCORERS:
                self.engine.submit(self.entries[item.model], self.request_for(item), item.repetition)
            elif (case := api.case_of(item)) is not None and "model" in item.fixturenames:
                self.engine.submit(self.entries[case.model], self.request_for(case), case.repetition)  # @examples tests

    def prefetch_window(self, item: pytest.Item, nextitem: pytest.Item | None = None) -> None:
        """xdist workers: queue the requests of this item and of the next ones this worker
        was given (a window as wide as the in-flight limit), so a worker keeps the server
        as busy as a serial run does. Items the controller takes back are only wasted
        requests: records come from reports alone."""
        queue = _xdist_worker_queue(self.config)
        if queue is None or not self.entries:  # not an xdist worker
            return
        window = max(e.max_concurrency or 1 for e in self.entries.values())
        with queue.lock() as pending:
            upcoming = [i for i in list(pending)[:window] if isinstance(i, int)]
        items = item.session.items
        self.prefetch([item] + ([nextitem] if nextitem is not None else []) + [items[i] for i in upcoming if i < len(items)])

    # --- running -------------------------------------------------------
    def _record(self, item: ExampleItem, outcome: str, **values: Any) -> Record:
        suite = item.example.suite
        # @examples tests carry their own label, so they don't merge with the folder suite's row.
        record = Record(suite=getattr(item, "suite_label", suite.name), suite_path=_relative(suite.path, self.config.rootpath),
                        model=item.model, example_id=item.example.id,
                        repetition=item.repetition, outcome=outcome, nodeid=item.nodeid,
                        expected=_show(item.example.answer), **values)
        item.user_properties.extend(record.to_properties())
        return record

    def answer(self, item: ExampleItem):
        name = scoring.scorer_name_for(item.example)
        if name is None or name not in scoring.SCORERS:
            task = item.example.suite.task_type.value
            reason = f"no scorer yet for task type '{task}'" + (f" (scorer '{name}')" if name else "")
            self._record(item, SKIP, explanation=reason)
            pytest.skip(reason)
        entry = self.entries[item.model]
        try:
            completion = self.engine.complete(entry, self.request_for(item), item.repetition)
        except ProviderError as exc:
            self._record(item, ERROR, error=str(exc), scorer=name)
            raise ProviderFailure(f"error: {exc}") from None
        if scoring.needs_judge(name):
            # The judge is a second model call: made in setup as well, so that its failure is
            # a pytest error like the model's own, never a miss.
            self._judged[item.nodeid] = self._score_or_error(item, completion, name)
        return completion

    def score(self, item: ExampleItem) -> None:
        completion = item.completion
        name = scoring.scorer_name_for(item.example)
        result = self._judged.pop(item.nodeid, None) or self._score_or_error(item, completion, name)
        extra = {**_jsonable(result.details), **self._also(item, completion, name)}
        self.record_answer(item, completion, result, name, extra=extra)
        if not result.passed:
            raise Miss(f"miss: {result.explanation}")

    # --- judge and generation scorers ------------------------------------
    def judge_entry(self, name: str) -> ModelEntry:
        """The judge's entry: an evaluated model's own entry when it is one (one provider, one load)."""
        entry = self.entries.get(name) or self._judge_entries.get(name)
        if entry is None:
            entry = self._judge_entries[name] = self._resolve_entry(name)
        return entry

    def judge_for(self, item: ExampleItem) -> Judge:
        """--judge, else the suite's distill.toml judge, else the embedded model. Its requests go
        through the engine: same cache, retries and rate limits as the evaluated models."""
        name = self.judge_name or item.example.suite.settings.judge or DEFAULT_JUDGE
        entry = self.judge_entry(name)
        return Judge(lambda request: self.engine.complete(entry, request), name=name,
                     cost=lambda usage: api_cost(entry, usage))

    def _score_or_error(self, item: ExampleItem, completion, name: str):
        """Score, or record an error and raise ProviderFailure when the answer can't be scored
        (no readable judge verdict, a reference query that fails): never a pass or a miss."""
        try:
            kwargs = {"judge": self.judge_for(item)} if scoring.needs_judge(name) else {}
            return scoring.get_scorer(name)(item.example, completion, **kwargs)
        except (ScoringError, DistillError) as exc:
            self.record_answer(item, completion, None, name, error=str(exc))
            raise ProviderFailure(f"error: {exc}") from None

    def _also(self, item: ExampleItem, completion, primary: str) -> dict[str, Any]:
        """distill.toml `also` scorers: recorded into Record.extra["also"], never gating."""
        results: dict[str, Any] = {}
        for name in item.example.suite.settings.also:
            if name == primary:
                continue
            try:
                kwargs = {"judge": self.judge_for(item)} if scoring.needs_judge(name) else {}
                score = scoring.get_scorer(name)(item.example, completion, **kwargs)
            except (ScoringError, DistillError) as exc:
                results[name] = {"error": str(exc)}
                continue
            results[name] = {"value": round(score.value, 4), "passed": score.passed, **_jsonable(score.details)}
        return {"also": results} if results else {}

    def record_answer(self, item, completion, result, scorer: str, *, extra: dict[str, Any] | None = None,
                      error: str = "") -> None:
        """The Record of a scored answer (also used by @examples tests, see api.py); with
        `error` (and no result) an answer that could not be scored."""
        entry = self.entries[item.model]
        usage = completion.usage
        self._record(
            item, ERROR if error else PASS if result.passed else MISS, error=error, extra=extra or {},
            score=result.value if result else None, latency_s=completion.latency_s, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens, cost_usd=api_cost(entry, usage),
            finished_at=completion.finished_at or time.time(), cached=completion.cached,
            constrained=completion.constrained, finish_reason=completion.finish_reason,
            output=completion.text if not completion.tool_calls else _show([c.to_dict() for c in completion.tool_calls]),
            explanation=result.explanation if result else error, scorer=scorer,
        )

    # --- the controller's side ------------------------------------------
    def add_report(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        record = Record.from_properties(report.user_properties)
        if record is not None:
            self.records.append(record)

    def summaries(self) -> list[Summary]:
        return summarize(self.records)

    def gate_for(self, suite_path: str, baseline: bool = False) -> Gate:
        """The suite's gate; `baseline`: the baseline has this suite x model, so a regression limit applies."""
        settings = self._settings(suite_path)
        min_rate = self.min_pass_rate if self.min_pass_rate is not None else settings.min_pass_rate
        max_regression = None
        if baseline:
            max_regression = self.max_regression if self.max_regression is not None else settings.max_regression
        return Gate(min_pass_rate=min_rate, max_error_rate=settings.max_error_rate, max_regression=max_regression)

    def _settings(self, suite_path: str) -> SuiteSettings:
        # Read again from disk: under xdist the controller never loaded the suites.
        if suite_path not in self._settings_cache:
            path = Path(suite_path)
            folder = path if path.is_absolute() else self.config.rootpath / path
            try:
                self._settings_cache[suite_path] = read_settings(folder / SETTINGS_FILE)
            except DistillError:
                self._settings_cache[suite_path] = SuiteSettings()  # reported at collection
        return self._settings_cache[suite_path]

    def cost_columns(self, summaries: list[Summary]) -> dict[tuple[str, str], dict[str, str]]:
        return {key: {"$/req": money(per_request),
                      "$/1M req": money(per_request * 1e6 if per_request is not None else None),
                      "cost basis": basis}
                for key, (per_request, basis) in self.costs(summaries).items()}

    def costs(self, summaries: list[Summary]) -> dict[tuple[str, str], tuple[float | None, str]]:
        """Cost per request and its basis: API price x tokens, or GPU $/hour over the measured rate."""
        costs: dict[tuple[str, str], tuple[float | None, str]] = {}
        for s in summaries:
            entry = self.entries.get(s.model)
            per_request = s.cost_per_request
            basis = "API price"
            if entry is not None and entry.self_hosted:
                intervals = [(r.finished_at - r.latency_s, r.finished_at) for r in self.records
                             if r.suite == s.suite and r.model == s.model and r.finished_at and r.latency_s
                             and not r.cached and r.outcome in (PASS, MISS)]
                rate = sustained_rate(intervals)
                hourly = gpu_hourly(entry)
                basis = f"${hourly:.2f}/h GPU / {rate:.2f} req/s measured" if rate else "-"
                bench_run = saved_bench_rate(self.config, entry)  # a --distill-bench rate, when there is one
                if bench_run is not None:
                    rate = bench_run["requests_per_s"]
                    basis = f"${hourly:.2f}/h GPU / {rate:.2f} req/s (--distill-bench, c={bench_run['concurrency']})"
                per_request = self_hosted_cost_per_request(entry.gpu_hourly_usd, rate)
            costs[(s.suite, s.model)] = (per_request, basis if per_request is not None else "-")
        return costs

    def terminal_summary(self, terminalreporter) -> None:
        summaries = self.summaries()
        if not summaries:
            return
        terminalreporter.write_sep("=", "pytest-distill")
        extra = self.cost_columns(summaries)
        if self.gate_results:
            for gate in self.gate_results:
                extra.setdefault((gate.suite, gate.model), {})["gate"] = "PASS" if gate.passed else "FAIL"
        for line in format_table(summary_rows(summaries, extra)):
            terminalreporter.write_line(line)
        for gate in self.gate_results:
            verdict = "passed" if gate.passed else "FAILED"
            terminalreporter.write_line(f"gate {verdict}: {gate.suite} x {gate.model}: {gate.reason}")
        for comparison in self.comparisons:
            for line in format_comparison(comparison):
                terminalreporter.write_line(line)
        for delta in self.baseline_deltas:
            terminalreporter.write_line(format_delta(delta))
        for path in self.report_paths:
            terminalreporter.write_line(f"distill report: {path}")
        if self.report_problem:
            terminalreporter.write_line(f"distill report not written: {self.report_problem}", red=True)
        skipped = sum(s.skipped for s in summaries)
        if skipped:
            terminalreporter.write_line(f"{skipped} item(s) skipped: no scorer yet for their task type")
        for line in generation_lines(self.records):
            terminalreporter.write_line(line)
        for line in self.cost_notes():
            terminalreporter.write_line(line)

    def cost_notes(self) -> list[str]:
        """How the summary's cost and rate figures were measured."""
        notes = []
        if any(e.self_hosted for e in self.entries.values()):
            notes.append("self-hosted cost = GPU $/hour (gpu_hourly_usd, default "
                         f"${DEFAULT_GPU_HOURLY_USD:.2f}) / (requests/s x 3600); requests/s = answers (not cached, "
                         "not errors) / seconds from the first request's start to the last answer, in this run")
        if any(not e.self_hosted for e in self.entries.values()):
            notes.append("API cost per request = uncached input tokens x input price + cached input tokens x "
                         "cached price + output tokens (incl. reasoning) x output price, at the models file's dated prices")
        cached = sum(r.cached for r in self.records)
        if cached:
            notes.append(f"{cached} answer(s) came from the response cache: left out of latency and throughput")
        return notes

    def finish(self, session: pytest.Session) -> None:
        """Apply gates (with a gate, misses inside a passing gate don't fail the run), compare the
        models and the baseline, and write the reports."""
        from pytest_distill.report.json_report import append_step_summary, from_session, write_reports
        from pytest_distill.report.junit import add_gate_testcases

        summaries = self.summaries()
        costs = self.costs(summaries)
        if self.baseline is not None:
            self.baseline_deltas = compare_to_baseline(self.records, baseline_records(self.baseline))
        regressions = {(d.suite, d.model): d.regression_pp for d in self.baseline_deltas if d.regression_pp is not None}
        self.gate_results = []
        for s in summaries:
            key = (s.suite, s.model)
            gate = self.gate_for(s.suite_path, baseline=key in regressions)
            if gate.active and s.n > 0:  # all skipped (no scorer yet): nothing to gate on
                self.gate_results.append(check_gate(s, gate, regressions.get(key)))
        gated_ok = {(g.suite, g.model) for g in self.gate_results if g.passed}
        excused = sum(1 for r in self.records if r.outcome in (MISS, ERROR) and (r.suite, r.model) in gated_ok)
        status = exit_status(int(session.exitstatus), self.gate_results, session.testsfailed, excused,
                             stopped_early=bool(session.shouldfail or session.shouldstop))
        if status != session.exitstatus:
            session.exitstatus = pytest.ExitCode(status)
        add_gate_testcases(self.config, self.gate_results)  # before junitxml writes its file
        self.comparisons = compare(summaries, self.records, {k: v[0] for k, v in costs.items()}, self.route_tolerance)
        if summaries and (self.report_dir or os.environ.get("GITHUB_STEP_SUMMARY")):
            document = from_session(self, session, summaries, costs)
            try:
                if self.report_dir:
                    self.report_paths = write_reports(self.config.invocation_params.dir / self.report_dir, document)
                append_step_summary(document)
            except OSError as exc:
                self.report_problem = f"{exc.filename or self.report_dir}: {exc.strerror}"


def _xdist_worker_queue(config: pytest.Config):
    """The worker's queue of item indices still to run (xdist's WorkerInteractor.torun)."""
    for plugin in config.pluginmanager.get_plugins():
        if type(plugin).__name__ == "WorkerInteractor":
            queue = getattr(plugin, "torun", None)
            return queue if hasattr(queue, "lock") else None
    return None


@functools.lru_cache(maxsize=1024)  # once per suite folder, not per record: resolve() stats every part
def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _jsonable(value: Any) -> Any:
    """Scorer details as plain JSON data: records travel through xdist and into reports."""
    import json

    return json.loads(json.dumps(value, default=str))


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)
