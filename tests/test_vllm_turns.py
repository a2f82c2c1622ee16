"""Several managed servers, one at a time (runtime/rotation.py, plugin/phases.py): two managed
fake servers (benchmarks/fake_server.py standing in for `vllm serve`) take turns, serially and
under -n 2, with the same records; their lifetimes never overlap; a server that fails to start
makes its own items errors, never a hang. No vLLM, no GPU."""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import pytest

from pytest_distill.models.registry import ModelEntry
from pytest_distill.runtime.rotation import FAILED, STOPPED, UP, Board, Conductor, Follower
from pytest_distill.runtime.servers import ServerInfo, ServerStartError

from helpers.suites import write_suite

TIMEOUT_S = 120  # a run that hangs fails the test instead


def _model_dir(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / "weights" / name
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text("{}")
    return folder


def _models_toml(tmp_path: Path, fake_python: Path, serve_env: dict[str, dict[str, str]] | None = None) -> str:
    body = ""
    for name in ("bf16", "fp8"):
        env = (serve_env or {}).get(name)
        body += (
            f'["{name}"]\nprovider = "vllm"\nmodel = "{_model_dir(tmp_path, name)}"\npython = "{fake_python}"\n'
            "startup_timeout_s = 20\nmax_retries = 0\nmax_concurrency = 4\n"
        )
        if env:
            body += "serve_env = { " + ", ".join(f'{k} = "{v}"' for k, v in env.items()) + " }\n"
    return body


def _lifetimes(path: Path) -> list[tuple[str, float, float]]:
    """(model folder name, start, stop) per server process, from FAKE_LIFE_LOG."""
    starts: dict[str, tuple[str, float]] = {}
    stops: dict[str, float] = {}
    for line in path.read_text().splitlines():
        what, pid, model, when = line.split()
        if what == "start":
            starts[pid] = (Path(model).name, float(when))
        else:
            stops[pid] = float(when)
    assert set(stops) == set(starts), "every server started was stopped"
    return sorted((model, start, stops[pid]) for pid, (model, start) in starts.items())


def _never_overlap(lives: list[tuple[str, float, float]]) -> None:
    ordered = sorted(lives, key=lambda life: life[1])
    for before, after in itertools.pairwise(ordered):
        assert before[2] < after[1], f"{before[0]} was still up when {after[0]} started"


def _records(pytester, report: str) -> list[tuple[Any, ...]]:
    document = json.loads((pytester.path / report / "results.json").read_text())
    return sorted((r["model"], r["example_id"], r["outcome"], r.get("output")) for r in document["records"])


def _counts(pytester, report: str) -> list[tuple[Any, ...]]:
    document = json.loads((pytester.path / report / "results.json").read_text())
    keys = ("suite", "model", "n", "passed", "missed", "errors")
    return sorted(tuple(s[k] for k in keys) for s in document["summaries"])


def _run(pytester, *args: str):
    return pytester.runpytest_subprocess(
        "suites", "--model=bf16", "--model=fp8", "-p", "no:randomly", "-p", "no:cacheprovider", *args, timeout=TIMEOUT_S
    )


def test_two_managed_servers_take_turns_serial_and_under_xdist_with_the_same_records(
    pytester, fake_python, tmp_path, monkeypatch
):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(tmp_path, fake_python))
    life = {"serial": pytester.path / "life-serial", "xdist": pytester.path / "life-xdist"}
    outputs = {}
    for how, extra in {"serial": (), "xdist": ("-n", "2")}.items():
        monkeypatch.setenv("FAKE_LIFE_LOG", str(life[how]))
        result = _run(pytester, f"--distill-report={how}", *extra)
        result.assert_outcomes(passed=4, failed=8, errors=0)  # the fake answers the first label
        out = result.stdout.str()
        assert "managed servers run one at a time, in this order: 'bf16', 'fp8'" in out
        assert "stopped the server for 'bf16'" in out
        lives = _lifetimes(life[how])
        assert [model for model, _, _ in lives] == ["bf16", "fp8"]  # each started once
        _never_overlap(lives)
        outputs[how] = out
    assert _records(pytester, "serial") == _records(pytester, "xdist")
    assert len(_records(pytester, "serial")) == 12
    assert (
        _counts(pytester, "serial")
        == _counts(pytester, "xdist")
        == [
            ("topics", "bf16", 6, 2, 4, 0),
            ("topics", "fp8", 6, 2, 4, 0),
        ]
    )

    def table(out: str) -> list[str]:  # the terminal table's rows without the timing and rate columns
        rows = [line.split() for line in out.split("pytest-distill ===", 1)[1].splitlines()]
        return [" ".join(row[:8]) for row in rows if row[:1] == ["topics"] and len(row) > 8]

    assert table(outputs["serial"]) == table(outputs["xdist"]) and len(table(outputs["serial"])) == 2


@pytest.mark.parametrize(
    "xdist_args", [[], ["-n", "2"], ["-n", "2", "--dist", "worksteal"]], ids=["serial", "load", "worksteal"]
)
def test_each_turn_serves_only_its_own_model(pytester, fake_python, tmp_path, monkeypatch, xdist_args):
    """The requests each server answered were its own model's: prefetch stays within the turn."""
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(tmp_path, fake_python))
    bodies = pytester.path / "bodies"
    monkeypatch.setenv("FAKE_BODIES", str(bodies))
    monkeypatch.setenv("FAKE_DELAY_S", "0.05")
    result = _run(pytester, *xdist_args)
    result.assert_outcomes(passed=4, failed=8, errors=0)
    served = [Path(json.loads(line)["model"]).name for line in bodies.read_text().splitlines()]
    # the bodies file is appended to in time order: all of one model's requests, then the other's
    first = served.count("bf16")
    assert served == ["bf16"] * first + ["fp8"] * (len(served) - first)
    if "worksteal" in xdist_args:  # an item stolen after its worker prefetched it is asked twice
        assert first >= 6 and len(served) - first >= 6
    else:
        assert first == 6 and len(served) == 12


@pytest.mark.parametrize("xdist_args", [[], ["-n", "2"]], ids=["serial", "xdist"])
def test_a_server_that_fails_to_start_in_its_turn_errors_its_items_only(
    pytester, fake_python, tmp_path, monkeypatch, xdist_args
):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(tmp_path, fake_python, {"fp8": {"FAKE_MODE": "crash"}}))
    monkeypatch.setenv("FAKE_LIFE_LOG", str(pytester.path / "life"))
    result = _run(pytester, "--distill-report=out", *xdist_args)
    result.assert_outcomes(passed=2, failed=4, errors=6)  # bf16 evaluated; fp8's six items are errors
    out = result.stdout.str()
    assert "the vLLM server for 'fp8' exited with code 1 during start-up" in out
    assert "RuntimeError: fake engine core failed to start" in out  # the log's tail, printed once
    assert "(the items of 'fp8' are errors; the run goes on)" in out
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    errors = [r for r in document["records"] if r["model"] == "fp8"]
    assert len(errors) == 6 and all(r["outcome"] == "error" for r in errors)
    assert all("'fp8' exited with code 1 during start-up" in r["error"] and "\n" not in r["error"] for r in errors)
    assert [model for model, _, _ in _lifetimes(pytester.path / "life")] == ["bf16"]


def test_plain_tests_per_model_take_the_models_turn(pytester, fake_python, tmp_path, monkeypatch):
    """A plain test over `distill_model_name` belongs to its model's turn, beside the suite items."""
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(tmp_path, fake_python))
    pytester.makepyfile(
        test_plain=(
            "def test_says_something(distill_model, distill_model_name):\n"
            "    assert distill_model(distill_model_name).respond('hello').text\n"
        )
    )
    monkeypatch.setenv("FAKE_LIFE_LOG", str(pytester.path / "life"))
    result = pytester.runpytest_subprocess(
        "suites", "test_plain.py", "--model=bf16", "--model=fp8", "-p", "no:randomly", "-v", timeout=TIMEOUT_S
    )
    result.assert_outcomes(passed=6, failed=8, errors=0)
    ran = [line.split()[0] for line in result.stdout.lines if " PASSED" in line or " FAILED" in line]
    models = ["bf16" if "bf16" in nodeid else "fp8" for nodeid in ran]
    assert models == ["bf16"] * 7 + ["fp8"] * 7  # each model's suite items and its plain test, together
    assert [model for model, _, _ in _lifetimes(pytester.path / "life")] == ["bf16", "fp8"]


def test_loadfile_is_refused_in_one_line(pytester, fake_python, tmp_path):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(tmp_path, fake_python))
    result = _run(pytester, "-n", "2", "--dist", "loadfile")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    assert "run one at a time; under -n that needs --dist load (the default) or worksteal" in result.stderr.str()


def test_one_managed_server_starts_at_session_start_as_before(pytester, fake_python, tmp_path, monkeypatch):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(tmp_path, fake_python))
    result = pytester.runpytest_subprocess("suites", "--model=bf16", "-p", "no:randomly", timeout=TIMEOUT_S)
    result.assert_outcomes(passed=2, failed=4)
    assert "one at a time" not in result.stdout.str()


# --- the conductor and the follower, without processes ----------------------------------


class FakePool:
    """A ServerPool's start_one/stop_one/fail, recording what ran when."""

    def __init__(self, failing: set[str] = frozenset()) -> None:  # type: ignore[assignment]
        self.events: list[str] = []
        self.running: dict[str, list[ServerInfo]] = {}
        self.failing = failing

    def start_one(self, entry: ModelEntry, log_dir: Path, progress: Any = None) -> None:
        assert not self.running, f"{entry.name} started while {list(self.running)} runs"
        if entry.name in self.failing:
            raise ServerStartError(f"the vLLM server for '{entry.name}' exited with code 1; log: x\nlast lines")
        self.events.append(f"start {entry.name}")
        self.running[entry.name] = [
            ServerInfo(name=entry.name, kind="vLLM", base_url="http://h:1/v1", log_path="", status_path="", pid=7)
        ]

    def stop_one(self, name: str) -> int:
        self.events.append(f"stop {name}")
        self.running.pop(name)
        return 7

    def replicas_of(self, name: str) -> list[ServerInfo]:
        return self.running.get(name, [])

    def fail(self, name: str, reason: str) -> None:
        self.events.append(f"fail {name}")


def _entries(*names: str) -> list[ModelEntry]:
    return [ModelEntry(name=n, provider="vllm", model=n, source="/p/models.toml") for n in names]


def _conductor(pool: FakePool, board: Board, *names: str) -> Conductor:
    return Conductor(_entries(*names), pool, lambda: Path("/tmp"), board)  # type: ignore[arg-type]


def test_turns_start_after_the_last_item_of_the_one_before(tmp_path):
    pool, board = FakePool(), Board(tmp_path)
    conductor = _conductor(pool, board, "a", "b", "c")
    conductor.collected({"t1": "a", "t2": "a", "t3": "b", "other": "api-model"})  # no item of 'c'
    assert pool.events == ["start a"] and board.read()["models"]["a"]["state"] == UP
    conductor.finished_item("other")
    conductor.finished_item("t1")
    conductor.finished_item("t1")  # a second report of the same item counts once
    assert pool.events == ["start a"]
    conductor.finished_item("t2")
    assert pool.events == ["start a", "stop a", "start b"]
    assert board.read()["models"]["a"]["state"] == STOPPED and board.read()["models"]["b"]["state"] == UP
    conductor.finished_item("t3")
    assert pool.events[-1] == "stop b" and board.read()["current"] is None  # 'c' has nothing to run


def test_a_failed_start_gives_the_next_model_its_turn(tmp_path):
    pool, board = FakePool(failing={"a"}), Board(tmp_path)
    warned: list[str] = []
    conductor = Conductor(_entries("a", "b"), pool, lambda: tmp_path, board, warn=warned.append)  # type: ignore[arg-type]
    conductor.collected({"t1": "a", "t2": "b"})
    assert pool.events == ["fail a", "start b"]
    state = board.read()["models"]["a"]
    assert state["state"] == FAILED and state["error"] == "the vLLM server for 'a' exited with code 1; log: x"
    assert "last lines" in warned[0]  # the whole message, once
    infos, reason = Follower(board, ["a", "b"], stall_s=5).wait_for("a")
    assert infos == [] and reason == state["error"]
    infos, reason = Follower(board, ["a", "b"], stall_s=5).wait_for("b")
    assert reason is None and [i.name for i in infos] == ["b"]


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def test_a_follower_gives_up_when_nothing_moves_the_run_ends_or_the_controller_is_gone(tmp_path):
    board = Board(tmp_path)
    clock = Clock()
    board.publish({"models": {"a": {"state": "up", "servers": []}, "b": {"state": "waiting"}}, "progress": clock.now})
    follower = Follower(board, ["a", "b"], stall_s=30, controller_pid=os.getpid(), clock=clock, sleep=clock.sleep)
    infos, reason = follower.wait_for("b")
    assert infos == [] and reason is not None
    assert "nothing moved for 30 s" in reason and "after the items of 'a'" in reason
    assert 30 <= clock.now - 1000 <= 31
    board.publish({"models": {"b": {"state": "waiting"}}, "closed": True})
    assert follower.wait_for("b")[1] == "the run ended before the server for 'b' was started"
    board.publish({"models": {"b": {"state": "waiting"}}, "progress": clock.now})
    gone = Follower(board, ["a", "b"], stall_s=30, controller_pid=2**22 + 12345, clock=clock, sleep=clock.sleep)
    assert "controller (pid 4206649) is gone" in (gone.wait_for("b")[1] or "")
    (tmp_path / "servers.json").unlink()  # the controller removed the run folder: the run is over
    assert "the run ended" in (follower.wait_for("b")[1] or "")
