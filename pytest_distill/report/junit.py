"""Gate verdicts as JUnit testcases, so CI dashboards show one line per suite x model gate.

Each verdict is handed to the junitxml plugin as a synthetic call + teardown TestReport,
through the plugin's own pytest_runtest_logreport: the plugin then counts it in the
testsuite totals and writes it like any other testcase. The reports go only to that
plugin (not through the hook), so the terminal's pass/fail counts are unchanged. Must
run before the junitxml plugin's pytest_sessionfinish writes the file.
"""

from __future__ import annotations

from typing import Any, Literal

import pytest

from pytest_distill.core.gates import GateResult

GATE_TESTCASE = "distill-gate"


def gate_nodeid(result: GateResult) -> str:
    # "<suite folder>::distill-gate[<model>]" -> classname "suites.banking77", name "distill-gate[model]"
    return f"{result.suite_path or result.suite}::{GATE_TESTCASE}[{result.model}]"


def _log_xml(config: pytest.Config) -> Any | None:
    try:
        from _pytest.junitxml import xml_key
    except ImportError:  # pragma: no cover - a pytest without the stash key
        return None
    return config.stash.get(xml_key, None)


def add_gate_testcases(config: pytest.Config, results: list[GateResult]) -> int:
    """Add one testcase per gate verdict to --junitxml's file; returns how many were added."""
    xml = _log_xml(config)
    if xml is None or not results:
        return 0
    for result in results:
        nodeid = gate_nodeid(result)
        properties = [
            ("distill.gate.suite", result.suite),
            ("distill.gate.model", result.model),
            ("distill.gate.passed", result.passed),
            ("distill.gate.reason", result.reason),
            ("distill.gate.pass_rate", result.pass_rate),
            ("distill.gate.error_rate", result.error_rate),
            ("distill.gate.min_pass_rate", result.gate.min_pass_rate),
            ("distill.gate.max_error_rate", result.gate.max_error_rate),
            ("distill.gate.max_regression", result.gate.max_regression),
            ("distill.gate.regression_pp", result.regression_pp),
        ]
        location = (result.suite_path or result.suite, None, f"{GATE_TESTCASE}[{result.model}]")
        keywords: dict[str, Literal[1]] = {GATE_TESTCASE: 1}
        call = pytest.TestReport(
            nodeid,
            location,
            keywords,
            "passed" if result.passed else "failed",
            None if result.passed else f"gate failed: {result.reason}",
            "call",
        )
        teardown = pytest.TestReport(nodeid, location, keywords, "passed", None, "teardown", user_properties=properties)
        xml.pytest_runtest_logreport(call)
        xml.pytest_runtest_logreport(teardown)
    return len(results)
