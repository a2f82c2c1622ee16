"""The saturation search, serving variants and --distill-serving through the plugin, on the
fake `vllm serve` (benchmarks/fake_server.py honours --max-num-seqs, so it has a knee)."""

from __future__ import annotations

import json
import re

import pytest

from helpers.fake_vllm import fake_vllm_python, model_folder
from helpers.suites import write_suite


@pytest.fixture
def project(pytester, tmp_path):
    python = fake_vllm_python(tmp_path)
    model = model_folder(tmp_path)
    write_suite(pytester.path / "suites" / "topics")
    entries = []
    for name, seqs in (("seqs1", 1), ("seqs2", 2)):  # two variants: same weights, other serving settings
        entries.append(
            f'[{name}]\nprovider = "vllm"\nmodel = "{model}"\npython = "{python}"\n'
            f'serve_args = ["--max-num-seqs", "{seqs}"]\nstartup_timeout_s = 20\nmax_retries = 0\n'
            'hourly_usd = 0.50\nhardware = "2-core CPU box"\n'
        )
    entries.append(
        '[api]\nprovider = "openai-compatible"\nmodel = "x"\nbase_url = "http://127.0.0.1:9/v1"\n'
        "price_input = 1.0\nprice_output = 4.0\n"
    )
    pytester.makefile(".toml", models="\n".join(entries))
    pytester._monkeypatch.setenv("FAKE_DELAY_S", "0.1")
    return pytester


def _bench(pytester, *args):
    return pytester.runpytest_subprocess(
        "suites",
        "--model=seqs1",
        "--model=seqs2",
        "-p",
        "no:randomly",
        "--distill-bench",
        "--distill-bench-saturate",
        *args,
    )


def test_saturation_search_runs_variants_one_at_a_time_and_records_their_curves(project):
    pytester = project
    result = _bench(pytester, "--distill-bench-max-concurrency=4", "--distill-bench-requests=8", "--distill-report=out")
    out = result.stdout.str()
    assert result.ret == 0, out[-3000:]
    # one server at a time: seqs1 started and stopped before seqs2 started (stop waits for the group)
    events = re.findall(r"(starting|stopped) the (?:vLLM )?server for '(\w+)'.*?\(pid (\d+)", out)
    assert [(e[0], e[1]) for e in events] == [
        ("starting", "seqs1"),
        ("stopped", "seqs1"),
        ("starting", "seqs2"),
        ("stopped", "seqs2"),
    ], out[-3000:]
    assert events[0][2] == events[1][2] and events[2][2] == events[3][2] and events[0][2] != events[2][2]

    document = json.loads((pytester.path / "out" / "results.json").read_text())
    bench = {m["model"]: m for m in document["bench"]}
    assert set(bench) == {"seqs1", "seqs2"}
    for m in bench.values():
        # where the knee falls depends on this machine's timing: the test checks the search's
        # own rules on whatever curve it measured (core/serving.find_knee is tested on fixed curves)
        steps = [s["concurrency"] for s in m["curve"]]
        assert steps == [1, 2, 4][: len(steps)] and len(steps) >= 2
        assert m["concurrency"] in steps and m["knee_reason"]
        knee = next(s for s in m["curve"] if s["concurrency"] == m["concurrency"])
        assert m["requests_per_s"] == knee["requests_per_s"] and m["latency_p95"] == knee["latency_p95"]
        assert m["mode"] == "saturation" and m["device"] == "CPU" and m["server_rss_bytes"] > 0
        assert m["hardware"] == "2-core CPU box" and m["hourly_usd"] == 0.5
        assert m["cost_per_million"] == pytest.approx(0.5 / (m["requests_per_s"] * 3600) * 1e6)
        assert f"{m['model']}: sustained {m['requests_per_s']:.2f} req/s at c={m['concurrency']} " in out
    assert bench["seqs1"]["fingerprint"] != bench["seqs2"]["fingerprint"]

    html = (pytester.path / "out" / "report.html").read_text()
    assert 'class="chart serving throughput"' in html and 'class="chart serving latency"' in html
    assert html.count('class="step knee"') == 4  # each model's knee, on both charts
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert "**Serving**" in summary and "| seqs2 | saturation | CPU |" in summary


def test_an_evaluation_priced_from_a_stored_results_json_costs_what_the_bench_run_measured(project):
    pytester = project
    bench = _bench(
        pytester,
        "--distill-bench-max-concurrency=2",
        "--distill-bench-requests=8",
        "--distill-report=measured",
        "-p",
        "no:cacheprovider",
    )
    assert bench.ret == 0, bench.stdout.str()[-3000:]
    measured = {m["model"]: m for m in json.loads((pytester.path / "measured" / "results.json").read_text())["bench"]}
    per_million = {}
    for name, args in (("serial", ()), ("xdist", ("-n", "2"))):
        run = pytester.runpytest_subprocess(
            "suites",
            "--model=seqs1",
            "--model=seqs2",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--distill-serving=measured/results.json",
            f"--distill-report={name}",
            *args,
        )
        assert run.ret == 1, run.stdout.str()[-3000:]  # misses: the fake answers "sports"
        document = json.loads((pytester.path / name / "results.json").read_text())
        costs = {s["model"]: s["cost"] for s in document["summaries"]}
        for model in ("seqs1", "seqs2"):
            assert costs[model]["per_million"] == pytest.approx(measured[model]["cost_per_million"], rel=1e-12)
            assert costs[model]["basis"].startswith("$0.50/h 2-core CPU box / sustained ")
            assert "(saturation search, " in costs[model]["basis"] and "measured/results.json)" in costs[model]["basis"]
        assert "bench" not in document  # nothing was measured in this run
        assert {m["model"] for m in document["priced_with"]} == {"seqs1", "seqs2"}
        [variant] = document["variants"]  # same weights, other --max-num-seqs
        assert (variant["base"], variant["variant"], variant["suite"]) == ("seqs1", "seqs2", "topics")
        assert variant["accuracy_delta_pp"] == 0 and variant["p_value"] == 1 and variant["shared"] == 6
        assert variant["rps_change"] == pytest.approx(
            measured["seqs2"]["requests_per_s"] / measured["seqs1"]["requests_per_s"] - 1
        )
        assert "seqs2 vs seqs1 (topics): " in (pytester.path / name / "summary.md").read_text()
        per_million[name] = {m: c["per_million"] for m, c in costs.items()}
        volume = document["volume"]
        assert volume["traffic_per_day"] == [1e4, 1e5, 1e6, 1e7]
        assert {m["model"]: m["requests_per_s"] for m in volume["models"]} == {
            m: measured[m]["requests_per_s"] for m in ("seqs1", "seqs2")
        }
    assert per_million["serial"] == per_million["xdist"]

    # figures measured under other serving settings are not used, and the run says so
    stored = json.loads((pytester.path / "measured" / "results.json").read_text())
    for m in stored["bench"]:
        m["fingerprint"] = "0" * 16
    (pytester.path / "changed.json").write_text(json.dumps(stored))
    run = pytester.runpytest_subprocess(
        "suites", "--model=seqs1", "-p", "no:cacheprovider", "--distill-serving=changed.json"
    )
    out = run.stdout.str()
    assert "--distill-serving changed.json: 'seqs1' was measured with other serving settings" in out
    assert "req/s measured in this run at c=8" in out


def test_a_file_that_is_not_results_json_stops_the_run_in_one_line(project):
    pytester = project
    (pytester.path / "other.json").write_text(json.dumps({"schema": "pytest-distill/results"}))
    bad = pytester.runpytest_subprocess("suites", "--model=seqs1", "--distill-serving=other.json")
    assert bad.ret == pytest.ExitCode.USAGE_ERROR
    bad.stderr.fnmatch_lines(["ERROR: pytest-distill: --distill-serving *other.json: schema version None*"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--distill-bench-saturate", "--distill-bench-concurrency=4"), "*chooses the concurrency*"),
        (("--distill-bench-knee=5",), "*--distill-bench-knee applies to --distill-bench-saturate only*"),
        (("--distill-bench-saturate", "--distill-bench-knee=150"), "*a percentage, 0 to 100; got 150*"),
        (("--distill-traffic=100/week",), "*--distill-traffic 100/week: unknown unit '/week'*"),
        (("--distill-peak-factor=0.5",), "*at least 1; got 0.5*"),
    ],
)
def test_bad_serving_options_are_one_line(project, args, message):
    result = project.runpytest_subprocess("suites", "--model=seqs1", "--distill-bench", *args)
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([message])
    assert "Traceback" not in result.stderr.str()
