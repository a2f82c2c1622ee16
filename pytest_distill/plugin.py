"""pytest hooks: each one routes to the DistillSession (session.py)."""

from __future__ import annotations

import os

import pytest

from .collect import SESSION_KEY
from .errors import DistillError
from .session import DistillSession


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
    group.addoption("--distill-unconstrained", action="store_true", dest="distill_unconstrained",
                    help="don't constrain classification output to the label set")
    group.addoption("--min-pass-rate", type=float, dest="distill_min_pass_rate", metavar="RATE",
                    help="gate every suite x model on this pass rate (0..1), overriding distill.toml")
    parser.addini("distill_models_file", "project models file (default: models.toml at the rootdir)")


def pytest_configure(config: pytest.Config) -> None:
    # llama.cpp's OpenMP threads spin while waiting; two processes sharing cores then
    # starve each other. Must be set before the library loads (it is imported lazily).
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    config.addinivalue_line("markers", "distill: an example evaluated by pytest-distill")
    session = DistillSession(config)
    try:
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
        if not _xdist_controller(session.config):
            distill.prefetch(session.items)


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


def pytest_terminal_summary(terminalreporter, config: pytest.Config) -> None:
    distill = config.stash.get(SESSION_KEY, None)
    if distill is not None and not distill.is_worker:
        distill.terminal_summary(terminalreporter)


def _xdist_controller(config: pytest.Config) -> bool:
    return config.pluginmanager.hasplugin("dsession")
