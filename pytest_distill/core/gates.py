"""Gate verdicts per suite x model, and the run's exit status: pure functions.

A gate is what a suite requires of every model: a minimum pass rate, a maximum error
rate, and (when a baseline is given) a maximum regression in percentage points.
Semantics (docs/gates.md): with a gate, the gate decides and individual misses inside
a passing gate don't fail the run; without any gate, plain pytest (any miss fails).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from pytest_distill.core.records import Summary

EXIT_OK = 0  # pytest.ExitCode values, kept here so this module stays free of pytest
EXIT_TESTS_FAILED = 1


@dataclass(frozen=True)
class Gate:
    min_pass_rate: float | None = None  # 0..1
    max_error_rate: float | None = None  # 0..1; None with a gate means 0: errors are never excused silently
    max_regression: float | None = None  # percentage points below the baseline; None: not checked

    @property
    def active(self) -> bool:
        return any(v is not None for v in (self.min_pass_rate, self.max_error_rate, self.max_regression))


@dataclass(frozen=True)
class GateResult:
    suite: str
    model: str
    passed: bool
    reason: str  # one line: what was required and what was measured
    suite_path: str = ""
    pass_rate: float | None = None  # the rate the gate judged (mean over repetitions when repeated)
    error_rate: float = 0.0
    regression_pp: float | None = None  # baseline rate - this rate, in pp (positive: worse)
    gate: Gate = Gate()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gated_rate(summary: Summary) -> float | None:
    """The rate gates judge: the mean of per-repetition rates when repeated, else the pass rate."""
    return summary.rep_mean if summary.repetitions > 1 else summary.pass_rate


def check_gate(summary: Summary, gate: Gate, regression_pp: float | None = None) -> GateResult:
    """Judge one suite x model. `regression_pp` is the drop from the baseline (None: no baseline)."""
    problems, met = [], []
    rate = gated_rate(summary)
    shown = "no scored items" if rate is None else f"{100 * rate:.1f}%"
    if gate.min_pass_rate is not None:
        if rate is None:  # every item errored: nothing to compare with the limit
            problems.append(f"no scored items (pass rate needs >= {100 * gate.min_pass_rate:.1f}%)")
        elif rate < gate.min_pass_rate:
            problems.append(f"pass rate {shown} < {100 * gate.min_pass_rate:.1f}%")
        else:
            met.append(f"pass rate {shown} >= {100 * gate.min_pass_rate:.1f}%")
    # Errors are limited even when only a pass rate was set: default limit 0.
    max_errors = gate.max_error_rate if gate.max_error_rate is not None else 0.0
    errors = f"error rate {100 * summary.error_rate:.1f}%"
    if summary.error_rate > max_errors:
        problems.append(f"{errors} > {100 * max_errors:.1f}% ({summary.errors} errors)")
    else:
        met.append(f"{errors} <= {100 * max_errors:.1f}%")
    if gate.max_regression is not None and regression_pp is not None:
        # A small tolerance so that e.g. exactly 2.0 pp against a 2 pp limit passes despite float noise.
        drop = f"regression {regression_pp:+.1f} pp vs baseline"
        if regression_pp > gate.max_regression + 1e-9:
            problems.append(f"{drop} > {gate.max_regression:g} pp")
        else:
            met.append(f"{drop} <= {gate.max_regression:g} pp")
    return GateResult(
        summary.suite,
        summary.model,
        not problems,
        "; ".join(problems or met),
        suite_path=summary.suite_path,
        pass_rate=rate,
        error_rate=summary.error_rate,
        regression_pp=regression_pp,
        gate=gate,
    )


def exit_status(
    current: int, results: list[GateResult], failures: int, excused: int, stopped_early: bool = False
) -> int:
    """The run's exit status once gates are applied.

    current: pytest's status; failures: failed test reports in the run; excused: those
    that are misses or errors of a suite x model whose gate passed. Without gate results
    the status is pytest's own. Statuses other than OK / TESTS_FAILED (interrupted,
    usage or internal error, nothing collected) are never changed, and a run stopped
    early (-x, --maxfail) never passes: its gates saw only part of the examples.
    """
    if not results or current not in (EXIT_OK, EXIT_TESTS_FAILED):
        return current
    if any(not r.passed for r in results) or failures - excused > 0:
        return EXIT_TESTS_FAILED
    return current if stopped_early else EXIT_OK
