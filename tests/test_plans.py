"""Model plans (distill.toml `models`, inherited from folders above; @groups), repeats per
model (`repeat`, `deterministic`, --repeat), serial and -n 2."""

from __future__ import annotations

import json

import pytest

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, distill_project
from helpers.suites import TOPIC_ROWS, summary_row, write_suite

ROWS = [{"question": q, "answer": a} for q, a in TOPIC_ROWS[:4]]


def _ids(result) -> list[str]:
    return [line.split("::")[1] for line in result.outlines if "::" in line]


def _plan_project(pytester, server: FakeChatServer, **own_a: object) -> None:
    """suites/alpha plans its own model + @pair; suites/beta inherits suites/distill.toml."""
    distill_project(
        pytester,
        server,
        {
            "own-a": {"spec": "correct", **own_a},
            "own-b": "wrong",
            "front-1": {"spec": "even", "repeat": 3},
            "front-2": {"spec": "correct", "repeat": 3},
        },
        suites={"alpha": 'models = ["own-a", "@pair"]\n', "beta": None},
        extra_models='[groups]\npair = ["front-1", "front-2"]\n',
    )
    (pytester.path / "suites" / "distill.toml").write_text('models = ["own-b", "@pair"]\n[gate]\nmin_pass_rate = 0.1\n')


def test_each_suite_runs_its_plan_and_frontier_entries_three_times(pytester):
    with FakeChatServer(ROWS) as server:
        _plan_project(pytester, server)
        result = pytester.runpytest("suites", "--collect-only", "-q", "--limit=1")
    ids = _ids(result)
    assert ids == [
        "alpha[own-a-0001]",
        "alpha[front-1-r1-0001]",
        "alpha[front-1-r2-0001]",
        "alpha[front-1-r3-0001]",
        "alpha[front-2-r1-0001]",
        "alpha[front-2-r2-0001]",
        "alpha[front-2-r3-0001]",
        "beta[own-b-0001]",
        "beta[front-1-r1-0001]",
        "beta[front-1-r2-0001]",
        "beta[front-1-r3-0001]",
        "beta[front-2-r1-0001]",
        "beta[front-2-r2-0001]",
        "beta[front-2-r3-0001]",
    ]
    with FakeChatServer(ROWS) as server:
        _plan_project(pytester, server)
        plain = pytester.runpytest("suites", "--collect-only", "--limit=1")
    assert [line for line in plain.outlines if line.startswith("distill plan:")] == [
        "distill plan: alpha: own-a x1, front-1 x3, front-2 x3",
        "distill plan: beta: own-b x1, front-1 x3, front-2 x3",
    ]


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_plans_run_and_the_table_marks_single_runs_at_temperature_zero(pytester, args):
    with FakeChatServer(ROWS) as server:
        _plan_project(pytester, server, deterministic=True)
        result = pytester.runpytest("suites", "-p", "no:randomly", "--distill-report=out", *args)
    text = result.stdout.str()
    assert "distill plan: alpha: own-a x1, front-1 x3, front-2 x3" in text
    assert "distill plan: beta: own-b x1, front-1 x3, front-2 x3" in text
    assert "1× t=0" in " ".join(summary_row(text, "alpha", "own-a"))
    assert "3×" in " ".join(summary_row(text, "alpha", "front-1"))
    # the inherited gate applies to beta; alpha inherits it too (nearest file per key)
    assert "gate passed: beta x own-b" not in text and "gate FAILED: beta x own-b" in text
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["run"]["models"] == ["own-a", "front-1", "front-2", "own-b"]
    reps = {(s["suite"], s["model"]): s["repetitions"] for s in doc["summaries"]}
    assert reps == {
        ("alpha", "own-a"): 1,
        ("alpha", "front-1"): 3,
        ("alpha", "front-2"): 3,
        ("beta", "own-b"): 1,
        ("beta", "front-1"): 3,
        ("beta", "front-2"): 3,
    }


def test_model_on_the_command_line_replaces_the_plan_and_repeat_forces_a_count(pytester):
    with FakeChatServer(ROWS) as server:
        _plan_project(pytester, server)
        result = pytester.runpytest("suites", "--collect-only", "-q", "--limit=1", "--model=own-a", "--repeat=2")
    assert _ids(result) == [
        "alpha[own-a-r1-0001]",
        "alpha[own-a-r2-0001]",
        "beta[own-a-r1-0001]",
        "beta[own-a-r2-0001]",
    ]


def test_a_group_on_the_command_line_expands(pytester):
    with FakeChatServer(ROWS) as server:
        _plan_project(pytester, server)
        result = pytester.runpytest("suites/beta", "--collect-only", "-q", "--limit=1", "--model=@pair", "--repeat=1")
    assert _ids(result) == ["beta[front-1-0001]", "beta[front-2-0001]"]


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_a_deterministic_model_repeated_anyway_reports_its_flips(pytester, args):
    """`deterministic = true` is a claim: --repeat 3 measures it like any model."""
    calls: dict[str, int] = {}

    def flaky(body):  # the first answer to a question is right, later ones wrong
        question = body["messages"][-1]["content"]
        calls[question] = calls.get(question, 0) + 1
        expected = next(r["answer"] for r in ROWS if r["question"] in question)
        return expected if calls[question] == 1 else "food" if expected != "food" else "music"

    with FakeChatServer(ROWS, responder=flaky) as server:
        distill_project(pytester, server, {"det": {"spec": "x", "deterministic": True}})
        result = pytester.runpytest("suites", "-p", "no:randomly", "--model=det", "--repeat=3", *args)
    row = summary_row(result.stdout.str(), "topics", "det")
    header = next(line for line in result.outlines if line.startswith("suite") and "flips" in line).split()
    assert row[header.index("flips") - 1] == "4"  # every example flipped ("pass rate" is two header words)


def test_unknown_model_or_group_in_a_plan_names_the_file_and_field(pytester):
    with FakeChatServer(ROWS) as server:
        distill_project(pytester, server, {"own-a": "correct"}, suites={"alpha": 'models = ["own-a", "@nope"]\n'})
        result = pytester.runpytest("suites", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    lines = [line for line in result.errlines if "pytest-distill" in line]
    assert len(lines) == 1
    assert "alpha/distill.toml:1: field 'models': unknown model group '@nope'" in lines[0]
    assert "Traceback" not in result.stderr.str()


def test_a_bad_group_table_is_one_line_naming_the_file_and_line(pytester):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models='[groups]\nfrontier = "gpt-5-nano"\n')
    result = pytester.runpytest("suites", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "models.toml:2: [groups] field 'frontier'" in result.stderr.str()


def test_deterministic_with_repeat_is_a_contradiction(pytester):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models='["smollm2-135m"]\ndeterministic = true\nrepeat = 3\n')
    result = pytester.runpytest("suites", "-q")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "deterministic = true and repeat = 3 contradict" in result.stderr.str()


def test_a_folder_with_only_distill_toml_is_a_settings_folder_not_a_broken_suite(pytester):
    write_suite(pytester.path / "suites" / "topics")
    (pytester.path / "suites" / "distill.toml").write_text('models = ["smollm2-135m"]\n')
    result = pytester.runpytest("suites", "--collect-only", "-q", "--limit=1")
    assert _ids(result) == ["topics[smollm2-135m-0001]"]


def test_builtin_frontier_group_and_repeats():
    from pytest_distill.models.registry import Registry

    registry = Registry()
    frontier = registry.expand(["@frontier"])
    assert len(frontier) == 10
    assert all(registry.get(m).repeat == 3 and not registry.get(m).self_hosted for m in frontier)
    assert registry.get("smollm2-135m").deterministic and registry.get("smollm2-135m").runs_per_example == 1
