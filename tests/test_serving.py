"""Serving figures, pure parts: the knee of a load curve, cost at volume and break-even,
and a server's memory (its /proc process tree, its processes' GPU memory from recorded
nvidia-smi output)."""

from __future__ import annotations

import math
import os
import stat
import subprocess
import time

import pytest

from pytest_distill.core.cost import (
    DAYS_PER_MONTH,
    HOURS_PER_MONTH,
    VolumeModel,
    break_even,
    parse_traffic,
    self_hosted_cost,
    volume_report,
)
from pytest_distill.core.serving import (
    LoadStep,
    ServingMeasurement,
    concurrency_steps,
    find_knee,
    fingerprint,
)
from pytest_distill.core.variants import compare_variants, variant_pairs
from pytest_distill.runtime.memory import gpu_memory_of, parse_compute_apps, process_tree_pids, process_tree_rss


def _curve(*points: tuple[int, float, float]) -> list[LoadStep]:
    """(concurrency, req/s, p95 seconds) -> steps."""
    return [
        LoadStep(concurrency=c, requests=100, errors=0, duration_s=1.0, requests_per_s=r, latency_p95=p)
        for c, r, p in points
    ]


# --- the knee -------------------------------------------------------------------------


def test_concurrency_steps_double_up_to_the_cap():
    assert concurrency_steps(64) == [1, 2, 4, 8, 16, 32, 64]
    assert concurrency_steps(12) == [1, 2, 4, 8, 12]
    assert concurrency_steps(1) == [1]
    with pytest.raises(ValueError):
        concurrency_steps(0)


def test_the_knee_is_the_step_before_throughput_stops_rising():
    steps = _curve((1, 2.0, 0.5), (2, 3.9, 0.5), (4, 7.5, 0.55), (8, 7.7, 1.1), (16, 7.8, 2.2))
    assert find_knee(steps[:3]) is None  # still rising: measure the next step
    knee = find_knee(steps[:4])
    assert knee is not None and knee.index == 2 and steps[knee.index].concurrency == 4
    assert knee.reason == "throughput rose 2.7% from c=4 to c=8 (< 5% gain)"
    # a looser threshold keeps going
    assert find_knee(steps[:4], knee=0.02) is None


def test_a_falling_curve_stops_too():
    knee = find_knee(_curve((1, 2.0, 0.5), (2, 1.5, 0.9)))
    assert knee is not None and knee.index == 0 and "throughput fell 25.0% from c=1 to c=2" in knee.reason


def test_the_latency_limit_stops_before_the_step_that_breaks_it():
    steps = _curve((1, 2.0, 0.30), (2, 3.9, 0.35), (4, 7.5, 0.70))
    knee = find_knee(steps, slo_p95_s=0.5)
    assert knee is not None and knee.index == 1 and knee.slo_met
    assert knee.reason == "p95 700 ms > 500 ms at c=4"
    first = find_knee(steps[:1], slo_p95_s=0.1)
    assert first is not None and first.index == 0 and not first.slo_met and "not met even at c=1" in first.reason


def test_failed_requests_end_the_search_and_the_cap_ends_a_rising_curve():
    steps = _curve((1, 2.0, 0.3), (2, 4.0, 0.3))
    failing = [*steps, LoadStep(concurrency=4, requests=10, errors=3, duration_s=1, requests_per_s=6.0)]
    knee = find_knee(failing)
    assert knee is not None and knee.index == 1 and knee.reason == "requests failed at c=4"
    capped = find_knee(steps, max_concurrency=2)
    assert capped is not None and capped.index == 1 and "still rising at the cap, c=2" in capped.reason
    assert find_knee(steps, max_concurrency=4) is None


def test_a_measurement_prices_at_hourly_over_its_rate_and_says_where_the_rate_came_from():
    m = ServingMeasurement(
        model="m",
        fingerprint="f",
        mode="saturation",
        concurrency=8,
        requests_per_s=7.5,
        measured_at="2026-12-01T03:00:00Z",
        device="CPU",
        hourly_usd=2.40,
    )
    assert m.cost_per_million == pytest.approx(2.40 / (7.5 * 3600) * 1e6)
    assert m.describe() == "sustained 7.50 req/s at c=8 (saturation search, 2026-12-01, on a CPU)"
    again = ServingMeasurement.from_dict(m.to_dict(), source="gpu/results.json")
    assert again.describe().endswith(", gpu/results.json)") and again.cost_per_million == m.cost_per_million

    class Entry:
        self_hosted = True
        price_input = price_output = price_cached_input = None
        gpu_hourly_usd = 9.0  # the older name: hourly_usd wins
        hourly_usd = 2.40
        hardware = "1x H100"

    cost = self_hosted_cost(Entry(), measured=1.0, bench=m)
    assert cost.per_million == pytest.approx(m.cost_per_million)
    assert cost.basis == "$2.40/h 1x H100 / sustained 7.50 req/s at c=8 (saturation search, 2026-12-01, on a CPU)"
    measured = self_hosted_cost(Entry(), measured=3.1, concurrency=8)
    assert measured.basis == "$2.40/h 1x H100 / 3.10 req/s measured in this run at c=8"


def test_fingerprints_change_with_the_serving_settings():
    a = {"provider": "vllm", "model": "m", "serve_args": ["--max-num-seqs", "4"], "base_url": None}
    assert fingerprint(a) == fingerprint(dict(reversed(list(a.items()))))
    assert fingerprint(a) != fingerprint({**a, "serve_args": ["--max-num-seqs", "8"]})


# --- cost at volume -----------------------------------------------------------------


HOSTED = VolumeModel("distilled", True, hourly_usd=2.0, requests_per_s=10.0)  # 864,000 requests/day per server
API = VolumeModel("frontier", False, per_request=0.001)


def test_monthly_cost_api_is_linear_self_hosted_counts_servers_for_the_peak():
    assert API.monthly(100_000) == pytest.approx(0.001 * 100_000 * DAYS_PER_MONTH)
    assert HOSTED.servers(1) == 1 and HOSTED.servers(864_000) == 1 and HOSTED.servers(864_001) == 2
    assert HOSTED.monthly(10_000) == pytest.approx(2.0 * HOURS_PER_MONTH)
    assert HOSTED.monthly(10_000_000) == pytest.approx(12 * 2.0 * HOURS_PER_MONTH)  # ceil(115.7 / 10)
    assert HOSTED.servers(500_000, peak_factor=3) == 2  # 17.4 req/s at the peak
    assert VolumeModel("x", True, hourly_usd=2.0).monthly(1000) is None  # no rate: no figure


def test_break_even_first_and_always_and_never():
    found = break_even(HOSTED, API)
    assert found is not None
    month = 2.0 * HOURS_PER_MONTH
    assert found.first == pytest.approx(month / (0.001 * DAYS_PER_MONTH))  # 48,000/day
    # checked against the cost functions themselves
    assert HOSTED.monthly(found.first * 1.01) < API.monthly(found.first * 1.01)
    assert HOSTED.monthly(found.first * 0.99) > API.monthly(found.first * 0.99)
    assert found.always is not None
    for v in (found.always * 1.001, found.always * 3.7, found.always * 50):
        assert HOSTED.monthly(v) < API.monthly(v)
    never = break_even(VolumeModel("slow", True, hourly_usd=2.0, requests_per_s=0.01), API)
    assert never is not None and never.first is None and "at every volume" in never.text()
    assert break_even(VolumeModel("x", True, hourly_usd=2.0), API) is None


def test_volume_report_pairs_every_self_hosted_with_every_api_model():
    report = volume_report([HOSTED, API, VolumeModel("api2", False, per_request=0.0001)], [1e6, 1e4], 1.0)
    assert report.traffic == (1e4, 1e6)
    assert [(b.self_hosted, b.api) for b in report.break_evens] == [("distilled", "frontier"), ("distilled", "api2")]
    data = report.to_dict()
    assert data["models"][0]["monthly_usd"] == [pytest.approx(1460.0), pytest.approx(2 * 730 * 2.0)]
    assert data["models"][0]["servers"] == [1, 2]


@pytest.mark.parametrize(
    ("text", "per_day"),
    [("100000/day", 1e5), ("1e6", 1e6), ("5000/hour", 120_000), ("20/s", 1_728_000), ("10_000/day", 1e4)],
)
def test_parse_traffic(text, per_day):
    assert parse_traffic(text) == per_day


@pytest.mark.parametrize("text", ["100/week", "lots/day", "-5/day", "0"])
def test_parse_traffic_rejects(text):
    with pytest.raises(ValueError):
        parse_traffic(text)


# --- memory of one server ---------------------------------------------------------------

# Recorded from `nvidia-smi --query-compute-apps=pid,used_memory --format=csv` on a machine
# running two vLLM servers (one of them multi-process) and another job.
COMPUTE_APPS = """pid, used_memory [MiB]
4242, 7782 MiB
4250, 512 MiB
9001, 40211 MiB
"""


def test_parse_compute_apps():
    assert parse_compute_apps(COMPUTE_APPS) == {4242: 7782, 4250: 512, 9001: 40211}
    assert parse_compute_apps("4242, 100\n4242, 50\n") == {4242: 150}  # noheader,nounits; two GPUs
    assert parse_compute_apps("pid, used_memory [MiB]\n7, [N/A]\n") == {}
    assert parse_compute_apps("No running processes found\n") == {}


@pytest.fixture
def process_tree():
    """A real parent with two children (one a grandchild)."""
    parent = subprocess.Popen(["sh", "-c", "sleep 60 & (sleep 60 & wait) & wait"], start_new_session=True)
    deadline = time.monotonic() + 10
    while len(process_tree_pids(parent.pid)) < 4 and time.monotonic() < deadline:
        time.sleep(0.05)
    yield parent
    os.killpg(parent.pid, 9)
    parent.wait()


def test_the_proc_walk_finds_the_whole_tree_and_sums_its_rss(process_tree):
    pids = process_tree_pids(process_tree.pid)
    assert process_tree.pid in pids and len(pids) >= 4  # sh, sleep, the subshell, its sleep
    assert os.getpid() not in pids
    total = process_tree_rss(process_tree.pid)
    assert total is not None and total > 0
    assert total < (process_tree_rss(os.getpid()) or 0)  # the tree, not us (we are its ancestor)
    assert process_tree_pids(2**22 + 7) == set() and process_tree_rss(2**22 + 7) is None


def test_gpu_memory_counts_only_the_servers_processes(process_tree, tmp_path):
    pids = sorted(process_tree_pids(process_tree.pid))
    fake = tmp_path / "nvidia-smi"
    fake.write_text(
        "#!/bin/sh\n"
        f'[ "$1" = "--query-compute-apps=pid,used_memory" ] || exit 9\n'
        f"printf 'pid, used_memory [MiB]\\n{pids[0]}, 7782 MiB\\n{pids[-1]}, 512 MiB\\n"
        f"{os.getpid()}, 40211 MiB\\n'\n"
    )
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    assert gpu_memory_of(set(pids), str(fake)) == 7782 + 512
    assert gpu_memory_of(set(pids), str(tmp_path / "missing")) is None
    assert gpu_memory_of(set(), str(fake)) is None


def test_no_nan_in_break_even_text():
    text = break_even(HOSTED, API).text()
    assert "nan" not in text and "distilled is cheaper than frontier from 48,000 requests/day" in text
    assert not math.isnan(break_even(HOSTED, API).first)


# --- benchmarks/gpu_check.sh --------------------------------------------------------------


def test_gpu_check_without_a_gpu_exits_with_a_clear_message(tmp_path):
    from pathlib import Path

    script = Path(__file__).resolve().parent.parent / "benchmarks" / "gpu_check.sh"
    bin_dir = tmp_path / "bin"  # a PATH with the basics but no nvidia-smi
    bin_dir.mkdir()
    for tool in ("bash", "dirname", "date", "head", "tr", "cat", "mkdir", "cp"):
        found = subprocess.run(["sh", "-c", f"command -v {tool}"], capture_output=True, text=True).stdout.strip()
        if found:
            (bin_dir / tool).symlink_to(found)
    done = subprocess.run(
        ["bash", str(script)],
        capture_output=True,
        text=True,
        timeout=60,
        env={"PATH": str(bin_dir), "HOME": str(tmp_path)},
    )
    assert done.returncode == 3
    assert "gpu_check: no NVIDIA GPU here" in done.stderr and done.stdout == ""


# --- serving variants -------------------------------------------------------------------


def test_variant_pairs_share_weights_and_differ_in_serving_settings():
    weights = {"bf16": ("vllm", "m"), "fp8": ("vllm", "m"), "other": ("vllm", "n"), "copy": ("vllm", "m")}
    prints = {"bf16": "a", "fp8": "b", "other": "c", "copy": "a"}
    assert variant_pairs(weights, prints) == [("bf16", "fp8"), ("copy", "fp8")]


def test_variants_side_by_side_with_the_paired_test():
    from pytest_distill.core.records import Record

    def measured(name, rps, gpu):
        return ServingMeasurement(
            model=name,
            fingerprint=name,
            mode="saturation",
            concurrency=8,
            requests_per_s=rps,
            measured_at="2026-12-01",
            hourly_usd=2.4,
            gpu_memory_mib=gpu,
            server_rss_bytes=2**30,
        )

    def records(model, passed):
        return [
            Record(
                suite="s",
                suite_path="s",
                model=model,
                example_id=str(i),
                repetition=0,
                outcome="pass" if i in passed else "miss",
            )
            for i in range(20)
        ]

    serving = {"bf16": measured("bf16", 200.0, 7800), "fp8": measured("fp8", 230.0, 4368)}
    # fp8 passes 0..11, bf16 0..9 and 12: fp8 alone passes 10, 11; bf16 alone passes 12
    rows = compare_variants(
        [("bf16", "fp8")], serving, records("bf16", {*range(10), 12}) + records("fp8", set(range(12)))
    )
    assert len(rows) == 1
    row = rows[0]
    assert row.rps_change == pytest.approx(0.15) and row.memory_change == pytest.approx(-0.44)
    assert row.memory_kind == "GPU memory" and row.shared == 20
    assert row.accuracy_delta_pp == pytest.approx(5.0) and row.p_value == pytest.approx(1.0)
    assert row.text() == (
        "fp8 vs bf16 (s): +15.0% RPS, -44.0% GPU memory, Δ accuracy +5.0 pp (p=1, 20 paired examples)"
    )
    only_serving = compare_variants([("bf16", "fp8")], serving, [])
    assert only_serving[0].suite is None and only_serving[0].accuracy_delta_pp is None
    assert only_serving[0].text() == "fp8 vs bf16: +15.0% RPS, -44.0% GPU memory"
