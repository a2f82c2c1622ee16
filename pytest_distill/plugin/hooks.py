"""pytest hooks: each one routes to the DistillSession (session.py)."""

from __future__ import annotations

import atexit
import gc
import os

import pytest

from pytest_distill.plugin import api
from pytest_distill.bench import load as bench
from pytest_distill.plugin.collect import SESSION_KEY
from pytest_distill.core.errors import DistillError
from pytest_distill.plugin.session import DistillSession


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("distill", "pytest-distill: evaluate language models on suite folders")
    group.addoption("--model", action="append", dest="distill_models", metavar="NAME",
                    help="model to evaluate (repeatable; each model runs every example). "
                         "Default: smollm2-135m, the embedded model.")
    group.addoption("--limit", type=int, dest="distill_limit", metavar="N",
                    help="evaluate only the first N examples of each suite")
    group.addoption("--repeat", type=int, default=1, dest="distill_repeat", metavar="N",
                    help="run every example N times as separate items (ids carry -rK)")
    group.addoption("--distill-models", dest="distill_models_file", metavar="FILE",
                    help="project models file (default: models.toml at the rootdir)")
    group.addoption("--judge", dest="distill_judge", metavar="NAME",
                    help="model that grades free-text answers (scorer 'judge'); default: the suite's "
                         "distill.toml judge, else smollm2-135m (offline)")
    group.addoption("--distill-unconstrained", action="store_true", dest="distill_unconstrained",
                    help="don't constrain classification output to the label set")
    group.addoption("--min-pass-rate", type=float, dest="distill_min_pass_rate", metavar="RATE",
                    help="gate every suite x model on this pass rate (0..1), overriding distill.toml")
    group.addoption("--max-regression", type=float, dest="distill_max_regression", metavar="PP",
                    help="with --distill-baseline: fail a suite x model whose pass rate dropped more than PP "
                         "percentage points, overriding distill.toml [gate] max_regression")
    group.addoption("--distill-baseline", dest="distill_baseline", metavar="FILE",
                    help="compare the run with a results.json from an earlier --distill-report")
    group.addoption("--distill-report", dest="distill_report", metavar="DIR",
                    help="write results.json, report.html and summary.md into DIR")
    group.addoption("--route-tolerance", type=float, default=1.0, dest="distill_route_tolerance", metavar="PP",
                    help="routing advice: the cheapest model within PP percentage points of the best (default 1)")
    group.addoption("--distill-cache", dest="distill_cache", metavar="DIR",
                    help="response cache directory (sqlite); answers are reused by request key")
    group.addoption("--distill-cache-mode", dest="distill_cache_mode", metavar="MODE",
                    choices=["off", "readwrite", "read", "write", "replay"],
                    help="off | readwrite (default with a DIR) | read (no stores) | write (refresh) | "
                         "replay (a miss is an error: offline CI)")
    bench.add_options(group)
    parser.addini("distill_models_file", "project models file (default: models.toml at the rootdir)")
    parser.addini("distill_cache", "response cache directory (as --distill-cache)")
    parser.addini("distill_cache_mode", "response cache mode (as --distill-cache-mode)")


_FREEZE_AT_EXIT: list = []


def pytest_configure(config: pytest.Config) -> None:
    # llama.cpp's OpenMP threads spin while waiting; two processes sharing cores then
    # starve each other. Must be set before the library loads (it is imported lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    # A run leaves ~10 objects per item; the interpreter's final garbage collection over
    # them took seconds at 10,000 items. Frozen objects are skipped by it. atexit: an
    # in-process (pytester) run must not freeze its host's objects.
    if not _FREEZE_AT_EXIT:
        _FREEZE_AT_EXIT.append(atexit.register(gc.freeze))
    config.addinivalue_line("markers", "distill: an example evaluated by pytest-distill")
    config.addinivalue_line("markers", "distill_examples(suite, limit=None): set by @examples (pytest_distill.plugin.api)")
    session = DistillSession(config)
    try:
        bench.check_options(config)
        session.configure()
    except DistillError as exc:
        raise pytest.UsageError(f"pytest-distill: {exc}") from None
    config.stash[SESSION_KEY] = session
    if not session.is_worker:  # the controller (or a serial run) alone aggregates
        config.pluginmanager.register(_ReportRoute(session), "distill-report-route")


def pytest_collect_file(file_path, parent):
    return parent.config.stash[SESSION_KEY].collect_file(file_path, parent)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    distill = session.config.stash[SESSION_KEY]
    # Serial runs queue every request up front; xdist workers get items one batch at a
    # time and get their concurrency from the workers themselves.
    if not distill.is_worker and not session.config.getoption("collectonly"):
        if not _xdist_controller(session.config) and not session.config.getoption("distill_bench"):
            distill.prefetch(session.items)


@pytest.fixture
def distill_predictions(request: pytest.FixtureRequest):
    """distill_predictions(suite_dir, model=None, limit=None) -> {example id: prediction}, for
    syrupy snapshots: `assert distill_predictions("suites/banking77") == snapshot`."""
    from pytest_distill.plugin.predictions import fixture_for

    return fixture_for(request.config.stash[SESSION_KEY])


# --- @examples tests (api.py) ---------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    api.generate_tests(metafunc, metafunc.config.stash[SESSION_KEY])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    distill = item.config.stash[SESSION_KEY]
    if distill.is_worker:  # serial runs prefetched everything at collection finish
        distill.prefetch_window(item, nextitem)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        result = yield
    except BaseException as exc:
        api.record_call(item, item.config.stash[SESSION_KEY], exc)
        raise
    api.record_call(item, item.config.stash[SESSION_KEY], None)
    return result


@pytest.fixture(name=api.CASE_FIXTURE)
def _distill_case(request: pytest.FixtureRequest) -> api.Case:
    return api.case_fixture(request)


@pytest.fixture
def example(distill_case: api.Case):
    """The suite example of an @examples test."""
    return distill_case.example


@pytest.fixture
def model(request: pytest.FixtureRequest, distill_case: api.Case) -> api.ModelHandle:
    """The --model of an @examples test: model.respond(example) -> Completion."""
    return api.model_fixture(request, distill_case)


class _ReportRoute:
    """pytest_runtest_logreport gets no config: this per-run object carries the session."""

    def __init__(self, distill: DistillSession) -> None:
        self.distill = distill

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        self.distill.add_report(report)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    distill = session.config.stash.get(SESSION_KEY, None)
    if distill is None:
        return
    distill.close()
    if not distill.is_worker:
        distill.finish(session)


# --- managed model servers (vLLM): started once, by the controller ------------------


@pytest.hookimpl(tryfirst=True)  # before xdist's DSession starts the workers
def pytest_sessionstart(session: pytest.Session) -> None:
    distill = session.config.stash.get(SESSION_KEY, None)
    if distill is None:
        return
    try:
        distill.start_servers()
    except DistillError as exc:
        raise pytest.UsageError(f"pytest-distill: {exc}") from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: hand the controller's server URLs to each worker."""
    distill = node.config.stash.get(SESSION_KEY, None)
    if distill is not None:
        node.workerinput.update(distill.worker_input())


def pytest_unconfigure(config: pytest.Config) -> None:
    distill = config.stash.get(SESSION_KEY, None)
    if distill is not None:  # a session that failed or was interrupted before its finish
        distill.servers.stop()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    distill = config.stash.get(SESSION_KEY, None)
    if distill is not None and not distill.is_worker:
        distill.terminal_summary(terminalreporter)
        bench.terminal_summary(distill, terminalreporter)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session):
    """--distill-bench: replay the collected items' requests under load instead of running them."""
    if not session.config.getoption("distill_bench") or session.config.getoption("collectonly"):
        return None
    distill = session.config.stash[SESSION_KEY]
    distill.bench_results = bench.run_for_session(distill, session.items)
    return True


def _xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")
