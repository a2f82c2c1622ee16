"""--distill-show-misses: a suite's misses folded to one line each in the terminal (the
first 20 by default), the rest counted; errors always in full; exit status, the counts
line and JUnit unchanged. Serial and under xdist alike."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET

import pytest

from pytest_distill.core.records import Record
from pytest_distill.report.misses import miss_line, miss_lines

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project, numbered_rows

# 30 rows: 25 misses, 5 HTTP 500 errors (never folded)
MODELS = {"bad": {"spec": "wrong+error:3,6,9,12,15", "max_retries": 0}}
ARGS = ["suites", "--model=bad", "-p", "no:cacheprovider", "--junitxml=junit.xml"]


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(numbered_rows(30)) as fake:
        yield fake


def _section(out: str, title: str) -> list[str]:
    lines = out.splitlines()
    start = next((i for i, line in enumerate(lines) if re.match(rf"=+ {title} =+$", line)), None)
    if start is None:
        return []
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("=")), len(lines))
    return lines[start + 1 : end]


@pytest.mark.parametrize("workers", [SERIAL, XDIST])
def test_misses_are_folded_to_twenty_lines_and_errors_stay_in_full(pytester, server, workers):
    distill_project(pytester, server, MODELS)
    result = pytester.runpytest(*ARGS, *workers)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert re.search(r"=+ 25 failed, 5 errors in ", out), out  # the counts line is pytest's own
    folded = _section(out, "distill misses")
    assert len(folded) == 21 and all(line.startswith("FAILED suites/topics/") for line in folded[:20])
    assert folded[0] == "FAILED suites/topics/test.jsonl::topics[bad-0001] - miss: expected 'sports', got 'not-sports'"
    assert folded[20] == "… and 5 more: see JUnit (--junitxml), --distill-report or --distill-show-misses=all"
    assert "= FAILURES =" not in out  # no section per miss
    errors = _section(out, "ERRORS")
    assert sum("ERROR at setup of topics[bad-" in line for line in errors) == 5  # each error in full
    summary = _section(out, "short test summary info")
    assert [line for line in summary if line.startswith("FAILED")] == []
    assert sum(line.startswith("ERROR") for line in summary) == 5
    testcases = ET.parse(pytester.path / "junit.xml").getroot().iter("testcase")
    failures = [f for case in testcases for f in case.iter("failure")]
    assert len(failures) == 25 and all(f.get("message", "").startswith("miss: expected") for f in failures)


def test_the_folded_lines_are_the_same_serially_and_under_xdist(pytester, server):
    distill_project(pytester, server, MODELS)
    serial = _section(pytester.runpytest(*ARGS).stdout.str(), "distill misses")
    assert _section(pytester.runpytest(*ARGS, "-n", "2").stdout.str(), "distill misses") == serial


@pytest.mark.parametrize("shown", [["-v"], ["--distill-show-misses=all"]])
def test_all_misses_in_full_with_v_or_all(pytester, server, shown):
    distill_project(pytester, server, MODELS)
    result = pytester.runpytest(*ARGS, *shown)
    out = result.stdout.str()
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert _section(out, "distill misses") == []
    assert (
        len(
            [
                line
                for line in _section(out, "FAILURES")
                if re.match(r"_+ topics\[bad-\d+\] \(test.jsonl:\d+\) _+$", line)
            ]
        )
        == 25
    )
    assert sum(line.startswith("FAILED") for line in _section(out, "short test summary info")) == 25


def test_none_or_a_count_of_misses(pytester, server):
    distill_project(pytester, server, MODELS)
    none = pytester.runpytest(*ARGS, "--distill-show-misses=none", "--distill-report=out")
    assert none.ret == pytest.ExitCode.TESTS_FAILED
    assert _section(none.stdout.str(), "distill misses") == [
        f"… and 25 misses not listed: see {pytester.path / 'out' / 'results.json'} or --distill-show-misses=all"
    ]
    three = _section(pytester.runpytest(*ARGS, "--distill-show-misses=3", "-v").stdout.str(), "distill misses")
    assert len(three) == 4 and three[-1].startswith("… and 22 more")  # an explicit count wins over -v


def test_plain_tests_failures_are_never_folded(pytester):
    pytester.makepyfile(test_plain="def test_fails():\n    assert 1 == 2\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    assert "= FAILURES =" in result.stdout.str() and "distill misses" not in result.stdout.str()


def _record(example_id, explanation="expected 'a', got 'b'", **values):
    return Record(
        "s", "s", "m", example_id, 1, "miss", nodeid=f"s/t.jsonl::s[m-{example_id}]", explanation=explanation, **values
    )


def test_miss_lines_are_ordered_shortened_and_counted():
    records = [_record(f"{i:04d}") for i in (3, 1, 2)]
    assert miss_lines(records, 2, "results.json") == [
        "FAILED s/t.jsonl::s[m-0001] - miss: expected 'a', got 'b'",
        "FAILED s/t.jsonl::s[m-0002] - miss: expected 'a', got 'b'",
        "… and 1 more: see results.json or --distill-show-misses=all",
    ]
    assert miss_lines(records, 5, "x") == [miss_line(r) for r in sorted(records, key=lambda r: r.example_id)]
    long = miss_line(_record("0001", "x" * 500))
    assert len(long) < 300 and long.endswith("…")
    assert miss_line(_record("0001", "", expected="a", output="b")).endswith("miss: expected 'a', got 'b'")
