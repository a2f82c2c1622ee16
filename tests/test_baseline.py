"""Baselines (--distill-baseline, the regression gate) and syrupy snapshots of predictions."""

from __future__ import annotations

import json

import pytest

from pytest_distill.core.baseline import compare_to_baseline
from pytest_distill.core.errors import ConfigError
from pytest_distill.core.records import Record
from pytest_distill.report.results_file import read_results

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project, numbered_rows


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(numbered_rows(10)) as fake:
        yield fake


# --- pure ---------------------------------------------------------------------------


def rec(example: int, outcome: str, model: str = "m", expected: str = "x", repetition: int = 1) -> Record:
    return Record(
        suite="s",
        suite_path="suites/s",
        model=model,
        example_id=f"{example:04d}",
        repetition=repetition,
        outcome=outcome,
        expected=expected,
    )


def test_deltas_and_newly_failing_examples():
    before = [rec(1, "pass"), rec(2, "pass"), rec(3, "pass"), rec(4, "miss")]
    now = [rec(1, "pass"), rec(2, "miss"), rec(3, "miss"), rec(4, "pass")]
    (delta,) = compare_to_baseline(now, before)
    assert (delta.shared, delta.baseline_rate, delta.rate) == (4, 0.75, 0.5)
    assert delta.delta_pp == pytest.approx(-25.0) and delta.regression_pp == pytest.approx(25.0)
    assert delta.newly_failing == ["0002", "0003"] and delta.newly_passing == ["0004"]
    assert delta.p_value == pytest.approx(1.0)


def test_only_shared_examples_with_the_same_answer_are_compared():
    before = [rec(1, "pass"), rec(2, "pass", expected="old"), rec(3, "miss"), rec(9, "miss")]
    now = [rec(1, "pass"), rec(2, "miss", expected="new"), rec(3, "pass")]  # --limit 3, row 2 was edited
    (delta,) = compare_to_baseline(now, before)
    assert delta.shared == 2 and delta.baseline_rate == 0.5 and delta.rate == 1.0
    assert delta.newly_failing == [] and delta.newly_passing == ["0003"]


def test_models_or_suites_missing_from_either_side_have_no_delta():
    assert compare_to_baseline([rec(1, "pass", model="new")], [rec(1, "pass", model="old")]) == []


def test_errors_are_not_newly_failing():
    (delta,) = compare_to_baseline([rec(1, "error"), rec(2, "pass")], [rec(1, "pass"), rec(2, "pass")])
    assert delta.newly_failing == [] and delta.rate == 1.0 and delta.baseline_rate == 1.0


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (None, "cannot read"),
        ("{not json", "not JSON"),
        ('{"hello": 1}', "not a pytest-distill results.json"),
        ('{"schema": "pytest-distill/results", "schema_version": 99}', "schema version 99"),
        ('{"schema": "pytest-distill/results", "schema_version": 1}', "schema violation"),
    ],
)
def test_bad_baseline_files(tmp_path, content, message):
    path = tmp_path / "results.json"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=message):
        read_results(path)


# --- end to end ---------------------------------------------------------------------


def make_baseline(pytester, server, settings=None):
    """A results.json where model m answered every row correctly."""
    distill_project(pytester, server, {"m": "correct"}, suites={"topics": settings})
    assert pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=m", "--distill-report=base").ret == 0
    # The same model name now answers rows 2 and 4 wrongly.
    pytester.makefile(".toml", models=server.models_toml(m="wrong:2,4"))


def test_baseline_deltas_and_newly_failing_in_the_summary(pytester, server):
    make_baseline(pytester, server)
    result = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--model=m", "--distill-baseline=base/results.json", "--distill-report=out"
    )
    assert result.ret == 1  # no gate: the misses fail the run, as always
    result.stdout.fnmatch_lines(
        ["baseline: topics x m: 100.0% -> 80.0% (-20.0 pp on 10 shared examples, p=0.5); 2 newly failing: 0002, 0004"]
    )
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["baseline"]["path"] == "base/results.json"
    assert doc["baseline"]["deltas"][0]["newly_failing"] == ["0002", "0004"]
    assert (
        "| topics | m | 10 | 100.0% | 80.0% | -20.0 pp | 2: 0002, 0004 |"
        in (pytester.path / "out" / "summary.md").read_text()
    )


@pytest.mark.parametrize("xdist", [SERIAL, XDIST])
def test_regression_gate_from_distill_toml(pytester, server, xdist):
    make_baseline(pytester, server, settings="[gate]\nmin_pass_rate = 0.7\nmax_regression = 10\n")
    result = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--model=m", "--distill-baseline=base/results.json", *xdist
    )
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gate FAILED: topics x m: regression +20.0 pp vs baseline > 10 pp"])


def test_regression_gate_cli_override(pytester, server):
    make_baseline(pytester, server, settings="[gate]\nmin_pass_rate = 0.7\nmax_regression = 10\n")
    result = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--model=m", "--distill-baseline=base/results.json", "--max-regression=20"
    )
    assert result.ret == 0, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "gate passed: topics x m: pass rate 80.0% >= 70.0%; error rate 0.0% <= 0.0%; "
            "regression +20.0 pp vs baseline <= 20 pp"
        ]
    )


def test_regression_gate_alone_is_a_gate(pytester, server):
    make_baseline(pytester, server)
    args = ["suites", "-p", "no:cacheprovider", "--model=m", "--distill-baseline=base/results.json"]
    assert pytester.runpytest(*args, "--max-regression=25").ret == 0  # misses within the regression gate
    assert pytester.runpytest(*args, "--max-regression=15").ret == 1
    assert (
        pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=m", "--max-regression=25").ret == 1
    )  # no baseline: no gate


def test_a_bad_baseline_stops_the_run_before_any_request(pytester, server):
    distill_project(pytester, server, {"m": "correct"})
    (pytester.path / "old.json").write_text('{"hello": 1}')
    sent = len(server.requests)
    result = pytester.runpytest("suites", "--model=m", "--distill-baseline=old.json")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--distill-baseline */old.json: not a pytest-distill results.json*"])
    assert len(server.requests) == sent


# --- syrupy snapshots ------------------------------------------------------------------

SNAPSHOT_TEST = """
def test_topics_predictions(distill_predictions, snapshot):
    assert distill_predictions("suites/topics", limit=5) == snapshot
"""


def test_predictions_snapshot_roundtrip(pytester, server):
    distill_project(pytester, server, {"m": "correct"})
    pytester.makepyfile(test_snap=SNAPSHOT_TEST)
    args = ["test_snap.py", "-p", "no:cacheprovider", "--model=m"]
    assert pytester.runpytest(*args).ret == 1  # no snapshot yet
    assert pytester.runpytest(*args, "--snapshot-update").ret == 0
    stored = (pytester.path / "__snapshots__" / "test_snap.ambr").read_text()
    assert "'0001': 'sports'" in stored and "'0005': 'sports'" in stored and "'0006'" not in stored  # limit=5
    assert pytester.runpytest(*args).ret == 0

    pytester.makefile(".toml", models=server.models_toml(m="wrong:2"))  # the model changed its answer on row 2
    result = pytester.runpytest(*args)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*'0002': 'weather'*", "*'0002': 'not-weather'*"])


def test_predictions_need_temperature_zero(pytester, server):
    distill_project(pytester, server, {"m": {"spec": "correct", "temperature": 0.7}})
    pytester.makepyfile(test_snap=SNAPSHOT_TEST)
    result = pytester.runpytest("test_snap.py", "-p", "no:cacheprovider", "--model=m", "--snapshot-update")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*distill_predictions: model 'm' runs at temperature 0.7*"])


def test_predictions_of_a_failing_model_are_not_snapshotted(pytester, server):
    distill_project(pytester, server, {"m": "correct+error:3"})
    pytester.makepyfile(test_snap=SNAPSHOT_TEST)
    result = pytester.runpytest("test_snap.py", "-p", "no:cacheprovider", "--model=m", "--snapshot-update")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["*distill_predictions: 1 of 5 requests failed: 0003: m: HTTP 500*"])
    assert not (pytester.path / "__snapshots__" / "test_snap.ambr").exists()
