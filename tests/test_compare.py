"""Model comparison: ranking, paired McNemar against the best, routing advice."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
from scipy import stats as sps

from pytest_distill.core.compare import Ranked, compare, example_outcomes, paired_test, route
from pytest_distill.core.cost import tie_key
from pytest_distill.core.records import MISS, PASS, Record, summarize
from pytest_distill.report.comparison_text import cost_ratio_text, route_text

from helpers.chat_server import FakeChatServer, distill_project, numbered_rows


def records(model: str, outcomes: str, suite: str = "s", repetition: int = 1) -> list[Record]:
    """'PPM.E' -> pass, pass, miss, skip, error for examples 0001.. (one repetition)."""
    kinds = {"P": PASS, "M": MISS, "E": "error", ".": "skip"}
    return [
        Record(
            suite=suite,
            suite_path=f"suites/{suite}",
            model=model,
            example_id=f"{i:04d}",
            repetition=repetition,
            outcome=kinds[c],
        )
        for i, c in enumerate(outcomes, start=1)
    ]


def test_majority_rule_over_repetitions():
    rs = records("m", "PPMM", repetition=1) + records("m", "PMPM", repetition=2) + records("m", "PPPM", repetition=3)
    assert example_outcomes(rs) == {"0001": True, "0002": True, "0003": True, "0004": False}
    tie = records("m", "P", repetition=1) + records("m", "M", repetition=2)
    assert example_outcomes(tie) == {"0001": False}  # a tie counts as a miss
    assert example_outcomes(records("m", "E.")) == {}  # errors and skips are not outcomes


def test_paired_test_counts_discordant_pairs_on_shared_examples_only():
    a = example_outcomes(records("a", "PPPPPPPPMM"))
    b = example_outcomes(records("b", "PMMMMMMMPM" + "PP"))  # two extra examples a doesn't have
    shared, a_only, b_only, p = paired_test(a, b)
    assert (shared, a_only, b_only) == (10, 7, 1)
    assert p == pytest.approx(sps.binomtest(1, 8).pvalue, abs=1e-12)


def test_ranking_and_significance():
    rs = records("best", "P" * 20) + records("close", "P" * 19 + "M") + records("poor", "P" * 10 + "M" * 10)
    (comparison,) = compare(summarize(rs), rs, costs={})
    assert [r.model for r in comparison.ranking] == ["best", "close", "poor"]
    best, close, poor = comparison.ranking
    assert best.p_value is None and best.delta_pp == 0.0
    assert close.delta_pp == pytest.approx(-5.0) and not close.significant and close.p_value == 1.0
    assert poor.significant and poor.p_value == pytest.approx(2 / 2**10)
    assert (poor.paired, poor.best_only, poor.this_only) == (20, 10, 0)
    assert comparison.route is None  # no costs, no advice


def test_one_model_no_comparison():
    rs = records("only", "PPM")
    assert compare(summarize(rs), rs, costs={}) == []


def test_ties_rank_the_lower_listed_price_first_not_the_measured_cost():
    rs = records("pricey", "PPPM") + records("cheap", "PPPM")
    keys = {
        "pricey": tie_key(_Priced(price_input=5.0, price_output=15.0), "pricey"),
        "cheap": tie_key(_Priced(price_input=0.1, price_output=0.4), "cheap"),
    }
    # The measured costs say the opposite (timing noise on a self-hosted model would): the prices decide.
    (comparison,) = compare(summarize(rs), rs, costs={("s", "pricey"): 0.1, ("s", "cheap"): 1.0}, tie_keys=keys)
    assert comparison.best == "cheap"
    assert comparison.route.is_best and comparison.route.model == "cheap"


def test_self_hosted_ties_go_to_the_lower_hourly_price_then_the_name():
    rs = records("b-gpu", "PPPM") + records("a-gpu", "PPPM") + records("c-cheap-gpu", "PPPM")
    keys = {
        "b-gpu": tie_key(_Priced(self_hosted=True, gpu_hourly_usd=2.0), "b-gpu"),
        "a-gpu": tie_key(_Priced(self_hosted=True, gpu_hourly_usd=2.0), "a-gpu"),
        "c-cheap-gpu": tie_key(_Priced(self_hosted=True, gpu_hourly_usd=0.5), "c-cheap-gpu"),
    }
    (comparison,) = compare(
        summarize(rs), rs, costs={("s", "a-gpu"): 3e-6, ("s", "b-gpu"): 1e-6, ("s", "c-cheap-gpu"): 2e-6}, tie_keys=keys
    )
    assert [r.model for r in comparison.ranking] == ["c-cheap-gpu", "a-gpu", "b-gpu"]
    assert comparison.route.model == "c-cheap-gpu"  # not b-gpu, whose measured cost is lowest


@dataclass
class _Priced:
    self_hosted: bool = False
    price_input: float | None = None
    price_output: float | None = None
    price_cached_input: float | None = None
    gpu_hourly_usd: float | None = None


def test_routes_to_the_cheapest_model_within_the_tolerance():
    rs = records("frontier", "P" * 100) + records("distilled", "P" * 99 + "M") + records("tiny", "P" * 90 + "M" * 10)
    costs = {("s", "frontier"): 1.2e-3, ("s", "distilled"): 1e-5, ("s", "tiny"): 1e-7}
    (comparison,) = compare(summarize(rs), rs, costs, tolerance_pp=1.0)
    assert comparison.route.model == "distilled" and comparison.route.delta_pp == pytest.approx(-1.0)
    assert route_text(comparison) == "s: route to distilled (-1.0 pp, 1/120 of the cost)"
    (wide,) = compare(summarize(rs), rs, costs, tolerance_pp=10.0)
    assert wide.route.model == "tiny"
    (strict,) = compare(summarize(rs), rs, costs, tolerance_pp=0.5)
    assert strict.route.model == "frontier" and strict.route.is_best
    assert "most accurate is also the cheapest" in route_text(strict)


def test_equal_rates_route_by_the_tie_rule_and_say_so():
    rs = records("a", "P" * 5 + "M" * 5) + records("b", "P" * 5 + "M" * 5)
    costs = {("s", "a"): 2e-3, ("s", "b"): 1e-3}  # b measured cheaper: a timing, not a reason
    (comparison,) = compare(summarize(rs), rs, costs, tie_keys={"a": (1, 2.4, "a"), "b": (1, 2.4, "b")})
    assert comparison.route.model == "a" and comparison.route.is_best
    assert route_text(comparison) == (
        "s: route to a (the same pass rate as b: equal rates go by listed price or GPU $/hour, "
        "then name, not by a measured cost)"
    )


def test_models_without_cost_are_not_routed_to():
    ranking = [Ranked("a", 1, 0.9, 0.0, cost_per_request=None), Ranked("b", 2, 0.9, 0.0, cost_per_request=2e-6)]
    chosen = route(ranking, 1.0)
    assert chosen.model == "b" and chosen.cost_ratio is None
    assert route([Ranked("a", 1, 0.9, 0.0), Ranked("b", 2, 0.9, 0.0)], 1.0) is None


@pytest.mark.parametrize(
    ("ratio", "text"),
    [
        (1 / 120, "1/120 of the cost"),
        (0.5, "1/2 of the cost"),
        (0.8, "80% of the cost"),
        (1.0, "100% of the cost"),
        (3.0, "3.0x the cost"),
        (0.0, "free"),
        (None, "cost of the best unknown"),
    ],
)
def test_cost_ratio_text(ratio, text):
    assert cost_ratio_text(ratio) == text


def test_comparison_with_repetitions_uses_the_mean_rate_and_majority_pairs():
    rs = (
        records("a", "PPPP", repetition=1)
        + records("a", "PPPM", repetition=2)
        + records("b", "PMMM", repetition=1)
        + records("b", "PPMM", repetition=2)
    )
    (comparison,) = compare(summarize(rs), rs, costs={})
    a, b = comparison.ranking
    assert a.rate == pytest.approx(0.875) and b.rate == pytest.approx(0.375)
    # majority: a passes 0001..0003 (0004 is 1 of 2: a miss); b passes only 0001
    assert (b.best_only, b.this_only) == (2, 0)


# --- end to end -------------------------------------------------------------------


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(numbered_rows(10)) as fake:
        yield fake


def test_two_model_run_ranks_tests_and_routes(pytester, server):
    distill_project(
        pytester,
        server,
        {
            "frontier": {"spec": "correct", "gpu_hourly_usd": 1000.0},
            "distilled": {"spec": "wrong:3", "gpu_hourly_usd": 0.001},
        },
    )
    result = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--model=frontier", "--model=distilled", "--route-tolerance=10"
    )
    result.stdout.fnmatch_lines(
        [
            "topics: ranking, each vs the best by exact McNemar on shared examples (alpha 0.05)",
            "  1. frontier   100.0%*best",
            "  2. distilled   90.0%   -10.0 pp  p=1 not significant (paired on 10: 1 vs 0 discordant)",
            "topics: route to distilled (-10.0 pp, 1/* of the cost)",
        ]
    )
    default = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=frontier", "--model=distilled")
    default.stdout.fnmatch_lines(["topics: route to frontier (the most accurate is also the cheapest within 1 pp)"])


def test_bad_route_tolerance_is_a_usage_error(pytester, server):
    distill_project(pytester, server, {"a": "correct"})
    result = pytester.runpytest("suites", "--model=a", "--route-tolerance=-1")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
