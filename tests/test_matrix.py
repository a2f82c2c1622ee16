"""The suite x model matrix, its headline, and the routing table: pure units, then the plugin
(a small rehearsal against the fake server, serial and -n 2, with two models tied)."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from pytest_distill.core.compare import compare
from pytest_distill.core.matrix import BEST, LOSS, NONE, TIE, build_matrix, is_frontier
from pytest_distill.core.records import ERROR, MISS, PASS, Record, summarize
from pytest_distill.core.routing import plan_routing, shares
from pytest_distill.report.matrix_view import markdown, terminal_matrix, terminal_routing

from helpers.chat_server import SERIAL, XDIST, FakeChatServer, numbered_rows
from helpers.suites import write_suite


@dataclass(frozen=True)
class Entry:
    self_hosted: bool
    price_input: float | None = None
    price_output: float | None = None
    price_cached_input: float | None = None
    gpu_hourly_usd: float | None = None


ENTRIES = {"distilled": Entry(True), "cheap": Entry(False, 0.5, 1.0), "pricey": Entry(False, 2.0, 8.0)}
TIE_KEYS = {"distilled": (1, 2.4, "distilled"), "cheap": (0, 1.5, "cheap"), "pricey": (0, 10.0, "pricey")}


def records_for(suite: str, model: str, passes: list[bool], repetition: int = 1) -> list[Record]:
    return [
        Record(
            suite=suite,
            suite_path=f"suites/{suite}",
            model=model,
            example_id=f"e{i}",
            repetition=repetition,
            outcome=PASS if ok else MISS,
        )
        for i, ok in enumerate(passes)
    ]


def run(records: list[Record], costs: dict[tuple[str, str], float | None], mix=None):
    summaries = summarize(records)
    comparisons = compare(
        summaries, records, {k: None if v is None else v / 1e6 for k, v in costs.items()}, tie_keys=TIE_KEYS
    )
    matrix = build_matrix(summaries, records, comparisons, costs, ENTRIES, ["distilled", "cheap", "pricey"])
    routing = plan_routing(summaries, comparisons, costs, ENTRIES, TIE_KEYS, mix)
    return matrix, routing


# Suite a: distilled 20/20, pricey 18/20 (2 discordant: p=0.5, a tie), cheap 0/20 (a loss).
# Suite b: cheap and pricey 20/20 (tied: the cheaper listed price ranks first), distilled 0/20.
RECORDS = (
    records_for("a", "distilled", [True] * 20)
    + records_for("a", "pricey", [False] * 2 + [True] * 18)
    + records_for("a", "cheap", [False] * 20)
    + records_for("b", "distilled", [False] * 20)
    + records_for("b", "cheap", [True] * 20)
    + records_for("b", "pricey", [True] * 20)
)
COSTS = {
    ("a", "distilled"): 10.0,
    ("a", "cheap"): 50.0,
    ("a", "pricey"): 400.0,
    ("b", "distilled"): 10.0,
    ("b", "cheap"): 60.0,
    ("b", "pricey"): 500.0,
}


def test_matrix_marks_best_ties_by_the_paired_test_and_tallies():
    matrix, _ = run(RECORDS, COSTS)
    assert matrix is not None
    status = {(c.suite, c.model): c.status for c in matrix.cells}
    assert status == {
        ("a", "distilled"): BEST,
        ("a", "pricey"): TIE,
        ("a", "cheap"): LOSS,
        ("b", "cheap"): BEST,
        ("b", "pricey"): TIE,
        ("b", "distilled"): LOSS,
    }
    assert matrix.models == ("distilled", "cheap", "pricey")
    assert [(t.model, t.wins, t.ties, t.losses) for t in matrix.tallies] == [
        ("distilled", 1, 0, 1),
        ("cheap", 1, 0, 1),
        ("pricey", 0, 2, 0),
    ]
    assert matrix.cell("a", "cheap").per_million == 50.0


def test_a_tie_is_not_overlapping_intervals():
    # 15/20 vs 20/20: the Wilson intervals overlap (55-89% vs 84-100%), yet all five
    # discordant pairs go one way: p = 0.0625 (a tie at 0.05)... and at 6 of 20 p = 0.031 (a loss).
    five = records_for("a", "distilled", [True] * 20) + records_for("a", "cheap", [False] * 5 + [True] * 15)
    six = records_for("b", "distilled", [True] * 20) + records_for("b", "cheap", [False] * 6 + [True] * 14)
    matrix, _ = run(five + six, {})
    assert matrix.cell("a", "cheap").status == TIE and matrix.cell("a", "cheap").p_value == pytest.approx(0.0625)
    assert matrix.cell("b", "cheap").status == LOSS and matrix.cell("b", "cheap").p_value == pytest.approx(0.03125)


def test_headline_counts_suites_not_significantly_worse_than_the_best_capped_frontier_model():
    matrix, _ = run(RECORDS, COSTS)
    # Under $1/MTok input: only "cheap" (0.5); a: distilled 20/20 vs cheap 0/20 (beats);
    # b: 0/20 vs 20/20 (p < 0.05: worse).
    assert matrix.headline == "distilled matches or beats the best frontier model under $1/MTok input on 1/2 suites"
    assert matrix.headlines[0].against == (("a", "cheap"), ("b", "cheap"))
    assert is_frontier(ENTRIES["pricey"]) and not is_frontier(ENTRIES["distilled"])


def test_headline_none_without_a_capped_frontier_model():
    records = [r for r in RECORDS if r.model != "cheap"]
    matrix, _ = run(records, COSTS)
    assert matrix.headline is None and matrix.headlines == ()
    assert "headline: none" in terminal_matrix(matrix.to_dict())[-1]


def test_repeats_show_mean_and_std_and_an_all_error_model_is_none():
    records = (
        records_for("a", "distilled", [True, True, False, False], 1)
        + records_for("a", "distilled", [True, True, True, False], 2)
        + records_for("a", "cheap", [True] * 4)
        + [Record(suite="b", suite_path="suites/b", model="cheap", example_id="e0", repetition=1, outcome=ERROR)]
        + records_for("b", "distilled", [True] * 4)
    )
    matrix, _ = run(records, {})
    cell = matrix.cell("a", "distilled")
    assert cell.rate == pytest.approx(0.625) and cell.std == pytest.approx(0.1767767) and cell.repetitions == 2
    assert matrix.cell("b", "cheap").status == NONE
    text = "\n".join(terminal_matrix(matrix.to_dict()))
    assert "62.5±17.7%" in text


def test_no_matrix_for_one_suite_or_one_model():
    one_suite = [r for r in RECORDS if r.suite == "a"]
    one_model = [r for r in RECORDS if r.model == "cheap"]
    assert run(one_suite, COSTS)[0] is None and run(one_model, COSTS)[0] is None
    assert run(one_suite, COSTS)[1] is None  # one suite: its own route says it


def test_routing_blends_the_routes_and_compares_with_the_best_frontier_model():
    _, routing = run(RECORDS, COSTS)
    assert [(r.suite, r.model, r.share) for r in routing.rows] == [("a", "distilled", 0.5), ("b", "cheap", 0.5)]
    assert routing.blended_per_million == pytest.approx(0.5 * 10 + 0.5 * 60)
    # pricey's mean rate (0.95) beats cheap's (0.5): it is the best frontier model.
    assert routing.frontier_model == "pricey"
    assert routing.frontier_per_million == pytest.approx(450.0)
    assert routing.saving == pytest.approx(1 - 35 / 450)
    lines = terminal_routing(routing.to_dict())
    assert any("saves 92.2%" in line for line in lines)


def test_traffic_mix_weights_and_notes():
    _, routing = run(RECORDS, COSTS, {"a": 3, "c": 1})
    assert [r.share for r in routing.rows] == [1.0, 0.0]
    assert routing.blended_per_million == pytest.approx(10.0)
    assert routing.notes == ("traffic mix names suites not in this run: c", "traffic mix gives no traffic to: b")
    assert shares(["a", "b"], {"a": 0})[0] == {"a": 0.5, "b": 0.5}


def test_unknown_cost_leaves_the_blend_unknown():
    costs = dict(COSTS)
    costs[("b", "cheap")] = None
    costs[("b", "pricey")] = None
    _, routing = run(RECORDS, costs)
    # No cost within tolerance on b: served by its best, and the blend is unknown.
    assert routing.rows[1].model == "cheap" and routing.blended_per_million is None and routing.saving is None
    assert any(n.startswith("b: no cost known") for n in routing.notes)


def test_markdown_has_the_matrix_routing_and_headline():
    matrix, routing = run(RECORDS, COSTS)
    text = "\n".join(markdown(matrix.to_dict(), routing.to_dict()))
    assert "| a | **\\*100.0% $10.00** | 0.0% $50.00 | =90.0% $400 |" in text
    assert "| **wins/ties/losses** | 1/0/1 | 1/0/1 | 0/2/0 |" in text
    assert "**distilled matches or beats" in text and "| b | cheap | 50% |" in text


# --- the plugin: a small rehearsal against the fake server --------------------

ROWS = numbered_rows(16)  # suite a: rows 1-8; suite b: rows 9-16


def _project(pytester, server: FakeChatServer) -> None:
    write_suite(pytester.path / "suites" / "a", rows=ROWS[:8])
    write_suite(pytester.path / "suites" / "b", rows=ROWS[8:])

    def api(name: str, spec: str, price_in: float, price_out: float) -> str:
        return (
            f'["{name}"]\nprovider = "openai"\nmodel = "{spec}"\nbase_url = "{server.url}"\n'
            f'api_key_env = "FAKE_API_KEY"\nmax_retries = 0\nconstraint_style = "none"\n'
            f"price_input = {price_in}\nprice_output = {price_out}\n\n"
        )

    # Names against prices: the tie on b is broken by price (z-cheap first), not by name.
    pytester.makefile(
        ".toml",
        models=server.models_toml(distilled="wrong:9,10,11,12,13,14,15,16")
        + api("z-cheap", "wrong:1,2,3,4,5,6,7,8", 0.5, 1.0)
        + api("a-pricey", "wrong:1", 2.0, 8.0),
    )


def run_rehearsal(pytester, *args: str):
    """Two suites x three models (distilled, z-cheap, a-pricey) on the fake server, reports in
    out/; the caller sets FAKE_API_KEY."""
    with FakeChatServer(ROWS) as server:
        _project(pytester, server)
        return pytester.runpytest(
            "suites",
            "-p",
            "no:cacheprovider",
            "--model=distilled",
            "--model=z-cheap",
            "--model=a-pricey",
            "--distill-report=out",
            *args,
        )


def _decisions(document: dict) -> dict:
    matrix, routing = document["matrix"], document["routing"]
    return {
        "cells": [(c["suite"], c["model"], c["rate"], c["status"], c["p_value"]) for c in matrix["cells"]],
        "tallies": matrix["tallies"],
        "headline": matrix["headline"],
        "ranks": [[(r["model"], r["rank"]) for r in c["ranking"]] for c in document["comparisons"]],
        "routes": [c["route"]["model"] for c in document["comparisons"]],
        "served": [(r["suite"], r["model"], r["share"]) for r in routing["rows"]],
        "frontier": routing["frontier_model"],
    }


@pytest.mark.parametrize("args", [SERIAL, XDIST])
def test_rehearsal_matrix_and_routes(pytester, monkeypatch, args):
    monkeypatch.setenv("FAKE_API_KEY", "sk-fake")
    result = run_rehearsal(pytester, *args)
    out = result.stdout.str()
    assert "matrix: pass rate and $ per million requests, suites x models" in out
    assert "distilled matches or beats the best frontier model under $1/MTok input on 1/2 suites" in out
    assert "routing: which model serves which task (equal traffic per suite)" in out
    assert "all traffic to the best frontier model (a-pricey)" in out
    document = json.loads((pytester.path / "out" / "results.json").read_text())
    decisions = _decisions(document)
    assert decisions["cells"] == [
        ("a", "distilled", 1.0, "best", None),
        ("a", "z-cheap", 0.0, "loss", pytest.approx(0.0078125)),
        ("a", "a-pricey", 0.875, "tie", 1.0),
        ("b", "distilled", 0.0, "loss", pytest.approx(0.0078125)),
        ("b", "z-cheap", 1.0, "best", None),
        ("b", "a-pricey", 1.0, "tie", 1.0),
    ]
    assert decisions["ranks"][1] == [("z-cheap", 1), ("a-pricey", 2), ("distilled", 3)]
    assert decisions["routes"] == ["distilled", "z-cheap"]
    assert decisions["served"] == [("a", "distilled", 0.5), ("b", "z-cheap", 0.5)]
    assert decisions["frontier"] == "a-pricey"
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert "**Matrix**" in summary and "**Routing**" in summary
    page = (pytester.path / "out" / "report.html").read_text()
    assert 'table class="matrix"' in page and 'table class="routing"' in page
    assert "sk-fake" not in out + summary + page


@pytest.mark.parametrize(
    ("mix", "message"),
    [("a=x", "'a=x' is not SUITE=WEIGHT"), ("a=1,a=2", "names a twice"), ("a=-1", "'a=-1' is not SUITE=WEIGHT")],
)
def test_bad_traffic_mix_is_one_line(pytester, mix, message):
    write_suite(pytester.path / "suites" / "a", rows=ROWS[:2])
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", f"--distill-traffic-mix={mix}")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines([f"*--distill-traffic-mix*{message}*"])
    assert "Traceback" not in result.stderr.str()
