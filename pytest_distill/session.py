"""The plugin's state for one pytest run. plugin.py routes hooks here.

Items ask `answer()` in setup and `score()` in the call phase; every outcome becomes a
Record attached to the item's user_properties. Reports carry them to the controller
(in-process when serial, through xdist otherwise), which alone aggregates and prints,
so the numbers are the same with and without -n.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from . import scoring
from .collect import ExampleItem, Miss, ProviderFailure, SuiteFile
from .cost import api_cost, self_hosted_cost_per_request, sustained_rate
from .engine import Engine
from .errors import ConfigError, DistillError
from .gates import Gate, GateResult, check_gate
from .models.base import ProviderError
from .models.registry import ModelEntry, Registry, create_provider
from .report.terminal import format_table, money, summary_rows
from .results import ERROR, MISS, PASS, SKIP, Record, Summary, summarize
from .suite import SuiteSettings, build_request, is_suite_dir
from .suite.loader import JOB_FILE, SETTINGS_FILE, TEST_FILES, find_test_file, read_settings

DEFAULT_MODEL = "smollm2-135m"


class DistillSession:
    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.is_worker = hasattr(config, "workerinput")
        self.limit: int | None = config.getoption("distill_limit")
        self.repeat: int = config.getoption("distill_repeat")
        self.constrain: bool = not config.getoption("distill_unconstrained")
        self.min_pass_rate: float | None = config.getoption("distill_min_pass_rate")
        self.model_names: list[str] = config.getoption("distill_models") or [DEFAULT_MODEL]
        self.registry: Registry | None = None
        self.entries: dict[str, ModelEntry] = {}
        self.records: list[Record] = []
        self.gate_results: list[GateResult] = []
        self._engine: Engine | None = None
        self._settings_cache: dict[str, SuiteSettings] = {}

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
        self.registry = Registry(self._models_file())
        workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
        for name in dict.fromkeys(self.model_names):
            entry = self.registry.get(name)
            if entry.provider == "llama-cpp" and entry.n_threads is None:
                # Workers share the cores; more threads than cores makes them starve each other.
                entry.n_threads = max(1, (os.cpu_count() or 1) // workers)
            create_provider(entry).check()
            self.entries[name] = entry
        self.model_names = list(self.entries)

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            self._engine = Engine()
        return self._engine

    def close(self) -> None:
        if self._engine is not None:
            self._engine.close()

    # --- collection ----------------------------------------------------
    def collect_file(self, file_path: Path, parent: pytest.Collector):
        folder = file_path.parent
        if not is_suite_dir(folder):
            return None
        try:
            test_file = find_test_file(folder)
        except DistillError:
            test_file = None  # both formats present: report it once, from job_description.json
            return SuiteFile.from_parent(parent, path=file_path) if file_path.name == JOB_FILE else None
        if file_path.name in TEST_FILES and file_path == test_file:
            return SuiteFile.from_parent(parent, path=file_path)
        if file_path.name == JOB_FILE and test_file is None:
            return SuiteFile.from_parent(parent, path=file_path)
        return None

    def request_for(self, item: ExampleItem):
        entry = self.entries[item.model]
        return build_request(item.example, constrain=self.constrain, temperature=entry.temperature,
                             max_tokens=None, seed=entry.seed)

    def prefetch(self, items: list[pytest.Item]) -> None:
        """Queue every item's request now: the engine runs them at each model's concurrency
        while pytest walks the items in order."""
        for item in items:
            if isinstance(item, ExampleItem) and scoring.scorer_name_for(item.example) in scoring.SCORERS:
                self.engine.submit(self.entries[item.model], self.request_for(item), item.repetition)

    # --- running -------------------------------------------------------
    def _record(self, item: ExampleItem, outcome: str, **values: Any) -> Record:
        suite = item.example.suite
        record = Record(suite=suite.name, suite_path=_relative(suite.path, self.config.rootpath),
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
            return self.engine.complete(entry, self.request_for(item), item.repetition)
        except ProviderError as exc:
            self._record(item, ERROR, error=str(exc), scorer=name)
            raise ProviderFailure(f"error: {exc}") from None

    def score(self, item: ExampleItem) -> None:
        completion = item.completion
        entry = self.entries[item.model]
        name = scoring.scorer_name_for(item.example)
        result = scoring.get_scorer(name)(item.example, completion)
        usage = completion.usage
        self._record(
            item, PASS if result.passed else MISS,
            score=result.value, latency_s=completion.latency_s, input_tokens=usage.input_tokens,
            output_tokens=usage.output_tokens, cached_tokens=usage.cached_tokens,
            reasoning_tokens=usage.reasoning_tokens, cost_usd=api_cost(entry, usage),
            finished_at=completion.finished_at or time.time(), cached=completion.cached,
            constrained=completion.constrained, finish_reason=completion.finish_reason,
            output=completion.text if not completion.tool_calls else _show([c.to_dict() for c in completion.tool_calls]),
            explanation=result.explanation, scorer=name,
        )
        if not result.passed:
            raise Miss(f"miss: {result.explanation}")

    # --- the controller's side ------------------------------------------
    def add_report(self, report: pytest.TestReport) -> None:
        if report.when != "teardown":
            return
        record = Record.from_properties(report.user_properties)
        if record is not None:
            self.records.append(record)

    def summaries(self) -> list[Summary]:
        return summarize(self.records)

    def gate_for(self, suite_path: str) -> Gate:
        settings = self._settings(suite_path)
        min_rate = self.min_pass_rate if self.min_pass_rate is not None else settings.min_pass_rate
        return Gate(min_pass_rate=min_rate, max_error_rate=settings.max_error_rate)

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
        columns: dict[tuple[str, str], dict[str, str]] = {}
        for s in summaries:
            entry = self.entries.get(s.model)
            per_request = s.cost_per_request
            basis = "API price"
            if entry is not None and entry.self_hosted:
                intervals = [(r.finished_at - r.latency_s, r.finished_at) for r in self.records
                             if r.suite == s.suite and r.model == s.model and r.finished_at and r.latency_s
                             and not r.cached and r.outcome in (PASS, MISS)]
                rate = sustained_rate(intervals)
                per_request = self_hosted_cost_per_request(entry.gpu_hourly_usd, rate)
                basis = f"GPU $/h / {rate:.2f} req/s in this run" if rate else "-"
            columns[(s.suite, s.model)] = {
                "$/req": money(per_request),
                "$/1M req": money(per_request * 1e6 if per_request is not None else None),
                "cost basis": basis,
            }
        return columns

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
        skipped = sum(s.skipped for s in summaries)
        if skipped:
            terminalreporter.write_line(f"{skipped} item(s) skipped: no scorer yet for their task type")

    def finish(self, session: pytest.Session) -> None:
        """Apply gates: with a gate, misses inside a passing gate don't fail the run."""
        summaries = self.summaries()
        self.gate_results = []
        gated_ok: set[tuple[str, str]] = set()
        failed_gate = False
        for s in summaries:
            gate = self.gate_for(s.suite_path)
            if not gate.active:
                continue
            result = check_gate(s, gate)
            self.gate_results.append(result)
            if result.passed:
                gated_ok.add((s.suite, s.model))
            else:
                failed_gate = True
        if not self.gate_results:
            return  # no gate: plain pytest behaviour, any miss fails
        excused = sum(1 for r in self.records
                      if r.outcome in (MISS, ERROR) and (r.suite, r.model) in gated_ok)
        other_failures = session.testsfailed - excused
        if failed_gate:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED
        elif other_failures <= 0 and session.exitstatus == pytest.ExitCode.TESTS_FAILED:
            session.exitstatus = pytest.ExitCode.OK


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path.resolve())


def _show(value: Any) -> str:
    if isinstance(value, str):
        return value
    import json

    return json.dumps(value, ensure_ascii=False, sort_keys=True)
