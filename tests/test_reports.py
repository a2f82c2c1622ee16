"""--distill-report: results.json (schema, contents, no secrets), report.html, summary.md, step summary."""

from __future__ import annotations

import copy
import json
import re

import jsonschema
import pytest

from pytest_distill.report import html, markdown
from pytest_distill.report.json_report import REDACTED, redact
from pytest_distill.report.results_file import SCHEMA_FILE, schema, validate

from helpers.chat_server import FakeChatServer, distill_project, numbered_rows

GATED = "[gate]\nmin_pass_rate = 0.5\n"
# Fields that measure time: they differ between any two runs.
TIMING = {"latency_s", "finished_at", "cost_usd"}


@pytest.fixture(scope="module")
def server():
    with FakeChatServer(numbered_rows(8)) as fake:
        yield fake


def two_model_report(pytester, server, *args, out="out"):
    distill_project(
        pytester,
        server,
        {"good": "correct", "half": {"spec": "even", "gpu_hourly_usd": 0.01}},
        suites={"topics": GATED},
    )
    result = pytester.runpytest(
        "suites", "-p", "no:cacheprovider", "--model=good", "--model=half", f"--distill-report={out}", *args
    )
    return result, json.loads((pytester.path / out / "results.json").read_text())


def test_schema_file_ships_in_the_package_and_is_a_valid_schema():
    assert SCHEMA_FILE.is_file() and SCHEMA_FILE.parent.name == "report"
    jsonschema.Draft202012Validator.check_schema(schema())


def test_results_json_validates_and_holds_the_run(pytester, server):
    result, doc = two_model_report(pytester, server)
    assert result.ret == 0
    jsonschema.validate(doc, schema())  # the raising form: its message says exactly what is wrong
    assert validate(doc) is None
    assert doc["schema"] == "pytest-distill/results" and doc["schema_version"] == 1
    assert len(doc["records"]) == 16 and {r["outcome"] for r in doc["records"]} == {"pass", "miss"}
    assert [(s["model"], s["pass_rate"]) for s in doc["summaries"]] == [("good", 1.0), ("half", 0.5)]
    assert doc["summaries"][1]["gate"]["passed"] and doc["summaries"][1]["cost"]["per_request"] > 0
    assert doc["suites"]["topics"] == {
        "path": "suites/topics",
        "gate": {"min_pass_rate": 0.5, "max_error_rate": None, "max_regression": None},
    }
    assert doc["run"]["models"] == ["good", "half"] and doc["run"]["repeat"] == 1 and doc["run"]["workers"] == 0
    assert doc["run"]["exit_status"] == 0 and "--model=half" in doc["run"]["args"]
    assert doc["versions"]["pytest-distill"] and doc["versions"]["pytest"] and doc["versions"]["python"]
    assert doc["models"]["half"]["provider"] == "openai-compatible" and doc["models"]["half"]["model"] == "even"
    assert doc["comparisons"][0]["best"] == "good" and doc["comparisons"][0]["ranking"][1]["significant"] is False
    miss = next(r for r in doc["records"] if r["outcome"] == "miss")
    assert miss["output"].startswith("not-") and miss["expected"] and miss["nodeid"].endswith("]")
    result.stdout.fnmatch_lines(
        ["distill report: */out/results.json", "distill report: */out/report.html", "distill report: */out/summary.md"]
    )


def test_schema_rejects_a_broken_document(pytester, server):
    _, doc = two_model_report(pytester, server)
    broken = copy.deepcopy(doc)
    broken["records"][3]["outcome"] = "maybe"
    assert "records/3/outcome" in validate(broken)
    missing = copy.deepcopy(doc)
    del missing["run"]
    assert "'run' is a required property" in validate(missing)


def test_serial_and_xdist_write_the_same_results(pytester, server):
    _, serial = two_model_report(pytester, server, out="serial")
    _, parallel = two_model_report(pytester, server, "-n", "2", out="parallel")
    assert parallel["run"]["workers"] == 2

    def numbers(doc):
        records = [{k: v for k, v in r.items() if k not in TIMING} for r in doc["records"]]
        summaries = [{k: v for k, v in s.items() if not k.startswith(("latency", "cost"))} for s in doc["summaries"]]
        ranking = [
            {k: v for k, v in r.items() if k != "cost_per_request"} for c in doc["comparisons"] for r in c["ranking"]
        ]
        return records, summaries, doc["gates"], ranking

    assert numbers(serial) == numbers(parallel)


def test_results_never_hold_keys(pytester, server, monkeypatch):
    monkeypatch.setenv("FAKE_PROVIDER_KEY", "sk-live-do-not-leak")
    distill_project(
        pytester,
        server,
        {
            "keyed": {
                "spec": "correct",
                "api_key_env": "FAKE_PROVIDER_KEY",
                "params": {"api_key": "sk-param-do-not-leak", "top_k": 1},
            }
        },
    )
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=keyed", "--distill-report=out")
    assert result.ret == 0
    text = "".join((pytester.path / "out" / name).read_text() for name in ("results.json", "report.html", "summary.md"))
    assert "do-not-leak" not in text
    doc = json.loads((pytester.path / "out" / "results.json").read_text())
    assert doc["models"]["keyed"]["api_key_env"] == "FAKE_PROVIDER_KEY"  # the variable's name is fine
    assert doc["models"]["keyed"]["params"] == {"api_key": REDACTED, "top_k": 1}


def test_redact():
    entry = {
        "api_key_env": "OPENAI_API_KEY",
        "max_tokens": 64,
        "params": {"Authorization": "Bearer x", "seed": 1},
        "serve_args": ["--api-key", "abc", "--port", "8000", "--api-key=def"],
        "base_url": "https://user:pw@host.example:8443/v1",
    }
    assert redact(entry) == {
        "api_key_env": "OPENAI_API_KEY",
        "max_tokens": 64,
        "params": {"Authorization": REDACTED, "seed": 1},
        "serve_args": ["--api-key", REDACTED, "--port", "8000", f"--api-key={REDACTED}"],
        "base_url": "https://host.example:8443/v1",
    }


def test_summary_markdown_and_github_step_summary(pytester, server, monkeypatch):
    step = pytester.path / "step_summary.md"
    step.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    _, doc = two_model_report(pytester, server)
    summary = (pytester.path / "out" / "summary.md").read_text()
    assert summary.startswith("## pytest-distill: passed (exit status 0)")
    assert "| topics | half | 8 | 50.0% | 21.5%–78.5% | 0 |" in summary
    assert "**Gates:** 2 passed, 0 failed" in summary
    assert "- **topics**: 1. good 100.0%; 2. half 50.0% (-50.0 pp, p=0.125)" in summary
    assert "topics: route to good" in summary
    assert step.read_text() == "earlier step\n" + summary + "\n"  # appended, not replaced
    assert markdown.render(doc) == summary


def test_step_summary_without_a_report_dir(pytester, server, monkeypatch):
    step = pytester.path / "step.md"
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(step))
    distill_project(pytester, server, {"good": "correct"})
    pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=good")
    assert "| topics | good | 8 | 100.0%" in step.read_text()
    assert not (pytester.path / "out").exists()


def test_report_html_is_self_contained_and_complete(pytester, server):
    _, doc = two_model_report(pytester, server)
    page = (pytester.path / "out" / "report.html").read_text()
    # Nothing to fetch: no external URLs in src/href, no external scripts or styles.
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "<script src" not in page and 'rel="stylesheet"' not in page
    assert "Content-Security-Policy" in page
    assert page.count('<svg class="chart accuracy"') == 1 and page.count('<svg class="chart cost"') == 1
    assert page.count('<svg class="chart latency"') == 1
    assert page.count('class="bar"') == 2 and page.count('class="box"') == 2
    assert 'class="point pareto"' in page and 'class="front"' in page
    misses = re.search(r'<table id="misses">.*?</table>', page, re.S).group(0)
    assert misses.count("<tr>") == 1 + 4  # header + half's 4 misses, expected vs got
    assert "<pre>not-" in misses
    assert html.render(doc) == page


def test_report_html_escapes_model_output(pytester, server):
    _, doc = two_model_report(pytester, server)
    miss = next(r for r in doc["records"] if r["outcome"] == "miss")
    miss["output"] = '</pre><script>alert("x")</script>__SCRIPT__'
    page = html.render(doc)
    assert '<script>alert("x")' not in page and "&lt;script&gt;alert(&quot;x&quot;)" in page
    assert page.count("<script>") == 1  # only the report's own


def test_report_dir_that_cannot_be_written(pytester, server):
    distill_project(pytester, server, {"good": "correct"})
    (pytester.path / "blocked").write_text("a file, not a folder")
    result = pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=good", "--distill-report=blocked")
    assert result.ret == 0
    result.stdout.fnmatch_lines(["distill report not written: *"])


def test_nothing_written_for_collect_only(pytester, server):
    distill_project(pytester, server, {"good": "correct"})
    pytester.runpytest("suites", "-p", "no:cacheprovider", "--model=good", "--distill-report=out", "--collect-only")
    assert not (pytester.path / "out").exists()
