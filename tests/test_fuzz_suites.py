"""Generated bad suite folders (hypothesis): whatever is broken - a file missing, a wrong
encoding, broken JSON/CSV/TOML/YAML, a wrong type in any settings field, a bad tool
schema - the run ends with one error naming the file: never an INTERNALERROR, never a
traceback, never exit 0. Runs in-process (pytester), derandomized so CI is reproducible;
a few of the same folders also run under -n 2 and must end with the same exit status."""

from __future__ import annotations

import itertools
import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from helpers.chat_server import FakeChatServer

JOB = "job_description.json"
TOOLS = [
    {
        "type": "function",
        "function": {
            "name": "toggle_lights",
            "parameters": {"type": "object", "properties": {"room": {"type": "string"}}, "required": ["room"]},
        },
    }
]
BASES: dict[str, dict[str, Any]] = {
    "classification": {
        JOB: {"task_description": "Classify the topic.", "classes_description": {"sports": "Games.", "food": "Meals."}},
        "config.yaml": "base:\n  task: classification\n",
        "rows": [
            {"question": "The striker scored twice.", "answer": "sports"},
            {"question": "Whisk the eggs.", "answer": "food"},
        ],
    },
    "tool-calling": {
        JOB: {"task_description": "Call the function.", "tools": TOOLS},
        "config.yaml": "base:\n  task: tool-calling-closed-book\n",
        "rows": [
            {
                "question": "Kitchen lights on",
                "answer": json.dumps({"name": "toggle_lights", "parameters": {"room": "kitchen"}}),
            }
        ],
    },
}

# Wrong values for every distill.toml field: a wrong type, or out of range / not a known name.
WRONG_SETTINGS = {
    "scorer": ['"nonexistent_scorer"', "3", "true", '["exact_match"]'],
    "also": ['"token_f1"', '["no_such_scorer"]', "[1, 2]", '["token_f1", "token_f1"]'],
    "judge": ['""', "7", "[]"],
    "constrain": ['"no"', "0", '"false"'],
    "max_tokens": ['"lots"', "0", "-5", "1.5", "true"],
    "prompt": [
        '"text"',
        "3",
        "{ system = 3 }",
        '{ user_template = "Q: {question} {nosuchcol}" }',
        '{ user_template = "{" }',
        '{ unknown = "x" }',
    ],
    "gate": [
        '"strict"',
        "{ min_pass_rate = true }",
        '{ min_pass_rate = "high" }',
        "{ min_pass_rate = 1.5 }",
        "{ max_error_rate = -0.1 }",
        '{ max_regression = "abc" }',
        "{ max_regression = -5 }",
        "{ nonsense = 1 }",
    ],
    "unknown_key": ["1"],
}
BAD_TOOLS = [
    [{"function": "rename_file"}],
    [{"type": "function", "function": {"name": 7, "parameters": {"type": "object"}}}],
    [{"type": "function", "function": {"name": "toggle_lights", "parameters": {"type": "objekt"}}}],
    [{"type": "function", "function": {"name": "toggle_lights", "parameters": {"type": "object", "required": "room"}}}],
    "toggle_lights",
    [],
]
BAD_CONFIGS = [
    "- a\n- list\n",
    "just a scalar\n",
    "base:\n  - task\n",
    "base:\n  task: [classification\n",
    "base:\n  task: sorting\n",
    "base:\n  task: 3\n",
    "base: {task: classification\n",
    "\tbase: x\n",
]
BAD_JOBS = [
    [],
    "text",
    3,
    {"classes_description": {"a": "b"}},
    {"task_description": ""},
    {"task_description": "x", "classes_description": ["sports", "food"]},
    {"task_description": "x", "classes_description": {"sports": 1}},
    {"task_description": 5},
]


def _encode(files: dict[str, Any]) -> dict[str, bytes]:
    out = {}
    for name, value in files.items():
        if name == "rows":
            out["test.jsonl"] = "".join(json.dumps(r) + "\n" for r in value).encode()
        elif isinstance(value, bytes):
            out[name] = value
        elif isinstance(value, str):
            out[name] = value.encode()
        else:
            out[name] = json.dumps(value).encode()
    return out


@st.composite
def bad_folders(draw: st.DrawFn) -> tuple[dict[str, bytes], str]:
    """(files of a suite folder with one thing broken, the file its error must name)."""
    base = draw(st.sampled_from(sorted(BASES)))
    files = _encode(BASES[base])
    kind = draw(
        st.sampled_from(["missing", "encoding", "truncated", "settings", "tools", "config", "job", "rows", "csv"])
    )
    if kind == "missing":
        del files["test.jsonl"]  # (a folder without job_description.json is not a suite: tested below)
        return files, "test.jsonl"
    if kind == "encoding":  # bytes that are not UTF-8, somewhere in a file
        name = draw(st.sampled_from([JOB, "test.jsonl", "config.yaml"]))
        at = draw(st.integers(0, len(files[name])))
        files[name] = files[name][:at] + draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xe9t\xe9"])) + files[name][at:]
        return files, name
    if kind == "truncated":  # a document cut short: broken JSON / YAML
        name = draw(st.sampled_from([JOB, "config.yaml"]))
        text = files[name]
        cut = draw(st.integers(1, len(text) - 1)) if name == JOB else len(b"base:\n  task: ")
        files[name] = text[:cut] + (b"" if name == JOB else b"[")
        return files, name
    if kind == "settings":
        field = draw(st.sampled_from(sorted(WRONG_SETTINGS)))
        value = draw(st.sampled_from(WRONG_SETTINGS[field]))
        if field in ("prompt", "gate") and value.startswith("{"):
            body = value.strip("{} ").replace(", ", "\n")
            files["distill.toml"] = f"[{field}]\n{body}\n".encode()
        else:
            files["distill.toml"] = f"{field} = {value}\n".encode()
        if draw(st.booleans()):  # or the TOML itself is broken
            files["distill.toml"] += draw(st.sampled_from([b"oops\n", b"[gate\n", b"scorer = 'a' 'b'\n"]))
        return files, "distill.toml"
    if kind == "tools":
        job = dict(BASES["tool-calling"][JOB], tools=draw(st.sampled_from(BAD_TOOLS)))
        files = _encode({**BASES["tool-calling"], JOB: job})
        return files, JOB
    if kind == "config":
        files["config.yaml"] = draw(st.sampled_from(BAD_CONFIGS)).encode()
        return files, "config.yaml"
    if kind == "job":
        files[JOB] = json.dumps(draw(st.sampled_from(BAD_JOBS))).encode()
        return files, JOB
    if kind == "rows":  # a JSONL line that is not a row
        line = draw(
            st.sampled_from(
                [
                    b"{not json\n",
                    b"[1, 2]\n",
                    b'{"question": "q"}\n',
                    b'"text"\n',
                    b'{"question": 3, "answer": {"x": 1}}\n',
                ]
            )
        )
        files["test.jsonl"] += line
        return files, "test.jsonl"
    # CSV instead of JSONL, broken
    del files["test.jsonl"]
    files["test.csv"] = draw(
        st.sampled_from(
            [
                b'question,answer\n"unclosed,sports\n',
                b"question\nx\n",
                b"question,answer\n",
                b"q,a\nx,y\n",
                b"question,answer\na,b,c\n",
            ]
        )
    )
    return files, "test.csv"


_counter = itertools.count()
_SECTION = re.compile(r"^_{3,} ERROR collecting (\S+) _{3,}$", re.MULTILINE)


def _write(root: Path, files: dict[str, bytes]) -> str:
    folder = root / "suites" / f"s{next(_counter)}"
    folder.mkdir(parents=True)
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return str(folder.relative_to(root))


def _errors_by_folder(out: str) -> dict[str, str]:
    """The collection error sections of a run, by suite folder."""
    parts = _SECTION.split(out)
    found: dict[str, str] = {}
    for path, text in zip(parts[1::2], parts[2::2], strict=True):
        folder = "/".join(Path(path).parts[:2])
        found[folder] = found.get(folder, "") + text.split("=" * 10)[0]
    return found


@pytest.fixture(scope="module")
def server():
    with FakeChatServer([(r["question"], r["answer"]) for b in BASES.values() for r in b["rows"]]) as fake:
        yield fake


@pytest.fixture
def project(pytester, server):
    pytester.makefile(".toml", models=server.models_toml(fake="correct"))
    return pytester


def _run(
    project: pytest.Pytester, cases: list[tuple[dict[str, bytes], str]], *extra: str, workers: int = 0
) -> tuple[int, dict[str, str]]:
    """Run the folders in one session; every one of them must be a collection error naming its file."""
    folders = {_write(project.path, files): named for files, named in cases}
    args = (*folders, "--model=fake", "-p", "no:cacheprovider", "-p", "no:randomly", *extra)
    if workers:
        result = project.runpytest_subprocess(*args, "-n", str(workers))
    else:
        result = project.runpytest_inprocess(*args)
    out = result.stdout.str() + result.stderr.str()
    assert result.ret not in (0, 5), out  # never green, never "no tests ran" without a reason
    assert "INTERNALERROR" not in out and "Traceback" not in out, out
    errors = _errors_by_folder(out)
    for folder, named in folders.items():
        assert folder in errors, f"{folder} (broken: {named}) gave no collection error:\n{out}"
        assert named in errors[folder], f"{folder}: the error does not name {named}:\n{errors[folder]}"
        assert errors[folder].strip().count("\n") < 5, errors[folder]  # one clear error, not a dump
    return result.ret, errors


FUZZ = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


# 10 sessions x 20 folders: 200 generated bad folders, at one pytest start-up per 20.
@settings(FUZZ, max_examples=10)
@given(cases=st.lists(bad_folders(), min_size=20, max_size=20))
def test_every_bad_folder_is_one_clear_error(project, cases):
    _run(project, cases)


@settings(FUZZ, max_examples=1, phases=[Phase.generate])  # a sample: no shrinking
@given(cases=st.lists(bad_folders(), min_size=5, max_size=5))
def test_bad_folders_end_the_same_under_xdist(project, cases):
    # pytest itself ends a serial run with collection errors as interrupted (2), xdist as
    # failed (1); --continue-on-collection-errors makes both 1, so the statuses compare.
    serial_status, serial = _run(project, cases, "--continue-on-collection-errors")
    # the same folders again, under new names, with two workers
    parallel_status, parallel = _run(project, cases, "--continue-on-collection-errors", workers=2)

    def messages(errors: dict[str, str]) -> list[str]:
        return [
            re.sub(r"suites/s\d+", "suites/<folder>", text)
            for _, text in sorted(errors.items(), key=lambda kv: int(kv[0].rpartition("s")[2]))
        ]

    assert serial_status == parallel_status
    assert messages(serial) == messages(parallel)


def test_a_named_folder_without_its_job_description_says_why(project):
    folder = _write(project.path, {"test.jsonl": b'{"question": "q", "answer": "a"}\n'})
    result = project.runpytest_inprocess(folder, "--model=fake", "-p", "no:cacheprovider")
    out = result.stdout.str() + result.stderr.str()
    assert result.ret not in (0, 5) and "Traceback" not in out and JOB in out, out
