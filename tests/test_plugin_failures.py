"""Nothing passes silently: plugin bugs, unknown scorers, bad templates, folders that are
not suites, and ties, serial and under xdist (pytester against a fake server)."""

from __future__ import annotations

import pytest

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project
from helpers.suites import TOPIC_ROWS, summary_row, write_suite

ROWS = [{"question": q, "answer": a} for q, a in TOPIC_ROWS[:4]]

# A scorer with a bug, for this run only (serial pytester runs share our process).
BROKEN_SCORER = """
import pytest_distill.scoring as scoring

_saved = {}

def _broken(example, completion):
    raise TypeError("a bug in a scorer")

def pytest_configure(config):
    _saved.update(scoring.PLAIN_SCORERS)
    scoring.PLAIN_SCORERS["exact_match"] = _broken

def pytest_unconfigure(config):
    scoring.PLAIN_SCORERS.update(_saved)
"""


@pytest.fixture
def server():
    with FakeChatServer(ROWS) as fake:
        yield fake


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
def test_a_bug_in_our_code_is_an_internal_error_not_the_models_error(pytester, server, workers):
    distill_project(pytester, server, {"good": "correct"}, suites={"topics": "[gate]\nmin_pass_rate = 0.0\n"})
    pytester.makeconftest(BROKEN_SCORER)
    result = pytester.runpytest("suites", "--model=good", "-p", "no:cacheprovider", *workers)
    assert result.ret == pytest.ExitCode.TESTS_FAILED  # even though the gate asks for nothing
    out = result.stdout.str()
    assert "pytest-distill internal error" in out
    assert "TypeError: a bug in a scorer" in out and "Traceback" in out
    row = summary_row(out, "topics", "good")
    assert row[2:7] == ["4", "0", "0", "0", "4"]  # n, pass, miss, err, bug: never the model's errors
    assert "4 item(s) hit a pytest-distill internal error" in out


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
def test_an_unknown_scorer_is_a_collection_error_naming_the_field(pytester, server, workers):
    distill_project(pytester, server, {"good": "correct"}, suites={"topics": 'scorer = "nonexistent_scorer"\n'})
    result = pytester.runpytest("suites", "--model=good", "-p", "no:cacheprovider", *workers)
    assert result.ret not in (pytest.ExitCode.OK, pytest.ExitCode.NO_TESTS_COLLECTED)
    result.stdout.fnmatch_lines(["*suites/topics/distill.toml:*: field 'scorer': unknown scorer 'nonexistent_scorer'*"])
    assert "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
def test_a_template_naming_a_missing_column_is_a_collection_error(pytester, server, workers):
    distill_project(
        pytester,
        server,
        {"good": "correct"},
        suites={"topics": '[prompt]\nuser_template = "Q: {question} {nosuchcol}"\n'},
    )
    result = pytester.runpytest("suites", "--model=good", "-p", "no:cacheprovider", *workers)
    # A collection error: serial runs stop (2), xdist reports it as a failed run (1); never 0.
    assert result.ret in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.TESTS_FAILED)
    result.stdout.fnmatch_lines(
        [("*suites/topics/distill.toml:*: field 'prompt.user_template': {nosuchcol} is not a column*")]
    )
    assert "INTERNALERROR" not in result.stdout.str() and "Traceback" not in result.stdout.str()


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
def test_a_named_folder_that_is_not_a_suite_says_why(pytester, workers):
    folder = write_suite(pytester.path / "suites" / "topics")
    (folder / "job_description.json").unlink()
    result = pytester.runpytest("suites/topics", "-p", "no:cacheprovider", *workers)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            (
                "ERROR: pytest-distill: suites/topics is not a suite folder: it has test.jsonl, "
                "config.yaml but no job_description.json"
            )
        ]
    )


def test_equal_pass_rates_route_the_same_serial_and_xdist(pytester, server):
    # Identical answers and the same hourly price: only the name can break the tie, never timing.
    distill_project(
        pytester,
        server,
        {"zeta": {"spec": "correct", "gpu_hourly_usd": 1.0}, "alpha": {"spec": "correct", "gpu_hourly_usd": 1.0}},
    )
    routes = []
    for workers in ([], ["-n", "2"]):
        result = pytester.runpytest("suites", "--model=zeta", "--model=alpha", "-p", "no:cacheprovider", *workers)
        out = result.stdout.str()
        ranking = [line.split()[1] for line in out.splitlines() if line.startswith(("  1. ", "  2. "))]
        routes.append((ranking, [line for line in out.splitlines() if "route to" in line]))
    assert routes[0] == routes[1]
    assert routes[0][0] == ["alpha", "zeta"]
    assert routes[0][1] and "route to alpha" in routes[0][1][0]
