"""The run's model plan: which models each suite runs, and how many times.

A suite's models: `--model` when given (it replaces every plan for the run), else `models`
from the distill.toml files that apply to the suite (its own, and those in the folders above
it up to the rootdir: the nearest wins), else the embedded default. `@group` names expand
through models.toml `[groups]`. Repetitions per model: `--repeat` when given, else the
entry's `repeat`, else 1.

The plan is derived from the options and files only, never from what a process collected,
so the controller and every xdist worker compute the same plan (docs/models.md).
"""

from __future__ import annotations

import fnmatch
import os
from dataclasses import dataclass, field
from pathlib import Path

from pytest_distill.core.errors import ConfigError, DistillError
from pytest_distill.models.registry import Registry
from pytest_distill.plugin.options import DEFAULT_MODEL, RunOptions
from pytest_distill.suite import is_suite_dir
from pytest_distill.suite.loader import SETTINGS_FILE, read_settings
from pytest_distill.suite.validate import find_line


@dataclass
class RunPlan:
    registry: Registry
    options: RunOptions
    _models: dict[Path, tuple[str, ...]] = field(default_factory=dict)  # suite folder -> its models
    _names: dict[Path, str] = field(default_factory=dict)  # suite folder -> as shown

    def models_for(self, folder: Path) -> tuple[str, ...]:
        """The suite's models, groups expanded; raises ConfigError naming the file and field."""
        key = Path(folder).resolve()
        if key not in self._models:
            self._models[key] = self._plan(Path(folder))
            self._names[key] = Path(folder).name
        return self._models[key]

    def _plan(self, folder: Path) -> tuple[str, ...]:
        if self.options.cli_models:
            return self.registry.expand(self.options.cli_models)
        settings = read_settings(folder / SETTINGS_FILE, self.options.rootdir)
        if settings.models is None:
            return (DEFAULT_MODEL,)
        file = settings.file_of("models", folder / SETTINGS_FILE)
        line = find_line(file, ["models"])
        return self.registry.expand(settings.models, f"{file}{f':{line}' if line else ''}: field 'models': ")

    def repeat_for(self, model: str) -> int:
        """Repetitions of every example on `model`: --repeat, else the entry's `repeat`, else 1."""
        if self.options.forced_repeat is not None:
            return self.options.forced_repeat
        return self.registry.get(model).runs_per_example

    @property
    def models(self) -> tuple[str, ...]:
        """Every model planned so far, in plan order."""
        return tuple(dict.fromkeys(m for models in self._models.values() for m in models))

    def discover(self, args: list[str], norecurse: list[str]) -> None:
        """Plan every suite folder under the command line's paths. A suite whose distill.toml
        can't be read is left to collection, which reports it with its file and line."""
        for folder in find_suites(args, self.options.invocation_dir, norecurse):
            try:
                self.models_for(folder)
            except ConfigError:
                raise
            except DistillError:
                continue

    def summary_lines(self) -> list[str]:
        """One line per planned suite: its models and repetitions."""
        lines = []
        for key in sorted(self._models, key=lambda k: (self._names[k], str(k))):
            runs = ", ".join(f"{m} x{self.repeat_for(m)}" for m in self._models[key])
            lines.append(f"distill plan: {self._names[key]}: {runs}")
        return lines


_ALWAYS_SKIPPED = ("node_modules", "__pycache__", "site-packages")


def find_suites(args: list[str], invocation_dir: Path, norecurse: list[str]) -> list[Path]:
    """Suite folders named by, or below, the command line's paths (pytest's `norecursedirs`
    and hidden folders are not entered), sorted."""
    found: dict[Path, None] = {}
    for arg in args:
        path = Path(arg.split("::", 1)[0])
        path = path if path.is_absolute() else invocation_dir / path
        if path.is_file():
            if is_suite_dir(path.parent):
                found[path.parent] = None
            continue
        if not path.is_dir():
            continue
        for dirpath, dirnames, _ in os.walk(path):
            here = Path(dirpath)
            if is_suite_dir(here):
                found[here] = None
                dirnames[:] = []
                continue
            dirnames[:] = sorted(d for d in dirnames if not _skipped(here / d, norecurse))
    return sorted(found)


def _skipped(folder: Path, norecurse: list[str]) -> bool:
    name = folder.name
    return (
        name.startswith(".")
        or name in _ALWAYS_SKIPPED
        or (folder / "pyvenv.cfg").is_file()
        or any(fnmatch.fnmatch(name, pattern) for pattern in norecurse)
    )
