"""pytest hooks (the pytest11 entry point): each one routes to the module that does the work.

options.py (options), lifecycle.py (start/close), collect.py (suite folders), api.py
(@examples), evaluate.py (answer, score, record), xdist.py (workers), finish.py
(records -> RunResult), output.py (terminal, report files, bench).
"""

from __future__ import annotations

import atexit
import gc
import os

import pytest

from pytest_distill.core.errors import DistillError
from pytest_distill.plugin import api, assertrepr, calls, collect, finish, lifecycle, misses, output, phases, xdist
from pytest_distill.plugin.options import add_options
from pytest_distill.plugin.predictions import fixture_for
from pytest_distill.plugin.state import SESSION_KEY, RunState


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser)


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
    config.addinivalue_line(
        "markers", "distill_examples(suite, limit=None): set by @examples (pytest_distill.plugin.api)"
    )
    try:
        state = lifecycle.open_run(config)
    except DistillError as exc:
        raise pytest.UsageError(f"pytest-distill: {exc}") from None
    config.stash[SESSION_KEY] = state
    phases.join(state)  # a worker follows the controller's turns of managed servers
    if not state.is_worker:  # the controller (or a serial run) alone aggregates
        config.pluginmanager.register(_ReportRoute(state), "distill-report-route")


def pytest_report_header(config: pytest.Config) -> list[str]:
    """The model plan of the suites on the command line: one line per suite."""
    state = config.stash.get(SESSION_KEY, None)
    return state.models.plan.summary_lines() if state is not None and state.models.plan is not None else []


def pytest_collect_file(file_path, parent):
    return collect.collect_file(file_path, parent)


@pytest.hookimpl(trylast=True)  # after deselection and reordering by other plugins
def pytest_collection_modifyitems(session: pytest.Session, config: pytest.Config, items: list[pytest.Item]) -> None:
    """Managed servers taking turns: each turn's items contiguous (plugin/phases.py)."""
    state = config.stash.get(SESSION_KEY, None)
    if state is not None:
        phases.order_items(state, items)


@pytest.hookimpl(trylast=True)
def pytest_collection_finish(session: pytest.Session) -> None:
    state = session.config.stash[SESSION_KEY]
    # Serial runs queue every request up front; xdist workers get items one batch at a
    # time and prefetch a window of them (pytest_runtest_protocol).
    if state.is_worker or state.options.collect_only or xdist.is_controller(session.config) or state.options.bench:
        return
    phases.collected(state, session.items)  # managed servers taking turns: the first one starts
    state.evaluator.prefetch(phases.in_turn(state, api.targets(session.items)))


@pytest.fixture
def distill_predictions(request: pytest.FixtureRequest):
    """distill_predictions(suite_dir, model=None, limit=None) -> {example id: prediction}, for
    syrupy snapshots: `assert distill_predictions("suites/banking77") == snapshot`."""
    return fixture_for(request.config.stash[SESSION_KEY])


# --- @examples tests (api.py) ---------------------------------------------------


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    api.generate_tests(metafunc, metafunc.config.stash[SESSION_KEY])


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    state = item.config.stash[SESSION_KEY]
    phases.before_item(state, item)  # a managed server's turn: wait until it is up
    if state.is_worker:  # serial runs prefetched everything at collection finish (or the turn's start)
        window = max((e.max_concurrency or 1 for e in state.models.entries.values()), default=1)
        state.evaluator.prefetch(phases.in_turn(state, api.targets(xdist.upcoming(item, nextitem, window))))


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item):
    try:
        with calls.running(item):  # assert_judged finds the run through the running item
            result = yield
    except BaseException as exc:
        api.record_call(item, item.config.stash[SESSION_KEY], exc)
        raise
    api.record_call(item, item.config.stash[SESSION_KEY], None)
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    report = yield
    calls.mark_error(report, call)
    misses.mark(item, report, call)
    return report


def pytest_report_teststatus(report: pytest.TestReport, config: pytest.Config):
    return calls.teststatus(report)


def pytest_assertrepr_compare(config: pytest.Config, op: str, left, right):
    return assertrepr.compare(op, left, right)


@pytest.fixture(name=api.CASE_FIXTURE)
def _distill_case(request: pytest.FixtureRequest) -> api.Case:
    return api.case_fixture(request)


@pytest.fixture
def distill_example(distill_case: api.Case):
    """The suite example of an @examples test."""
    return distill_case.example


@pytest.fixture
def distill_model(request: pytest.FixtureRequest):
    """In an @examples test, its --model: distill_model.respond(example) -> Completion. In a
    plain test, a factory: distill_model("gpt-5-nano").respond("prompt") -> Completion."""
    return api.model_fixture(request)


@pytest.fixture
def distill_model_name(request: pytest.FixtureRequest) -> str:
    """A plain test that takes this fixture runs once per --model, with the model's name."""
    name = getattr(request, "param", None)
    if not isinstance(name, str):  # @examples tests have their model in distill_model
        pytest.fail("distill_model_name parametrises plain tests, not @examples tests", pytrace=False)
    return name


class _ReportRoute:
    """pytest_runtest_logreport gets no config: this per-run object carries the state."""

    def __init__(self, state: RunState) -> None:
        self.state = state

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        finish.add_report(self.state, report)
        phases.reported(self.state, report)  # a turn ends after its model's last item

    @pytest.hookimpl(wrapper=True, tryfirst=True)  # around the terminal reporter's own summary
    def pytest_terminal_summary(self, terminalreporter):
        with misses.folded(self.state, terminalreporter):
            return (yield)


@pytest.hookimpl(tryfirst=True)
def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    phases.end(state)  # workers still waiting for a turn give up
    lifecycle.close(state)
    if not state.is_worker:
        state.result = finish.finish(state, session)
        output.publish(state)


# --- managed model servers (vLLM): started once, by the controller ------------------


@pytest.hookimpl(tryfirst=True)  # before xdist's DSession starts the workers
def pytest_sessionstart(session: pytest.Session) -> None:
    state = session.config.stash.get(SESSION_KEY, None)
    if state is None:
        return
    try:
        phases.begin(state)  # two or more managed models: their servers take turns
        lifecycle.start_servers(state)
    except DistillError as exc:
        raise pytest.UsageError(f"pytest-distill: {exc}") from None


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node) -> None:
    """xdist: hand the controller's server URLs to each worker."""
    state = node.config.stash.get(SESSION_KEY, None)
    if state is not None:
        node.workerinput.update(xdist.worker_input(state.servers))
        node.workerinput.update(phases.worker_input(state))


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node, ids) -> None:
    """xdist controller: the workers' collection tells how many items each managed server's turn has."""
    state = node.config.stash.get(SESSION_KEY, None)
    if state is not None:
        phases.collected_on_worker(state, node, ids)


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node, error) -> None:
    """xdist: a worker finished; its requests per replica join the controller's."""
    state = node.config.stash.get(SESSION_KEY, None)
    if state is not None:
        xdist.worker_finished(state, node)


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is not None:  # a session that failed or was interrupted before its finish
        phases.cleanup(state)
        state.servers.stop()


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    state = config.stash.get(SESSION_KEY, None)
    if state is not None and not state.is_worker:
        output.terminal_summary(state, terminalreporter)


@pytest.hookimpl(tryfirst=True)
def pytest_runtestloop(session: pytest.Session):
    """--distill-bench: replay the collected items' requests under load instead of running them."""
    state = session.config.stash[SESSION_KEY]
    if state.options.bench is None or state.options.collect_only:
        return None
    output.run_bench(state, session.items)
    return True
