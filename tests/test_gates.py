"""Gates: verdicts (pure), exit statuses end to end (serial and -n 2), JUnit testcases."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import replace

import pytest

from pytest_distill.core.gates import Gate, check_gate, exit_status
from pytest_distill.core.records import Summary

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project, numbered_rows


@pytest.fixture(scope="module")
def server():
    # 10 rows: "even" scores 50%, "wrong:1" 90%.
    with FakeChatServer(numbered_rows(10)) as fake:
        yield fake


# --- pure verdicts --------------------------------------------------------------


def summary(**changes) -> Summary:
    base = Summary(
        suite="s",
        suite_path="suites/s",
        model="m",
        n=10,
        passed=8,
        missed=2,
        errors=0,
        skipped=0,
        pass_rate=0.8,
        ci_low=0.49,
        ci_high=0.94,
        error_rate=0.0,
        repetitions=1,
        rep_mean=0.8,
        rep_std=0.0,
        flips=0,
        latency_p50=None,
        latency_p95=None,
        latency_p99=None,
        mean_input_tokens=None,
        mean_output_tokens=None,
        cost_per_request=None,
        cost_total=None,
    )
    return replace(base, **changes)


def test_pass_rate_at_the_threshold_passes():
    result = check_gate(summary(), Gate(min_pass_rate=0.8))
    assert result.passed and "pass rate 80.0% >= 80.0%" in result.reason


def test_pass_rate_below_the_threshold_fails_and_says_so():
    result = check_gate(summary(pass_rate=0.7, rep_mean=0.7), Gate(min_pass_rate=0.8))
    assert not result.passed and result.reason == "pass rate 70.0% < 80.0%"


def test_errors_fail_a_pass_rate_gate_unless_allowed():
    s = summary(errors=1, error_rate=0.1)
    assert not check_gate(s, Gate(min_pass_rate=0.5)).passed  # default error limit 0
    assert "error rate 10.0% > 0.0% (1 errors)" in check_gate(s, Gate(min_pass_rate=0.5)).reason
    assert check_gate(s, Gate(min_pass_rate=0.5, max_error_rate=0.1)).passed


def test_repeated_runs_are_gated_on_the_mean_over_repetitions():
    s = summary(repetitions=3, pass_rate=0.9, rep_mean=0.75)
    assert not check_gate(s, Gate(min_pass_rate=0.8)).passed


def test_nothing_scored_fails_a_pass_rate_gate():
    s = summary(passed=0, missed=0, errors=10, error_rate=1.0, pass_rate=None, rep_mean=None)
    result = check_gate(s, Gate(min_pass_rate=0.1, max_error_rate=1.0))
    assert not result.passed and "no scored items" in result.reason


def test_regression_limit_in_percentage_points():
    assert check_gate(summary(), Gate(max_regression=2.0), regression_pp=2.0).passed
    failed = check_gate(summary(), Gate(max_regression=2.0), regression_pp=2.5)
    assert not failed.passed and "regression +2.5 pp vs baseline > 2 pp" in failed.reason
    assert check_gate(summary(), Gate(max_regression=2.0), regression_pp=None).passed  # no baseline row


def test_exit_status_rules():
    ok = check_gate(summary(), Gate(min_pass_rate=0.5))
    bad = check_gate(summary(), Gate(min_pass_rate=0.9))
    assert exit_status(1, [], failures=2, excused=0) == 1  # no gate: pytest decides
    assert exit_status(0, [], failures=0, excused=0) == 0
    assert exit_status(1, [ok], failures=2, excused=2) == 0  # misses inside a passing gate
    assert exit_status(1, [ok], failures=3, excused=2) == 1  # a failure outside any gate
    assert exit_status(0, [bad], failures=0, excused=0) == 1
    assert exit_status(2, [ok], failures=0, excused=0) == 2  # interrupted stays interrupted
    assert exit_status(5, [bad], failures=0, excused=0) == 5
    assert exit_status(1, [ok], failures=1, excused=1, stopped_early=True) == 1  # -x: the gate saw part of the run


def test_a_run_stopped_by_maxfail_does_not_pass_its_gate(pytester, server):
    distill_project(pytester, server, {"half": "even"}, suites={"topics": "[gate]\nmin_pass_rate = 0.0\n"})
    assert run(pytester, "--model=half").ret == 0
    assert run(pytester, "--model=half", "-x").ret == 1


# --- exit statuses end to end ------------------------------------------------------


def run(pytester, *args, paths=("suites",)):
    return pytester.runpytest(*paths, "-p", "no:cacheprovider", *args)


@pytest.mark.parametrize("xdist", [SERIAL, XDIST])
def test_without_a_gate_any_miss_fails(pytester, server, xdist):
    distill_project(pytester, server, {"good": "correct", "almost": "wrong:3"})
    if not xdist:  # (one xdist run per case: workers take seconds to start on shared cores)
        assert run(pytester, "--model=good").ret == 0
    result = run(pytester, "--model=almost", *xdist)
    assert result.ret == 1
    result.assert_outcomes(passed=9, failed=1)


@pytest.mark.parametrize("xdist", [SERIAL, XDIST])
def test_misses_inside_a_passing_gate_do_not_fail_the_run(pytester, server, xdist):
    distill_project(pytester, server, {"half": "even"}, suites={"topics": "[gate]\nmin_pass_rate = 0.5\n"})
    result = run(pytester, "--model=half", *xdist)
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=5, failed=5)  # the misses still show as failed items
    result.stdout.fnmatch_lines(["gate passed: topics x half: pass rate 50.0% >= 50.0%; error rate 0.0% <= 0.0%"])
    assert _row(result.stdout.str(), "half")[-1] == "PASS"  # the verdict column of the summary table


@pytest.mark.parametrize("xdist", [SERIAL, XDIST])
def test_a_failing_gate_fails_the_run(pytester, server, xdist):
    distill_project(pytester, server, {"half": "even"}, suites={"topics": "[gate]\nmin_pass_rate = 0.6\n"})
    result = run(pytester, "--model=half", *xdist)
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gate FAILED: topics x half: pass rate 50.0% < 60.0%"])
    assert _row(result.stdout.str(), "half")[-1] == "FAIL"


@pytest.mark.parametrize("xdist", [SERIAL, XDIST])
def test_errors_fail_a_gate_unless_within_max_error_rate(pytester, server, xdist):
    distill_project(
        pytester,
        server,
        {"flaky": "correct+error:2"},
        suites={
            "strict": "[gate]\nmin_pass_rate = 0.5\n",
            "lenient": "[gate]\nmin_pass_rate = 0.5\nmax_error_rate = 0.1\n",
        },
    )
    result = run(pytester, "--model=flaky", *xdist, paths=["suites/strict"])
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gate FAILED: strict x flaky: error rate 10.0% > 0.0% (1 errors)"])
    result = run(pytester, "--model=flaky", *xdist, paths=["suites/lenient"])
    assert result.ret == 0, result.stdout.str()
    result.assert_outcomes(passed=9, errors=1)


def test_cli_min_pass_rate_overrides_the_suite_gate(pytester, server):
    distill_project(pytester, server, {"half": "even"}, suites={"topics": "[gate]\nmin_pass_rate = 0.9\n"})
    assert run(pytester, "--model=half").ret == 1
    assert run(pytester, "--model=half", "--min-pass-rate=0.5").ret == 0
    assert run(pytester, "--model=half", "--min-pass-rate=0.51").ret == 1


def test_cli_min_pass_rate_gates_suites_without_a_gate(pytester, server):
    distill_project(pytester, server, {"half": "even"})
    assert run(pytester, "--model=half").ret == 1  # no gate: plain pytest
    assert run(pytester, "--model=half", "--min-pass-rate=0.4").ret == 0


def test_a_suite_without_a_gate_still_fails_on_misses_beside_a_gated_one(pytester, server):
    distill_project(
        pytester, server, {"half": "even"}, suites={"gated": "[gate]\nmin_pass_rate = 0.5\n", "plain": None}
    )
    assert run(pytester, "--model=half", paths=["suites/gated"]).ret == 0
    assert run(pytester, "--model=half").ret == 1


def test_a_failing_python_test_still_fails_a_gated_run(pytester, server):
    distill_project(pytester, server, {"good": "correct"}, suites={"topics": "[gate]\nmin_pass_rate = 0.5\n"})
    pytester.makepyfile(test_other="def test_other():\n    assert False\n")
    result = pytester.runpytest("suites", "test_other.py", "--model=good", "-p", "no:cacheprovider")
    assert result.ret == 1


def test_each_model_is_gated_on_its_own(pytester, server):
    distill_project(
        pytester, server, {"good": "correct", "half": "even"}, suites={"topics": "[gate]\nmin_pass_rate = 0.8\n"}
    )
    result = run(pytester, "--model=good", "--model=half")
    assert result.ret == 1
    result.stdout.fnmatch_lines(["gate passed: topics x good:*", "gate FAILED: topics x half:*"])


@pytest.mark.parametrize("value", ["1.5", "-0.1"])
def test_bad_min_pass_rate_is_a_usage_error(pytester, server, value):
    distill_project(pytester, server, {"good": "correct"})
    result = run(pytester, "--model=good", f"--min-pass-rate={value}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--min-pass-rate must be between 0 and 1*"])


# --- JUnit ----------------------------------------------------------------------------


@pytest.mark.parametrize("xdist", [SERIAL, XDIST])
def test_each_gate_verdict_is_a_junit_testcase(pytester, server, xdist):
    distill_project(
        pytester, server, {"good": "correct", "half": "even"}, suites={"topics": "[gate]\nmin_pass_rate = 0.8\n"}
    )
    result = run(pytester, "--model=good", "--model=half", "--junitxml=junit.xml", *xdist)
    assert result.ret == 1
    suite = ET.parse(pytester.path / "junit.xml").getroot().find("testsuite")
    gates = {case.get("name"): case for case in suite.iter("testcase") if case.get("name").startswith("distill-gate")}
    assert set(gates) == {"distill-gate[good]", "distill-gate[half]"}
    assert all(case.get("classname") == "suites.topics" for case in gates.values())
    assert gates["distill-gate[good]"].find("failure") is None
    failure = gates["distill-gate[half]"].find("failure")
    assert failure is not None and "pass rate 50.0% < 80.0%" in failure.get("message")
    props = {p.get("name"): p.get("value") for p in gates["distill-gate[half]"].iter("property")}
    assert props["distill.gate.passed"] == "False" and props["distill.gate.min_pass_rate"] == "0.8"
    # 20 items + 2 gates, counted in the totals: 5 misses + 1 failed gate.
    assert suite.get("tests") == "22" and suite.get("failures") == "6"
    result.assert_outcomes(passed=15, failed=5)  # the terminal's counts are the items' only


def test_no_gate_no_gate_testcase(pytester, server):
    distill_project(pytester, server, {"good": "correct"})
    assert run(pytester, "--model=good", "--junitxml=junit.xml").ret == 0
    names = [c.get("name") for c in ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")]
    assert len(names) == 10 and not any(n.startswith("distill-gate") for n in names)


def _row(output: str, model: str) -> list[str]:
    for line in output.splitlines():
        cells = line.split()
        if len(cells) > 2 and cells[1] == model and cells[0] in ("topics", "gated", "strict", "lenient"):
            return cells
    raise AssertionError(f"no summary row for {model} in:\n{output}")
