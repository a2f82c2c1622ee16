"""Each suite's gate, from the options and the suite's distill.toml."""

from __future__ import annotations

from pathlib import Path

from pytest_distill.core.errors import DistillError
from pytest_distill.core.gates import Gate
from pytest_distill.plugin.options import RunOptions
from pytest_distill.suite import SuiteSettings
from pytest_distill.suite.loader import SETTINGS_FILE, read_settings


class SuiteGates:
    """Each suite's gate: the options override the suite's distill.toml, read again from disk
    (under xdist the controller never loaded the suites)."""

    def __init__(self, options: RunOptions) -> None:
        self.options = options
        self._settings: dict[str, SuiteSettings] = {}

    def settings(self, suite_path: str) -> SuiteSettings:
        if suite_path not in self._settings:
            path = Path(suite_path)
            folder = path if path.is_absolute() else self.options.rootdir / path
            try:
                self._settings[suite_path] = read_settings(folder / SETTINGS_FILE, self.options.rootdir)
            except DistillError:
                self._settings[suite_path] = SuiteSettings()  # reported at collection
        return self._settings[suite_path]

    def gate_for(self, suite_path: str, baseline: bool) -> Gate:
        """`baseline`: the baseline has this suite x model, so a regression limit applies."""
        settings = self.settings(suite_path)
        options = self.options
        min_rate = options.min_pass_rate if options.min_pass_rate is not None else settings.min_pass_rate
        max_regression = None
        if baseline:
            max_regression = options.max_regression if options.max_regression is not None else settings.max_regression
        return Gate(min_pass_rate=min_rate, max_error_rate=settings.max_error_rate, max_regression=max_regression)
