"""This repository as a pytest-distill project.

A project declares its models in `models.toml` at the rootdir (entries and `[groups]`),
and what each suite runs in `distill.toml` files (a suite's own, or one in a folder above
several suites: the nearest file wins per key). See docs/models.md.

This conftest only says, in the session header, which models file the run uses. It defines
no fixtures: the project's own tests (tests/, run in pytester's temporary folders) must see
exactly what a user's project sees.
"""

from __future__ import annotations

import pytest


def pytest_report_header(config: pytest.Config) -> list[str]:
    models = config.rootpath / "models.toml"
    return [f"project models: {models} (docs/models.md)"] if models.is_file() else []
