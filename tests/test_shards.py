"""CI shards: --distill-shard K/N and `pytest-distill merge` (the shards as one run)."""

from __future__ import annotations

import copy
import json
import re

import pytest

from pytest_distill.cli import main as cli_main
from pytest_distill.core.errors import ConfigError
from pytest_distill.core.shard import Shard, parse_shard, shard_of

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project, numbered_rows

GATED = "[gate]\nmin_pass_rate = 0.8\nmax_error_rate = 0.1\n"
MODELS = {"good": "correct", "some": "wrong:2,7", "flaky": "correct+error:4"}
SHARD_ARGS = ["-p", "no:cacheprovider", "--model=good", "--model=some", "--model=flaky", "--repeat=2"]


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(numbered_rows(10)) as fake:
        yield fake


# --- which examples a shard holds -------------------------------------------------------


def test_parse_shard_and_its_one_line_errors():
    assert parse_shard("2/3") == Shard(2, 3) and str(parse_shard(" 1 / 1 ")) == "1/1"
    for bad in ("3", "0/3", "4/3", "a/b", "1/0", "-1/2"):
        with pytest.raises(ConfigError, match="--distill-shard") as info:
            parse_shard(bad)
        assert "\n" not in str(info.value)


def test_every_example_falls_in_exactly_one_shard_and_the_split_is_stable():
    ids = [str(i) for i in range(1, 601)]
    counts = [sum(shard_of("suites/a", i, 3) == k for i in ids) for k in (1, 2, 3)]
    assert sum(counts) == 600 and min(counts) > 150  # about a third each
    assert all(Shard(shard_of("suites/a", i, 3), 3).holds("suites/a", i) for i in ids)
    # by the suite folder and the example id only: the same on every runner, in every run
    assert shard_of("suites/a", "17", 5) == shard_of("suites/a", "17", 5)
    assert [shard_of("suites/a", i, 4) for i in ids] != [shard_of("suites/b", i, 4) for i in ids]


@pytest.mark.parametrize("xdist_args", [SERIAL, XDIST])
def test_shards_hold_all_models_and_repetitions_of_an_example(pytester, server, xdist_args):
    distill_project(pytester, server, MODELS)
    seen = {}
    for k in (1, 2, 3):
        result = pytester.runpytest(
            "suites", *SHARD_ARGS, f"--distill-shard={k}/3", "--collect-only", "-q", *xdist_args
        )
        ids = [line for line in result.outlines if "::topics[" in line]
        rows = {re.search(r"-r\d-(\w+)\]", line).group(1) for line in ids}
        assert len(ids) == len(rows) * 3 * 2  # 3 models x 2 repetitions of each example
        for row in rows:
            assert row not in seen
            seen[row] = k
    assert sorted(seen) == [f"{i:04d}" for i in range(1, 11)]


def test_a_bad_shard_option_is_a_usage_error(pytester, server):
    distill_project(pytester, server, MODELS)
    result = pytester.runpytest("suites", "--distill-shard=4/3")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--distill-shard 4/3: K must be between 1 and N*"])


# --- merging ----------------------------------------------------------------------------


def _shards(pytester, xdist_args, extra=(), name="s"):
    """Run the three shards; returns their report folders."""
    folders = []
    for k in (1, 2, 3):
        folder = f"{name}{k}"
        pytester.runpytest(
            "suites", *SHARD_ARGS, f"--distill-shard={k}/3", f"--distill-report={folder}", *extra, *xdist_args
        )
        folders.append(folder)
    return folders


def _merge(pytester, capsys, *args):
    capsys.readouterr()
    status = cli_main(["merge", *args])
    out, err = capsys.readouterr()
    return status, out, err


def _timeless(document):
    """The document without what measures time (and without how it was invoked)."""
    doc = copy.deepcopy(document)
    for key in ("created_at", "run", "versions"):
        doc.pop(key)
    for r in doc["records"]:
        r["latency_s"] = r["finished_at"] = None
        r["nodeid"] = ""  # pytester's folder
    for s in doc["summaries"]:
        for key in ("latency_p50", "latency_p95", "latency_p99", "cost"):
            s.pop(key)
    for c in doc["comparisons"]:
        for r in c["ranking"]:
            r["cost_per_request"] = None  # self-hosted: GPU $/hour over the measured rate
        if c["route"]:
            c["route"]["cost_ratio"] = None
    volume = doc.get("volume") or {}
    for model in volume.get("models", []):  # a self-hosted model's rate is measured here: a timing
        for key in ("requests_per_s", "rate_basis", "servers", "monthly_usd"):
            model[key] = None
    volume["break_even"] = [b["self_hosted"] + " vs " + b["api"] for b in volume.get("break_even", [])]
    _drop_costs(doc.get("matrix"))  # self-hosted $ per million: over the measured rate
    _drop_costs(doc.get("routing"))
    return doc


def _drop_costs(value):
    """Every cost figure in a nested value set to None (they depend on measured rates)."""
    if isinstance(value, dict):
        for key in value:
            if "per_million" in key or "cost" in key or "saving" in key:
                value[key] = None
            else:
                _drop_costs(value[key])
    elif isinstance(value, list):
        for item in value:
            _drop_costs(item)


_TIMING = re.compile(r"(\d+(\.\d+)?(ms|s)\b|\$[\d.,e-]+|[\d.]+ req/s)")


def _table(lines):
    """The pytest-distill section's lines, timings masked."""
    lines = list(lines)
    start = next(i for i, line in enumerate(lines) if "pytest-distill" in line and "=" in line) + 1
    body = [line for line in lines[start:] if not line.startswith(("distill report:", "=", "FAILED", "ERROR"))]
    return [" ".join(_TIMING.sub("#", line).split()) for line in body if line.strip(" -")]  # widths vary


@pytest.mark.parametrize("xdist_args", [SERIAL, XDIST])
def test_three_shards_merge_into_the_unsharded_run(pytester, server, capsys, monkeypatch, xdist_args):
    distill_project(pytester, server, MODELS, suites={"topics": GATED, "plain": None})
    monkeypatch.chdir(pytester.path)
    pytester.runpytest("suites", *SHARD_ARGS, "--distill-report=base", "--model=some")  # a baseline
    baseline = ["--distill-baseline=base/results.json", "--max-regression=5"]
    whole = pytester.runpytest("suites", *SHARD_ARGS, "--distill-report=whole", *baseline, *xdist_args)
    folders = _shards(pytester, xdist_args, baseline)
    status, out, err = _merge(pytester, capsys, *folders, "--out", "merged")
    assert err == ""
    expected = json.loads((pytester.path / "whole" / "results.json").read_text())
    merged = json.loads((pytester.path / "merged" / "results.json").read_text())
    # the run decided something non-trivial: misses, errors, a failed and a passed gate, a regression check
    assert {r["outcome"] for r in expected["records"]} == {"pass", "miss", "error"}
    assert {g["passed"] for g in expected["gates"]} == {True, False}
    assert expected["baseline"]["deltas"] and expected["comparisons"][0]["route"]
    assert status == whole.ret == expected["run"]["exit_status"] == merged["run"]["exit_status"] == 1
    assert _timeless(merged) == _timeless(expected)  # records, summaries, gates, comparisons, routes, baseline
    assert _table(out.splitlines()) == _table(whole.outlines)
    assert merged["run"]["merged_from"] == [f"{f}/results.json" for f in folders] and merged["run"]["shard"] is None
    assert (pytester.path / "merged" / "report.html").is_file() and (pytester.path / "merged" / "summary.md").is_file()


def test_merged_gates_pass_as_the_unsharded_run_does(pytester, server, capsys, monkeypatch):
    distill_project(pytester, server, {"good": "correct", "some": "wrong:2"}, suites={"topics": GATED})
    monkeypatch.chdir(pytester.path)
    args = ["-p", "no:cacheprovider", "--model=good", "--model=some"]
    whole = pytester.runpytest("suites", *args, "--distill-report=whole")
    for k in (1, 2, 3):
        pytester.runpytest("suites", *args, f"--distill-shard={k}/3", f"--distill-report=s{k}")
    status, _, _ = _merge(pytester, capsys, "s1", "s2", "s3", "--out", "merged")
    assert whole.ret == status == 0  # the miss is excused by a passing gate in both


@pytest.fixture
def three_shards(pytester, server, monkeypatch):
    distill_project(pytester, server, MODELS)
    monkeypatch.chdir(pytester.path)
    return _shards(pytester, [])


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda docs: docs.pop(), "shard 3/3 missing (given: 1/3, 2/3)"),
        (lambda docs: docs.append(docs[0]), "shard 1/3 given twice: s1/results.json and s4/results.json"),
        (
            lambda docs: docs[1]["run"]["definition"]["options"].update(distill_models=["good"]),
            "s1/results.json and s2/results.json are not shards of one run: different models",
        ),
        (
            lambda docs: docs[2]["run"]["definition"].update(plugin_version="0.0.1"),
            "s1/results.json and s3/results.json are not shards of one run: different plugin versions",
        ),
        (
            lambda docs: docs[1]["run"]["definition"].update(paths=["other"]),
            "s1/results.json and s2/results.json are not shards of one run: different suites",
        ),
        (
            lambda docs: docs[1]["run"]["definition"]["options"].update(distill_limit=5),
            "s1/results.json and s2/results.json are not shards of one run: different --limit",
        ),
        (lambda docs: docs[1]["run"]["shard"].update(total=4), "shards of different splits"),
        (lambda docs: docs[0]["run"].update(shard=None), "s1/results.json is not a shard"),
    ],
)
def test_merge_refuses_what_is_not_one_run(pytester, capsys, three_shards, change, message):
    docs = [json.loads((pytester.path / f / "results.json").read_text()) for f in three_shards]
    change(docs)
    names = []
    for i, doc in enumerate(docs, start=1):
        (pytester.path / f"s{i}").mkdir(exist_ok=True)
        (pytester.path / f"s{i}" / "results.json").write_text(json.dumps(doc))
        names.append(f"s{i}/results.json")
    status, out, err = _merge(pytester, capsys, *names, "--out", "merged")
    assert status == pytest.ExitCode.USAGE_ERROR and out == ""
    assert err.startswith(f"pytest-distill merge: {message}") and err.count("\n") == 1, err
    assert not (pytester.path / "merged").exists()


def test_an_empty_shard_still_writes_its_results(pytester, server, capsys, monkeypatch):
    one_row = FakeChatServer(numbered_rows(1))
    with one_row:
        distill_project(pytester, one_row, {"good": "correct"})
        monkeypatch.chdir(pytester.path)
        owner = shard_of("suites/topics", "0001", 2)
        for k in (1, 2):
            result = pytester.runpytest(
                "suites", "-p", "no:cacheprovider", "--model=good", f"--distill-shard={k}/2", f"--distill-report=s{k}"
            )
            assert result.ret == (0 if k == owner else pytest.ExitCode.NO_TESTS_COLLECTED)
        status, out, _ = _merge(pytester, capsys, "s1", "s2", "--out", "merged")
    assert status == 0 and "topics" in out
    assert len(json.loads((pytester.path / "merged" / "results.json").read_text())["records"]) == 1
