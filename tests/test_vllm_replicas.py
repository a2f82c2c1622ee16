"""vLLM's parallelism as entry fields and `replicas = N` on managed entries: the command lines
and environments for GPU layouts (the GPU count injected, never the machine's), the checks
made before anything starts, and per-replica stats in results.json, serial and under -n 2."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from pytest_distill.cli import main as cli_main
from pytest_distill.core.errors import ConfigError
from pytest_distill.models.providers.vllm import check_entry, plan_servers, visible_gpus
from pytest_distill.models.registry import ModelEntry, Registry
from pytest_distill.report.results_file import validate
from pytest_distill.runtime.replicas import merge_stats

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, numbered_rows
from helpers.suites import write_suite


def _entry(model_dir: Path, **fields) -> ModelEntry:
    return ModelEntry(name="m", provider="vllm", model=str(model_dir), source="/p/models.toml", **fields)


def _flag(command: list[str], name: str) -> str | None:
    return command[command.index(name) + 1] if name in command else None


# --- command lines and environments ------------------------------------------------


def test_four_gpus_tp2_two_replicas_get_two_gpus_each_and_their_own_port(model_dir):
    plans = plan_servers(_entry(model_dir, tensor_parallel_size=2, replicas=2), gpus=["0", "1", "2", "3"])
    assert len(plans) == 2
    assert [_flag(p.command, "--tensor-parallel-size") for p in plans] == ["2", "2"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0,1", "2,3"]
    ports = [int(_flag(p.command, "--port")) for p in plans]
    assert len(set(ports)) == 2
    assert [p.base_url for p in plans] == [f"http://127.0.0.1:{port}/v1" for port in ports]
    assert [p.log_name for p in plans] == ["vllm-m-0.log", "vllm-m-1.log"]
    assert [p.replica for p in plans] == [0, 1] and [p.devices for p in plans] == ["0,1", "2,3"]


def test_the_users_cuda_visible_devices_is_split_not_replaced(model_dir, monkeypatch):
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "4,5,6,7")
    plans = plan_servers(_entry(model_dir, tensor_parallel_size=2, replicas=2))
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["4,5", "6,7"]


def test_tp_pp_dp_multiply_and_each_becomes_its_flag(model_dir):
    entry = _entry(model_dir, tensor_parallel_size=2, pipeline_parallel_size=2, data_parallel_size=2)
    (plan,) = plan_servers(entry, gpus=[str(i) for i in range(8)])
    assert _flag(plan.command, "--tensor-parallel-size") == "2"
    assert _flag(plan.command, "--pipeline-parallel-size") == "2"
    assert _flag(plan.command, "--data-parallel-size") == "2"
    assert plan.env["CUDA_VISIBLE_DEVICES"] == "0,1,2,3,4,5,6,7" and plan.replica is None
    assert plan.log_name == "vllm-m.log"


def test_an_entry_without_the_fields_is_planned_as_before(model_dir, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", "/nonexistent")  # no layout: the GPUs are not even looked up
    (plan,) = plan_servers(_entry(model_dir), gpus=None)
    assert "--tensor-parallel-size" not in plan.command and "CUDA_VISIBLE_DEVICES" not in plan.env


def test_serve_args_port_gives_replica_i_port_plus_i(model_dir):
    plans = plan_servers(_entry(model_dir, replicas=3, serve_args=["--port", "18500"]), gpus=["0", "1", "2"])
    assert [_flag(p.command, "--port") for p in plans] == ["18500", "18501", "18502"]
    assert [p.env["CUDA_VISIBLE_DEVICES"] for p in plans] == ["0", "1", "2"]


def test_without_a_gpu_replicas_get_ports_only_and_parallel_sizes_are_refused(model_dir, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    plans = plan_servers(_entry(model_dir, replicas=2), gpus=[])
    assert len({_flag(p.command, "--port") for p in plans}) == 2
    assert all(p.devices is None and "CUDA_VISIBLE_DEVICES" not in p.env for p in plans)
    with pytest.raises(ConfigError) as caught:
        plan_servers(_entry(model_dir, tensor_parallel_size=2), gpus=[])
    message = str(caught.value)
    assert "\n" not in message and message.startswith("/p/models.toml: model 'm':")
    assert "no GPU is visible" in message


# --- how the GPUs are counted ------------------------------------------------------


def _fake_nvidia_smi(folder: Path, gpus: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "nvidia-smi"
    lines = "".join(f"echo 'GPU {i}: NVIDIA H100 80GB HBM3 (UUID: GPU-{i})'\n" for i in range(gpus))
    script.write_text("#!/bin/sh\n" + lines)
    script.chmod(script.stat().st_mode | stat.S_IEXEC)
    return folder


def test_gpus_are_counted_from_cuda_visible_devices_else_nvidia_smi(model_dir, tmp_path, monkeypatch):
    entry = _entry(model_dir)
    assert visible_gpus(entry, {"CUDA_VISIBLE_DEVICES": "2, 3"}, list_gpus=lambda: ["0"]) == ["2", "3"]
    assert visible_gpus(entry, {"CUDA_VISIBLE_DEVICES": ""}, list_gpus=lambda: ["0"]) == []
    assert visible_gpus(entry, {"CUDA_VISIBLE_DEVICES": "-1"}, list_gpus=lambda: ["0"]) == []
    assert visible_gpus(entry, {}, list_gpus=lambda: ["0", "1"]) == ["0", "1"]
    assert visible_gpus(entry, {}, list_gpus=lambda: None) == []
    # the entry's own serve_env wins over the environment
    pinned = _entry(model_dir, serve_env={"CUDA_VISIBLE_DEVICES": "6,7"})
    assert visible_gpus(pinned, {"CUDA_VISIBLE_DEVICES": "0"}) == ["6", "7"]
    # a fake nvidia-smi on PATH: its `-L` lines are the GPUs
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin3", 3)))
    assert visible_gpus(entry) == ["0", "1", "2"]
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))  # no nvidia-smi at all: the CPU build
    assert visible_gpus(entry) == []


def test_too_many_gpus_is_one_line_at_check_time(model_dir, fake_python, tmp_path, monkeypatch):
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    monkeypatch.setenv("PATH", str(_fake_nvidia_smi(tmp_path / "bin", 4)) + ":/usr/bin:/bin")
    entry = _entry(model_dir, python=str(fake_python), tensor_parallel_size=2, replicas=3)
    with pytest.raises(ConfigError) as caught:
        check_entry(entry)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith("/p/models.toml: model 'm': 3 replica(s) x 2 GPU(s)")
    assert "= 6 GPUs, but 4 are visible (0,1,2,3)" in message
    check_entry(_entry(model_dir, python=str(fake_python), tensor_parallel_size=2, replicas=2))  # fits


# --- the entry's own checks (registry, schema) ---------------------------------------


def _registry(tmp_path: Path, body: str) -> tuple[Registry, Path]:
    path = tmp_path / "models.toml"
    path.write_text(body)
    return Registry(path), path


@pytest.mark.parametrize("clash", ['"--tensor-parallel-size", "4"', '"--tensor-parallel-size=4"', '"-tp", "4"'])
def test_a_field_and_its_flag_in_serve_args_is_one_line(tmp_path, clash):
    registry, path = _registry(
        tmp_path, f'[big]\nprovider = "vllm"\nmodel = "org/m"\ntensor_parallel_size = 2\nserve_args = [{clash}]\n'
    )
    with pytest.raises(ConfigError) as caught:
        registry.get("big")
    message = str(caught.value)
    assert "\n" not in message and message.startswith(f"{path}: model 'big': tensor_parallel_size = 2 and serve_args")
    assert "keep one" in message


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ('provider = "openai-compatible"\nmodel = "m"\nbase_url = "http://h:1/v1"\nreplicas = 2', "managed vLLM"),
        ('provider = "vllm"\nmodel = "m"\nbase_url = "http://h:1/v1"\ntensor_parallel_size = 2', "base_url"),
    ],
)
def test_the_fields_apply_to_managed_vllm_entries_only(tmp_path, fields, expected):
    registry, path = _registry(tmp_path, f"[x]\n{fields}\n")
    with pytest.raises(ConfigError) as caught:
        registry.get("x")
    assert str(caught.value).startswith(f"{path}: model 'x':") and expected in str(caught.value)


@pytest.mark.parametrize("value", ["0", "-1", "1.5", '"2"'])
def test_sizes_are_integers_of_at_least_one(tmp_path, value):
    with pytest.raises(ConfigError) as caught:
        _registry(tmp_path, f'[x]\nprovider = "vllm"\nmodel = "m"\nreplicas = {value}\n')
    message = str(caught.value)
    assert "\n" not in message and f"{tmp_path / 'models.toml'}:4: model 'x' field 'replicas'" in message


# --- merging what each process counted ------------------------------------------------


def test_workers_counts_are_summed_and_latencies_pooled():
    a, b = "http://a/v1", "http://b/v1"
    worker1 = {"m": [{"url": a, "requests": 2, "errors": 1, "latencies_s": [0.1, 0.3]}]}
    worker2 = {
        "m": [
            {"url": a, "requests": 1, "errors": 0, "latencies_s": [0.2]},
            {"url": b, "requests": 1, "errors": 0, "latencies_s": [0.4]},
        ]
    }
    merged = merge_stats([worker1, worker2], {"m": [(a, "0"), (b, "1")], "other": [("http://c/v1", None)]})
    assert list(merged) == ["m"]  # one replica is no replica set
    first, second = merged["m"]
    assert (first["url"], first["devices"], first["requests"], first["errors"]) == (a, "0", 3, 1)
    assert first["latency_p50_s"] == pytest.approx(0.2) and first["latency_mean_s"] == pytest.approx(0.2)
    assert (second["requests"], second["latency_p50_s"]) == (1, 0.4)
    # a replica nobody used still has its line
    unused = merge_stats([], {"m": [(a, None), (b, None)]})["m"]
    assert [r["requests"] for r in unused] == [0, 0] and unused[0]["latency_p50_s"] is None


# --- through the plugin --------------------------------------------------------------

ROWS = numbered_rows(12)


def _replicas_of(pytester) -> dict:
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    assert validate(document) is None  # results.schema.json knows the replicas section
    return document["replicas"]


def _replicated_project(pytester, first: FakeChatServer, second: FakeChatServer) -> None:
    """The topics suite and an entry `replicated` with the two servers as its base_urls."""
    write_suite(pytester.path / "suites" / "topics", rows=ROWS)
    pytester.makefile(
        ".toml",
        models=(
            '["replicated"]\nprovider = "openai-compatible"\nmodel = "correct"\n'
            f'base_urls = ["{first.url}", "{second.url}"]\ntemperature = 0.0\nmax_retries = 0\n'
            'constraint_style = "none"\nmax_concurrency = 2\n'
        ),
    )


@pytest.mark.parametrize("xdist_args", [SERIAL, XDIST])
def test_base_urls_replicas_stats_are_the_same_serial_and_under_xdist(pytester, xdist_args):
    first, second = FakeChatServer(ROWS), FakeChatServer(ROWS)
    with first, second:
        _replicated_project(pytester, first, second)
        result = pytester.runpytest(
            "suites", "-p", "no:cacheprovider", "--model=replicated", "--distill-report=out", *xdist_args
        )
        urls = [first.url, second.url]
    result.assert_outcomes(passed=len(ROWS))
    rows = _replicas_of(pytester)["replicated"]
    assert [r["url"] for r in rows] == urls
    # what each server saw is what results.json says it answered: the workers' counts reached the controller
    assert [r["requests"] for r in rows] == [len(first.bodies), len(second.bodies)]
    assert sum(r["requests"] for r in rows) == len(ROWS) and all(r["errors"] == 0 for r in rows)
    assert all(r["latency_p50_s"] is not None and r["latency_p50_s"] > 0 for r in rows if r["requests"])
    out = result.stdout.str()
    assert f"replica 1/2 of 'replicated': {urls[0]}: {rows[0]['requests']} requests, 0 errors, p50 " in out
    assert f"replica 2/2 of 'replicated': {urls[1]}:" in out


def test_merged_shards_add_up_each_replicas_requests_and_errors(pytester, capsys, monkeypatch):
    first, second = FakeChatServer(ROWS), FakeChatServer(ROWS)
    with first, second:
        _replicated_project(pytester, first, second)
        monkeypatch.chdir(pytester.path)
        for k in (1, 2):
            pytester.runpytest(
                "suites",
                "-p",
                "no:cacheprovider",
                "--model=replicated",
                f"--distill-shard={k}/2",
                f"--distill-report=s{k}",
            )
        seen = [len(first.bodies), len(second.bodies)]
        urls = [first.url, second.url]
    shards = [
        json.loads((pytester.path / f"s{k}" / "results.json").read_text())["replicas"]["replicated"] for k in (1, 2)
    ]
    capsys.readouterr()
    assert cli_main(["merge", "s1", "s2", "--out", "merged"]) == 0
    out = capsys.readouterr().out
    merged = json.loads((pytester.path / "merged" / "results.json").read_text())
    assert validate(merged) is None
    rows = merged["replicas"]["replicated"]
    assert [r["url"] for r in rows] == urls
    assert (
        [r["requests"] for r in rows] == [a["requests"] + b["requests"] for a, b in zip(*shards, strict=True)] == seen
    )
    assert sum(r["requests"] for r in rows) == len(ROWS) and all(r["errors"] == 0 for r in rows)
    for row, parts in zip(rows, zip(*shards, strict=True), strict=True):
        weighted = sum(p["latency_mean_s"] * p["requests"] for p in parts if p["requests"])
        assert row["latency_mean_s"] == pytest.approx(weighted / row["requests"])
        assert row["latency_p50_s"] is None and row["latency_p95_s"] is None  # not mergeable from two p50s
    assert f"replica 1/2 of 'replicated': {urls[0]}: {rows[0]['requests']} requests, 0 errors, p50 - p95 -" in out


def _two_replica_project(pytester, model_dir: Path, fake_python: Path) -> None:
    """The topics suite and a managed entry `fake` of two replicas, one fake GPU each."""
    write_suite(pytester.path / "suites" / "topics")
    pytester.makefile(
        ".toml",
        models=(
            f'[fake]\nprovider = "vllm"\nmodel = "{model_dir}"\npython = "{fake_python}"\n'
            "startup_timeout_s = 20\nmax_retries = 0\nmax_concurrency = 1\nreplicas = 2\n"
            'serve_env = { CUDA_VISIBLE_DEVICES = "0,1" }\n'
        ),
    )


@pytest.mark.parametrize("xdist_args", [SERIAL, XDIST])
def test_managed_replicas_start_two_servers_that_share_the_items(
    pytester, model_dir, fake_python, xdist_args, monkeypatch
):
    ports, envs, pids = pytester.path / "ports", pytester.path / "envs", pytester.path / "pids"
    _two_replica_project(pytester, model_dir, fake_python)
    for key, value in {
        "FAKE_PORT_LOG": ports,
        "FAKE_ENV_LOG": envs,
        "FAKE_PIDFILE": pids,
        "FAKE_DELAY_S": "0.05",
    }.items():
        monkeypatch.setenv(key, str(value))
    result = pytester.runpytest_subprocess(
        "suites", "--model=fake", "-p", "no:randomly", "--distill-report=out", *xdist_args
    )
    result.assert_outcomes(passed=2, failed=4)
    out = result.stdout.str()
    assert "starting the vLLM server for 'fake#0'" in out and "starting the vLLM server for 'fake#1'" in out
    started = dict(line.split() for line in envs.read_text().splitlines())
    assert sorted(started.values()) == ["0", "1"] and len(started) == 2  # one GPU each, two ports
    answered = ports.read_text().split()
    rows = _replicas_of(pytester)["fake"]
    by_port = {r["url"].rsplit(":", 1)[1].split("/")[0]: r for r in rows}
    assert set(by_port) == set(started)
    for port, row in by_port.items():
        assert row["requests"] == answered.count(port) > 0  # both replicas answered, as counted
        assert row["devices"] == started[port] and row["errors"] == 0
    assert sum(r["requests"] for r in rows) == 6
    assert "replica 1/2 of 'fake'" in out and "(GPUs 0)" in out
    assert all(_gone(int(pid)) for pid in pids.read_text().split())  # both servers stopped


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z"
    except (OSError, IndexError):
        return True


def test_a_managed_replica_that_dies_costs_no_item(pytester, model_dir, fake_python, monkeypatch):
    _two_replica_project(pytester, model_dir, fake_python)
    monkeypatch.setenv("FAKE_DIE_AFTER", "1")  # the replica on GPU 1 exits at its second request
    monkeypatch.setenv("FAKE_DIE_DEVICES", "1")
    result = pytester.runpytest_subprocess("suites", "--model=fake", "-p", "no:randomly", "--distill-report=out")
    result.assert_outcomes(passed=2, failed=4, errors=0)
    rows = {r["devices"]: r for r in _replicas_of(pytester)["fake"]}
    assert rows["1"]["requests"] == 1 and rows["1"]["errors"] >= 1
    assert rows["0"]["requests"] == 5 and rows["0"]["errors"] == 0
