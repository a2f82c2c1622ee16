"""examples/test_python_api.py runs on the embedded model (SmolLM2-135M, in-process): every
test passes or misses, none errors, and the plain tests' calls show in the table."""

from __future__ import annotations

import shutil
import xml.etree.ElementTree as ET

import pytest

from helpers.llama import needs_llama
from helpers.paths import ROOT as REPO
from helpers.suites import summary_row

pytestmark = [needs_llama, pytest.mark.slow]


def test_the_example_module_runs_on_the_embedded_model(pytester):
    # another module name: this test process has imported tests/test_python_api.py already
    shutil.copy(REPO / "examples" / "test_python_api.py", pytester.path / "test_example_api.py")
    for suite in ("trec", "smart-home"):
        shutil.copytree(REPO / "suites" / suite, pytester.path / "suites" / suite)
    result = pytester.runpytest(
        "test_example_api.py",
        "--model=smollm2-135m",
        "--junitxml=out.xml",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:randomly",
    )
    out = result.stdout.str()
    outcomes = result.parseoutcomes()
    assert "errors" not in outcomes and "error" not in outcomes, out
    assert "INTERNALERROR" not in out and "Traceback" not in out
    assert outcomes.get("passed", 0) + outcomes.get("failed", 0) == 6, out
    row = summary_row(out, "test_example_api", "smollm2-135m")  # the three plain tests' calls
    assert row[2] == "3" and int(row[11]) > 0 and int(row[12]) > 0, out
    judged = [
        p for p in ET.parse(pytester.path / "out.xml").iter("property") if p.get("name") == "distill.judge.verdict"
    ]
    assert [p.get("value") for p in judged] in (["good"], ["bad"])
