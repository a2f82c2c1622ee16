"""The issue's "done when": a frontier model (the real Anthropic SDK, served recorded replies
on 127.0.0.1) and the embedded model side by side, 3 repetitions, mean ± std and cost."""

from __future__ import annotations

import re

from helpers.llama import needs_llama
from helpers.recorded import LabelResponder, RecordedServer, make_project, suite_answers, table


@needs_llama
def test_claude_and_smollm2_repeated_with_variance_and_cost(pytester, monkeypatch):
    monkeypatch.setenv("ANTHROPIC_API_KEY", "sk-ant-e2e-0123456789")
    answers = suite_answers()
    first = next(iter(answers))
    with RecordedServer() as server:
        # Claude answers right, except the first example's third time: it flips.
        server.responder = LabelResponder("anthropic", answers, wrong_on={first: {3}})
        make_project(pytester, f'["claude-haiku-4.5"]\nbase_url = "{server.url}"\n')
        result = pytester.runpytest(
            "suites/banking77",
            "--model=claude-haiku-4.5",
            "--model=smollm2-135m",
            "--repeat=3",
            "--limit=3",
            "-p",
            "no:randomly",
            "-v",
        )
        sent = [r["json"] for r in server.requests]

    assert len(sent) == 9  # 3 examples x 3 repetitions: each repetition is its own request
    assert all(body["model"] == "claude-haiku-4-5" and "temperature" not in body for body in sent)
    outcomes = result.parseoutcomes()
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 18 and "errors" not in outcomes
    result.stdout.fnmatch_lines(["*banking77[[]claude-haiku-4.5-r3-0003[]]*"])  # ids carry the repetition

    rows = table(result.stdout.lines)
    claude, smol = rows["claude-haiku-4.5"], rows["smollm2-135m"]
    # per-repetition pass rates 3/3, 3/3, 2/3: mean 88.9%, sample std 19.2%, one example flips
    assert claude["pass rate"] == "88.9±19.2%"
    assert claude["flips"] == "1"
    assert (claude["n"], claude["pass"], claude["miss"], claude["err"]) == ("9", "8", "1", "0")
    # (479 + 1024 cached) input and 11 output tokens at $1 / $0.10 / $5 per million
    assert claude["$/req"] == "$0.00064" and claude["$/1M req"] == "$636"
    assert claude["cost basis"] == "API price"
    # the embedded model at temperature 0: the same answers every time
    assert re.fullmatch(r"\d+\.\d±0\.0%", smol["pass rate"]) and smol["flips"] == "0"
    assert smol["$/req"].startswith("$") and smol["$/1M req"].startswith("$")
    assert re.fullmatch(r"\$2\.40/h GPU / \d+\.\d\d req/s measured in this run at c=1", smol["cost basis"])
    result.stdout.fnmatch_lines(
        [
            "self-hosted cost = GPU $/hour (gpu_hourly_usd, default $2.40) / (requests/s x 3600); requests/s = *",
            "API cost per request = *",
        ]
    )


# --- the cost formulas and the summary's columns -----------------------------------
def test_self_hosted_cost_is_gpu_hourly_over_the_sustained_rate():
    import pytest

    from pytest_distill.core.cost import self_hosted_cost_per_request, sustained_rate

    # the design's H100 figure: 222 requests/s at $2.40/hour is about $3 per million requests
    assert self_hosted_cost_per_request(2.40, 222) * 1e6 == pytest.approx(3.003, abs=1e-3)
    assert self_hosted_cost_per_request(None, 1.0) == pytest.approx(2.40 / 3600)  # the default GPU price
    assert self_hosted_cost_per_request(2.40, None) is None
    # 4 answers between the first start (t=0) and the last finish (t=2): 2 requests/s,
    # overlapping requests counted once each
    assert sustained_rate([(0, 1), (0.5, 1.5), (1, 2), (1.2, 1.9)]) == pytest.approx(2.0)
    assert sustained_rate([(0, 1)]) is None


def test_api_cost_prices_cached_and_reasoning_tokens():
    import pytest

    from pytest_distill.core.cost import api_cost
    from pytest_distill.models.base import Usage
    from pytest_distill.models.registry import Registry

    entry = Registry().get("gpt-5-mini")
    usage = Usage(input_tokens=1000, output_tokens=300, cached_tokens=400, reasoning_tokens=200)
    assert api_cost(entry, usage) == pytest.approx((600 * 0.25 + 400 * 0.025 + 300 * 2.00) / 1e6)
    entry.price_cached_input = None  # no cached price published: full price
    assert api_cost(entry, usage) == pytest.approx((1000 * 0.25 + 300 * 2.00) / 1e6)
    assert api_cost(Registry().get("smollm2-135m"), usage) is None  # self-hosted: priced by GPU time


def test_flips_column_only_with_repetitions():
    from pytest_distill.core.records import Record, summarize
    from pytest_distill.report.terminal import summary_rows

    def rec(example, rep, outcome):
        return Record(suite="s", suite_path="s", model="m", example_id=example, repetition=rep, outcome=outcome)

    once = summarize([rec("1", 1, "pass"), rec("2", 1, "miss")])
    assert "flips" not in summary_rows(once)[0]
    repeated = summarize([rec("1", 1, "pass"), rec("1", 2, "miss"), rec("2", 1, "pass"), rec("2", 2, "pass")])
    header, row = summary_rows(repeated)
    assert row[header.index("flips")] == "1"
    assert row[header.index("pass rate")] == "75.0±35.4%"
