"""The package's own import graph, computed from the source: no cycle, and imports point down.

Every `import` and `from ... import` of a pytest_distill module counts, wherever it is: at
the top, inside a function (a lazy import is still a dependency) and under TYPE_CHECKING;
so does a "pytest_distill.module:name" string that is imported by name later.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import pytest_distill

PACKAGE = "pytest_distill"
SOURCE = Path(pytest_distill.__file__).resolve().parent
# A module named in a string ("pytest_distill.models.providers.vllm:VLLMProvider") for
# importlib: a dependency like any other, only later.
DYNAMIC = re.compile(rf"{PACKAGE}(\.\w+)+(:\w+)?")


def _modules(source: Path = SOURCE) -> dict[str, Path]:
    """Module name -> file, for every module of the package at `source`."""
    modules = {}
    for path in sorted(source.rglob("*.py")):
        parts = path.relative_to(source.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def _imported(name: str, path: Path, known: set[str]) -> Iterator[str]:
    """The package modules that module `name` imports (relative imports resolved)."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # from . import x / from ..a import b
                anchor = name.split(".") if is_package else name.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import sub` imports the module pkg.sub; `from mod import func` imports mod.
            targets = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and DYNAMIC.fullmatch(node.value):
            targets = [node.value.partition(":")[0]]  # "pkg.module:attr", imported later by name
        else:
            continue
        for target in targets:
            if target == PACKAGE or target.startswith(PACKAGE + "."):
                # `import a.b.c` also runs a and a.b; the edge that matters is to the deepest known module.
                while target not in known and "." in target:
                    target = target.rpartition(".")[0]
                if target in known and target != name:
                    yield target


def import_graph(source: Path = SOURCE) -> dict[str, set[str]]:
    """Module -> the package modules it imports."""
    modules = _modules(source)
    known = set(modules)
    return {name: set(_imported(name, path, known)) for name, path in modules.items()}


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (no recursion limit): the components, each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work: list[tuple[str, Iterator[str]]] = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for succ in successors:
                if succ not in index:
                    index[succ] = low[succ] = counter
                    counter += 1
                    stack.append(succ)
                    on_stack.add(succ)
                    work.append((succ, iter(sorted(graph.get(succ, ())))))
                    break
                if succ in on_stack:
                    low[node] = min(low[node], index[succ])
            else:
                work.pop()
                if work:
                    parent = work[-1][0]
                    low[parent] = min(low[parent], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    components.append(sorted(component))
    return components


def _cycle_in(component: list[str], graph: dict[str, set[str]]) -> list[str]:
    """One concrete cycle through the component's first module, for the message."""
    members = set(component)
    start = component[0]
    path, seen = [start], {start}
    parents: dict[str, str] = {}
    frontier = [start]
    while frontier:  # breadth first: the shortest way back to start
        following = []
        for node in frontier:
            for succ in sorted(graph[node] & members):
                if succ == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(parents[path[-1]])
                    return [*reversed(path), start]
                if succ not in seen:
                    seen.add(succ)
                    parents[succ] = node
                    following.append(succ)
        frontier = following
    return path


# --- the checks -------------------------------------------------------------------


def test_the_graph_covers_the_package():
    graph = import_graph()
    assert len(graph) > 20 and all(name.startswith(PACKAGE) for name in graph)
    # the entry point imports the plugin's own modules
    assert any(target.startswith(f"{PACKAGE}.plugin.") for target in graph[f"{PACKAGE}.plugin.hooks"])


def test_strongly_connected_finds_cycles_and_only_cycles():
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a", "d"}, "d": {"e"}, "e": {"d"}, "f": set(), "g": {"f"}}
    components = sorted(c for c in strongly_connected(graph) if len(c) > 1)
    assert components == [["a", "b", "c"], ["d", "e"]]
    assert _cycle_in(["a", "b", "c"], graph) == ["a", "b", "c", "a"]
    # a long chain: no recursion limit
    chain = {str(i): {str(i + 1)} for i in range(5000)} | {"5000": {"0"}}
    assert [len(c) for c in strongly_connected(chain)] == [5001]


def test_imports_are_resolved_wherever_they_are(tmp_path):
    package = tmp_path / PACKAGE
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "top.py").write_text("")
    (package / "other.py").write_text("")
    (package / "sub" / "__init__.py").write_text("from . import leaf\n")
    (package / "sub" / "leaf.py").write_text(
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from ..top import thing\n"
        "def f():\n    import pytest_distill.other\n"
        'LATER = {"x": "pytest_distill.late:Thing"}\n'
    )
    (package / "late.py").write_text("")
    graph = import_graph(package)
    assert graph[f"{PACKAGE}.sub"] == {f"{PACKAGE}.sub.leaf"}
    assert graph[f"{PACKAGE}.sub.leaf"] == {f"{PACKAGE}.top", f"{PACKAGE}.other", f"{PACKAGE}.late"}


def test_no_import_cycle():
    graph = import_graph()
    cycles = [c for c in strongly_connected(graph) if len(c) > 1]
    message = "\n".join(f"cycle among {', '.join(c)}\n  e.g. {' -> '.join(_cycle_in(c, graph))}" for c in cycles)
    assert not cycles, f"import cycles in {PACKAGE}:\n{message}"


# Layer -> the layers it must never import (core/, which imports no other layer, is checked below).
FORBIDDEN = {
    "scoring": ("plugin", "runtime", "report", "bench"),
    "suite": ("plugin", "runtime", "report", "bench"),
    "models": ("suite", "scoring", "plugin", "report"),
}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_imports_point_down(layer):
    graph = import_graph()
    upward = sorted(
        f"{module} imports {target}"
        for module, targets in graph.items()
        if _layer(module) == layer
        for target in targets
        if _layer(target) in FORBIDDEN[layer]
    )
    assert not upward, f"{layer}/ imports a layer above it:\n" + "\n".join(upward)


def test_core_imports_no_pytest_and_nothing_else_of_ours():
    offending = []
    for name, path in _modules().items():
        if _layer(name) != "core":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                roots = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [node.module or ""]
            else:
                continue
            offending += [
                f"{name}: import {root}" for root in roots if root.split(".")[0] in ("pytest", "_pytest", "xdist")
            ]
    graph = import_graph()
    offending += [
        f"{name}: import {target}"
        for name, targets in graph.items()
        if _layer(name) == "core"
        for target in targets
        if _layer(target) != "core"
    ]
    assert not offending, "core/ must stay pure:\n" + "\n".join(offending)


# "No god object": a class that acts (not a declared record) sets at most ~12 attributes, and
# the run's state keeps to twelve fields by grouping what grows (plugin/state.py).
MAX_ATTRIBUTES = 12
MAX_ATTRIBUTES_SLACK = 3  # the "~": a server process handle or a cache connection may need a few more


def _is_record(node: ast.ClassDef) -> bool:
    """A @dataclass, NamedTuple or TypedDict: declared data, read and written whole."""
    decorators = {ast.unparse(d).split("(")[0] for d in node.decorator_list}
    bases = {ast.unparse(b) for b in node.bases}
    return bool(decorators & {"dataclass", "dataclasses.dataclass"} or bases & {"NamedTuple", "TypedDict"})


def _attributes(node: ast.ClassDef) -> set[str]:
    names = {n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)}
    for sub in ast.walk(node):
        stored = isinstance(sub, ast.Attribute) and isinstance(sub.ctx, ast.Store)
        if stored and isinstance(sub.value, ast.Name) and sub.value.id == "self":
            names.add(sub.attr)
    return names


def test_no_class_that_acts_sets_more_than_about_twelve_attributes():
    too_big = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ClassDef) and not _is_record(node):
                count = len(_attributes(node))
                if count > MAX_ATTRIBUTES + MAX_ATTRIBUTES_SLACK:
                    too_big.append(f"{name}.{node.name}: {count} attributes")
    assert not too_big, "split these:\n" + "\n".join(too_big)


def test_the_run_state_keeps_to_twelve_fields():
    from dataclasses import fields

    from pytest_distill.plugin.state import RunState

    assert len(fields(RunState)) <= MAX_ATTRIBUTES
