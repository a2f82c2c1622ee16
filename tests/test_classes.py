"""Classification suites: the most frequent confusions and per-class precision, recall and F1."""

from __future__ import annotations

import json

import pytest

from pytest_distill.core.classes import by_suite_model, class_metrics, confusions, macro_f1, pairs
from pytest_distill.core.records import Record
from pytest_distill.report import classes

from helpers.chat_server import FakeChatServer, distill_project, numbered_rows


def _r(expected, output, outcome=None, *, suite="s", model="m", scorer="exact_match", i=[0]):  # noqa: B006
    i[0] += 1
    outcome = outcome or ("pass" if expected == output else "miss")
    return Record(suite, suite, model, f"{i[0]:04d}", 1, outcome, expected=expected, output=output, scorer=scorer)


RECORDS = [
    _r("a", "a"),
    _r("a", "a"),
    _r("a", "b"),
    _r("a", "b"),
    _r("a", " B. "),  # read back as the label it names
    _r("b", "b"),
    _r("b", "a"),
    _r("c", "c"),
    _r("c", "something else"),
]


def test_answers_are_read_back_as_labels():
    assert pairs([_r("a", " B. "), _r("b", "B", "pass"), _r("a", "zzz")]) == [("a", "b"), ("b", "b"), ("a", "zzz")]


def test_the_most_frequent_confusions_first():
    assert [(c.expected, c.got, c.count) for c in confusions(RECORDS)] == [
        ("a", "b", 3),
        ("b", "a", 1),
        ("c", "something else", 1),
    ]
    assert len(confusions(RECORDS, top=1)) == 1
    assert confusions([_r("a", "a")]) == []


def test_precision_recall_f1_and_support_per_class():
    metrics = {m.label: m for m in class_metrics(RECORDS)}
    assert set(metrics) == {"a", "b", "c"}  # the expected labels
    a, b, c = metrics["a"], metrics["b"], metrics["c"]
    assert (a.support, a.predicted, a.precision, a.recall) == (5, 3, 2 / 3, 2 / 5)
    assert a.f1 == pytest.approx(2 * (2 / 3) * (2 / 5) / (2 / 3 + 2 / 5))
    assert (b.support, b.predicted, b.precision, b.recall) == (2, 4, 1 / 4, 1 / 2)
    assert (c.support, c.predicted, c.precision, c.recall, c.f1) == (2, 1, 1.0, 0.5, pytest.approx(2 / 3))
    assert macro_f1(metrics.values()) == pytest.approx((a.f1 + b.f1 + c.f1) / 3)


def test_a_label_never_predicted_has_no_precision_and_f1_zero():
    (only,) = class_metrics([_r("a", "b")])
    assert only.label == "a" and only.precision is None and only.recall == 0 and only.f1 == 0
    assert macro_f1([]) is None


def test_only_scored_classification_records_count():
    records = [*RECORDS, _r("x", "y", scorer="token_f1"), _r("a", "", "error"), _r("a", "b", model="other")]
    groups = by_suite_model(records)
    assert list(groups) == [("s", "m"), ("s", "other")] and len(groups[("s", "m")]) == len(RECORDS)


def test_reports_render_them():
    line = classes.terminal_lines(RECORDS)
    assert line == [
        "confusions s x m (macro-F1 "
        + line[0].split("macro-F1 ")[1].split(")")[0]
        + "): a → b 3, b → a 1, c → something else 1"
    ]
    assert "| s | m | a → b | 3 |" in classes.markdown_lines(RECORDS)
    section = classes.html_section(RECORDS, "s")
    assert section.count('<table class="per-class">') == 1 and "<td>c</td>" in section and "macro-F1" in section
    assert classes.html_section(RECORDS, "other suite") == ""


def test_a_run_shows_confusions_and_the_per_class_table(pytester):
    with FakeChatServer(numbered_rows(8)) as server:
        distill_project(pytester, server, {"half": "even"})
        result = pytester.runpytest("suites", "--model=half", "-p", "no:cacheprovider", "--distill-report=out")
    out = result.stdout.str()
    assert "confusions topics x half (macro-F1 " in out and "sports → not-sports 3, food → not-food 1" in out
    assert "**Most frequent confusions**" in (pytester.path / "out" / "summary.md").read_text()
    page = (pytester.path / "out" / "report.html").read_text()
    assert '<table class="per-class">' in page and "per-class precision, recall and F1" in page
    assert json.loads((pytester.path / "out" / "results.json").read_text())["suites"]["topics"].get("sample") is None
