"""The vllm provider and server management, without vLLM: a fake `vllm serve`.

The fake interpreter is a shell script standing in for the vLLM venv's python: it
answers the plugin's "is vllm installed" probe and runs benchmarks/fake_server.py with
the launcher's command line, so start-up faults, mid-run death, xdist hand-over and
process-group clean-up are all tested in seconds.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
import time
from pathlib import Path

import pytest

from pytest_distill.core.errors import ConfigError
from pytest_distill.models.base import OutputConstraint, Request
from pytest_distill.models.providers.vllm import VLLMProvider, check_entry, plan_server
from pytest_distill.models.registry import ModelEntry
from pytest_distill.runtime.memory import process_tree_rss
from pytest_distill.runtime.servers import (
    ManagedServer,
    ServerInfo,
    ServerPool,
    _group_alive,
    log_tail,
)

from helpers.fake_vllm import FAKE_SERVER
from helpers.suites import summary_row, write_suite


def _entry(model_dir: Path, python: Path | None = None, **fields) -> ModelEntry:
    return ModelEntry(name="m", provider="vllm", model=str(model_dir), python=str(python) if python else None, **fields)


def _models_toml(model_dir: Path, python: Path, extra: str = "") -> str:
    return (
        f'[fake]\nprovider = "vllm"\nmodel = "{model_dir}"\npython = "{python}"\n'
        f"startup_timeout_s = 20\nmax_retries = 0\n{extra}"
    )


def _pids(pidfile: Path) -> list[int]:
    return [int(x) for x in pidfile.read_text().split()] if pidfile.exists() else []


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    state = Path(f"/proc/{pid}/stat")
    try:
        return state.read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


# --- building the command -----------------------------------------------------


def test_plan_server_builds_the_launch_command(model_dir, fake_python, tmp_path):
    entry = _entry(
        model_dir,
        fake_python,
        serve_args=["--dtype", "float32", "--chat-template", "pkg:pytest_distill/templates/chatml-hermes-tools.jinja"],
    )
    server = plan_server(entry)
    command = server.command
    assert command[0] == str(fake_python)
    assert command[1].endswith("pytest_distill/runtime/scripts/vllm_launch.py")
    assert command[2:4] == ["serve", str(model_dir)]
    assert command[command.index("--served-model-name") + 1] == str(model_dir)
    template = command[command.index("--chat-template") + 1]
    assert template.endswith("chatml-hermes-tools.jinja") and Path(template).is_file()
    port = int(command[command.index("--port") + 1])
    assert server.base_url == f"http://127.0.0.1:{port}/v1" and server.health_url.endswith("/health")
    assert server.env["VLLM_CPU_NUM_OF_RESERVED_CPU"] == "0" and server.env["HF_HUB_OFFLINE"] == "1"
    assert ManagedServer.from_plan("m", server, tmp_path).log_path == tmp_path / "vllm-m.log"


def test_the_provider_plans_its_server_only_without_base_url(model_dir, fake_python):
    pool = ServerPool()
    assert pool.needs_server(_entry(model_dir, fake_python))
    assert not pool.needs_server(_entry(model_dir, fake_python, base_url="http://127.0.0.1:9/v1"))
    assert not pool.needs_server(
        ModelEntry(name="o", provider="openai-compatible", model="x", base_url="http://127.0.0.1:9/v1")
    )


def test_the_running_server_is_explicit_state_handed_to_workers_as_plain_data(model_dir, tmp_path):
    info = ServerInfo(
        name="m",
        kind="vLLM",
        base_url="http://127.0.0.1:1234/v1",
        log_path=str(tmp_path / "l"),
        status_path=str(tmp_path / "s"),
        pid=1,
    )
    from pytest_distill.runtime.servers import from_worker_input, worker_input

    data = worker_input(ServerPool({"m": info}))
    assert json.loads(json.dumps(data)) == data  # crosses execnet as plain data
    worker_pool = from_worker_input(data)
    attached = worker_pool.provider_for(_entry(model_dir))
    assert attached.server == info and attached.default_base_url == "http://127.0.0.1:1234/v1"
    attached.check()  # a worker never re-checks (or re-binds the port of) the controller's server
    # nothing is global: a provider built without the pool knows no server
    assert VLLMProvider(_entry(model_dir)).default_base_url is None
    worker_pool.stop()  # a worker stops nothing it did not start
    assert worker_pool.get("m") == info


def test_python_comes_from_the_entry_then_the_environment(model_dir, fake_python, monkeypatch, tmp_path):
    monkeypatch.setenv("DISTILL_VLLM_PYTHON", str(fake_python.parent.parent))  # a venv folder works too
    assert plan_server(_entry(model_dir)).command[0] == str(fake_python)
    monkeypatch.delenv("DISTILL_VLLM_PYTHON")
    assert plan_server(_entry(model_dir)).command[0] == sys.executable


def test_structured_outputs_choice_and_tool_choice_only_with_tools(model_dir):
    entry = _entry(model_dir, params={"tool_choice": "required"})
    provider = VLLMProvider(entry)
    classify = Request(
        messages=({"role": "user", "content": "hi"},), constraint=OutputConstraint(kind="choice", choices=("a", "b"))
    )
    body, mode = provider.build_body(classify)
    assert mode == "structured_outputs_choice"
    assert body["extra_body"] == {"structured_outputs": {"choice": ["a", "b"]}}
    tool = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {}}}}
    body, _ = provider.build_body(
        Request(messages=({"role": "user", "content": "hi"},), tools=(tool,), tool_choice="auto")
    )
    assert body["extra_body"]["tool_choice"] == "required"


def test_describe_leaves_out_the_port_so_cache_keys_survive_restarts(model_dir):
    described = VLLMProvider(_entry(model_dir, serve_args=["--dtype", "float32"])).describe()
    assert described == {"provider": "vllm", "model": str(model_dir), "serve_args": ["--dtype", "float32"]}


# --- checks before start-up ---------------------------------------------------


def test_missing_model_folder_is_one_line(fake_python, tmp_path):
    with pytest.raises(ConfigError, match=r"model folder not found: .*nowhere"):
        check_entry(_entry(tmp_path / "nowhere", fake_python))


def test_port_in_use_is_one_line(model_dir, fake_python):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(ConfigError, match=f"port {port} on 127.0.0.1 is already in use"):
            check_entry(_entry(model_dir, fake_python, serve_args=["--port", str(port)]))


def test_missing_interpreter_or_vllm_is_one_line(model_dir, tmp_path):
    with pytest.raises(ConfigError, match=r"interpreter .* does not exist"):
        check_entry(_entry(model_dir, tmp_path / "no-python"))
    with pytest.raises(ConfigError, match="vLLM is not installed for"):
        check_entry(_entry(model_dir, Path(sys.executable)))


def test_log_tail_keeps_the_last_state_of_progress_lines(tmp_path):
    log = tmp_path / "x.log"
    log.write_text("one\nbar 10%\rbar 100%\n\nthree\n")
    assert log_tail(log, lines=2) == "bar 100%\nthree"
    assert log_tail(tmp_path / "missing.log") == ""


def test_process_tree_rss_counts_this_process():
    assert process_tree_rss(os.getpid()) > 10_000_000


# --- through the plugin, with the fake server ----------------------------------


def _run(pytester, model_dir, fake_python, *args, extra="", env=None, **kw):
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(model_dir, fake_python, extra))
    for key, value in (env or {}).items():
        pytester._monkeypatch.setenv(key, value)
    return pytester.runpytest_subprocess("suites", "--model=fake", "-p", "no:randomly", *args, **kw)


def test_plugin_starts_the_server_evaluates_and_stops_it(pytester, model_dir, fake_python):
    pidfile = pytester.path / "pids"
    result = _run(pytester, model_dir, fake_python, env={"FAKE_PIDFILE": str(pidfile)})
    out = result.stdout.str()
    assert "starting the vLLM server for 'fake'" in out and "ready in" in out
    result.assert_outcomes(passed=2, failed=4)  # the fake answers the first label: "sports"
    assert "fake" in out and "err" in out  # the summary table
    pids = _pids(pidfile)
    assert pids and all(_gone(p) for p in pids)


def test_plugin_under_xdist_starts_one_server_and_hands_it_to_workers(pytester, model_dir, fake_python):
    pidfile = pytester.path / "pids"
    result = _run(pytester, model_dir, fake_python, "-n", "2", env={"FAKE_PIDFILE": str(pidfile)})
    result.assert_outcomes(passed=2, failed=4)
    assert len(_pids(pidfile)) == 1  # started once, by the controller
    assert all(_gone(p) for p in _pids(pidfile))


@pytest.mark.parametrize(
    ("mode", "message"),
    [
        ("reject", "exited with code 2 during start-up"),
        ("crash", "exited with code 1 during start-up"),
        ("hang", "did not become healthy"),
    ],
)
def test_start_up_failures_are_one_line_with_the_log_tail(pytester, model_dir, fake_python, mode, message):
    pidfile = pytester.path / "pids"
    extra = (
        'startup_timeout_s = 3\nserve_args = ["--bogus-flag"]\n'
        if mode == "hang"
        else 'serve_args = ["--bogus-flag"]\n'
    )
    models = _models_toml(model_dir, fake_python).replace("startup_timeout_s = 20\n", "") + extra
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=models)
    pytester._monkeypatch.setenv("FAKE_MODE", mode)
    pytester._monkeypatch.setenv("FAKE_PIDFILE", str(pidfile))
    result = pytester.runpytest_subprocess("suites", "--model=fake")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    first = next(line for line in err.splitlines() if line.startswith("ERROR: pytest-distill:"))
    assert message in first and "log:" in first
    assert "--- last lines of the log ---" in err
    assert "fake server:" in err  # the tail itself
    if mode == "reject":
        assert "unrecognized arguments: --bogus-flag" in err
    assert "Traceback" not in err
    pids = _pids(pidfile)
    assert pids and all(_gone(p) for p in pids), pids  # the hang child too: the group was stopped


def test_port_in_use_stops_the_session_before_starting(pytester, model_dir, fake_python):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run(pytester, model_dir, fake_python, extra=f'serve_args = ["--port", "{port}"]\n')
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"ERROR: pytest-distill: model 'fake': port {port} on 127.0.0.1 is already in use*"])


def test_server_dying_mid_run_errors_the_remaining_items(pytester, model_dir, fake_python):
    pidfile = pytester.path / "pids"
    result = _run(
        pytester,
        model_dir,
        fake_python,
        "--distill-models=models.toml",
        "-p",
        "no:cacheprovider",
        extra="max_concurrency = 1\n",
        env={"FAKE_DIE_AFTER": "2", "FAKE_PIDFILE": str(pidfile)},
    )
    outcomes = result.parseoutcomes()
    assert outcomes.get("errors", 0) + outcomes.get("error", 0) == 4
    out = result.stdout.str()
    assert "vLLM server for 'fake' exited (code 3)" in out
    assert "fake server: dying on request 3" in out  # the log tail
    assert all(_gone(p) for p in _pids(pidfile))


def test_ctrl_c_during_the_run_stops_the_server(pytester, model_dir, fake_python):
    pidfile = pytester.path / "pids"
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(".toml", models=_models_toml(model_dir, fake_python, "max_concurrency = 1\n"))
    env = {**os.environ, "FAKE_PIDFILE": str(pidfile), "FAKE_DELAY_S": "30"}
    import subprocess

    proc = subprocess.Popen(
        [sys.executable, "-m", "pytest", "suites", "--model=fake", "-p", "no:cacheprovider"],
        cwd=pytester.path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        # A shell that runs a command in the background (`cmd &`, as CI scripts may) starts
        # it with SIGINT ignored, and children inherit that: Python then installs no
        # KeyboardInterrupt handler. A terminal's Ctrl-C reaches a process with the default.
        preexec_fn=_default_sigint,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and not _pids(pidfile):
        time.sleep(0.2)
    time.sleep(2)  # the server is up and the first request is in flight
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=60)[0].decode()
    assert "KeyboardInterrupt" in output
    pids = _pids(pidfile)
    assert pids and all(_gone(p) for p in pids)


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_server_info_reports_exit_from_the_status_file(tmp_path):
    log = tmp_path / "s.log"
    log.write_text("boom\n")
    info = ServerInfo(
        name="m",
        kind="vLLM",
        base_url="http://x/v1",
        log_path=str(log),
        status_path=str(tmp_path / "s.exit.json"),
        pid=1,
    )
    assert not info.exited()
    (tmp_path / "s.exit.json").write_text(json.dumps({"returncode": -9}))
    assert info.exited() and "exited (signal 9)" in info.exit_message() and "boom" in info.exit_message()
    assert not _group_alive(2**22 + 12345)


def _row(output: str, suite: str = "topics", model: str = "fake") -> list[str]:
    return summary_row(output, suite, model)


def test_prefetched_requests_of_items_that_never_ran_are_not_counted(pytester, model_dir, fake_python):
    """-x, -k and --lf: only the items that ran have records, though every request was queued."""
    env = {"FAKE_DELAY_S": "0.2"}
    stopped = _run(pytester, model_dir, fake_python, "-x", env=env)
    stopped.assert_outcomes(passed=1, failed=1)  # sports (pass), then weather (miss) stops the run
    assert _row(stopped.stdout.str())[2:6] == ["2", "1", "1", "0"]  # n, pass, miss, err

    selected = pytester.runpytest_subprocess("suites", "--model=fake", "-k", "0003 or 0004")
    selected.assert_outcomes(failed=2)
    assert _row(selected.stdout.str())[2:6] == ["2", "0", "2", "0"]

    pytester.runpytest_subprocess("suites", "--model=fake")  # all six, for --lf to remember
    last_failed = pytester.runpytest_subprocess("suites", "--model=fake", "--lf")
    last_failed.assert_outcomes(failed=4)
    assert _row(last_failed.stdout.str())[2:6] == ["4", "0", "4", "0"]


def test_bench_reports_rate_latency_ttft_and_prices_later_runs_with_it(pytester, model_dir, fake_python):
    result = _run(
        pytester,
        model_dir,
        fake_python,
        "--distill-bench",
        "--distill-bench-requests=40",
        "--distill-bench-concurrency=4",
        "--distill-bench-warmup=4",
        env={"FAKE_DELAY_S": "0.05"},
    )
    assert result.ret == 0
    out = result.stdout.str()
    assert "bench fake: 40 requests at concurrency 4" in out
    header = next(line for line in out.splitlines() if line.startswith("model "))
    for column in ("req/s", "out tok/s", "p50", "p95", "p99", "TTFT p50", "TTFT p99", "server RSS", "$/1M req"):
        assert column in header
    cells = _row(out, "fake", "4")  # model, conc, requests, errors, ...
    assert cells[2:4] == ["40", "0"] and float(cells[5]) > 0
    assert "GiB" in out  # the fake server's resident memory
    later = pytester.runpytest_subprocess("suites", "--model=fake")
    assert "sustained " in later.stdout.str() and "at c=4 (--distill-bench, " in later.stdout.str()


def test_bench_refuses_xdist(pytester, model_dir, fake_python):
    result = _run(pytester, model_dir, fake_python, "--distill-bench", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["ERROR: pytest-distill: --distill-bench measures one client*without -n"])


def test_with_base_url_the_plugin_attaches_and_starts_nothing(pytester, model_dir, tmp_path):
    from pytest_distill.models.providers.vllm import free_port

    port = free_port()
    running = ManagedServer(
        name="outside",
        kind="fake",
        log_path=tmp_path / "outside.log",
        startup_timeout_s=30,
        command=[sys.executable, str(FAKE_SERVER), "serve", str(model_dir), "--port", str(port)],
        env=dict(os.environ),
        base_url=f"http://127.0.0.1:{port}/v1",
        health_url=f"http://127.0.0.1:{port}/health",
    )
    running.start()
    try:
        write_suite(pytester.path / "suites" / "topics")
        pytester.makefile(
            ".toml",
            models=f'[fake]\nprovider = "vllm"\nmodel = "{model_dir}"\n'
            f'base_url = "{running.base_url}"\npython = "/nonexistent/python"\n',
        )
        result = pytester.runpytest_subprocess("suites", "--model=fake")
        result.assert_outcomes(passed=2, failed=4)
        assert "starting the vLLM server" not in result.stdout.str()
        assert running.alive()  # not ours to stop
    finally:
        running.stop()


def test_secrets_on_the_serve_command_line_never_reach_the_log(model_dir, fake_python, tmp_path):
    from pytest_distill.core import redact

    secret = "sk-serve-secret-98765"
    plan = plan_server(
        _entry(
            model_dir,
            fake_python,
            serve_args=["--api-key", secret, "--dtype", "float32"],
            serve_env={"HF_TOKEN": "hf_envsecret_12345"},
        )
    )
    server = ManagedServer.from_plan("m", plan, tmp_path)
    try:
        server.start()
    finally:
        server.stop()
        redact.clear()
    log = server.log_path.read_text()
    assert f"--api-key {redact.MARKER}" in log.splitlines()[0]  # the command line we write
    assert "fake server: " in log and "--dtype float32" in log  # what the server printed (its argv)
    assert secret not in log and log.count(redact.MARKER) >= 2
