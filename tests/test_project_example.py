"""The repository's own conftest.py and models.toml: a working example of a project's models,
groups and plans, that changes nothing for the project's own tests."""

from __future__ import annotations

import ast
import shutil
from pathlib import Path

from pytest_distill.models.registry import BUILTIN_MODELS, Registry, _load_file

from helpers.chat_server import FakeChatServer
from helpers.suites import TOPIC_ROWS, write_suite

ROOT = Path(__file__).resolve().parent.parent


def test_the_example_models_file_is_valid_and_adds_without_overriding():
    registry = Registry(ROOT / "models.toml")
    project, groups = _load_file(ROOT / "models.toml")
    builtin, builtin_groups = _load_file(BUILTIN_MODELS)
    # New names only: no built-in entry or group behaves differently in this repository.
    assert project and not set(project) & set(builtin)
    assert groups and not set(groups) & set(builtin_groups)
    for group in groups:
        assert registry.expand([f"@{group}"])  # every member is a known model
    for name in project:
        registry.get(name)


def test_the_root_conftest_defines_no_fixtures():
    tree = ast.parse((ROOT / "conftest.py").read_text())
    decorators = [
        ast.unparse(d) for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) for d in node.decorator_list
    ]
    assert not any("fixture" in d for d in decorators)
    assert [n.name for n in tree.body if isinstance(n, ast.FunctionDef)] == ["pytest_report_header"]


def test_the_example_plan_runs_as_documented(pytester, monkeypatch):
    """The example models.toml in a project: a plan naming its group and its own entry, and
    that entry's server found through its base_url_env."""
    shutil.copy(ROOT / "models.toml", pytester.path / "models.toml")
    rows = [{"question": q, "answer": a} for q, a in TOPIC_ROWS[:2]]
    write_suite(
        pytester.path / "suites" / "topics", rows=rows, settings='models = ["smollm2-135m-llama-server", "@offline"]\n'
    )
    collected = pytester.runpytest("suites", "--collect-only")
    assert "distill plan: topics: smollm2-135m-llama-server x1, smollm2-135m x1" in collected.stdout.str()
    ids = [line.strip() for line in collected.outlines if "<ExampleItem" in line]
    assert ids == [
        "<ExampleItem topics[smollm2-135m-llama-server-0001]>",
        "<ExampleItem topics[smollm2-135m-llama-server-0002]>",
        "<ExampleItem topics[smollm2-135m-0001]>",
        "<ExampleItem topics[smollm2-135m-0002]>",
    ]
    with FakeChatServer(rows) as server:
        server.listed_models = ["correct"]
        monkeypatch.setenv("SMOLLM2_SERVER_URL", server.url)
        result = pytester.runpytest("suites", "--model=smollm2-135m-llama-server")
    result.assert_outcomes(passed=2)
    assert {b["model"] for b in server.bodies} == {"correct"}
