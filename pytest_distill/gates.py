"""Gate verdicts per suite x model: pure functions over summaries."""

from __future__ import annotations

from dataclasses import dataclass

from .results import Summary


@dataclass(frozen=True)
class Gate:
    min_pass_rate: float | None = None
    max_error_rate: float | None = None

    @property
    def active(self) -> bool:
        return self.min_pass_rate is not None or self.max_error_rate is not None


@dataclass(frozen=True)
class GateResult:
    suite: str
    model: str
    passed: bool
    reason: str  # one line: what was required and what was measured


def check_gate(summary: Summary, gate: Gate) -> GateResult:
    problems = []
    rate = summary.rep_mean if summary.repetitions > 1 else summary.pass_rate
    if gate.min_pass_rate is not None:
        if rate is None or rate < gate.min_pass_rate:
            shown = "no scored items" if rate is None else f"{100 * rate:.1f}%"
            problems.append(f"pass rate {shown} < {100 * gate.min_pass_rate:.1f}%")
    # Errors are limited even when only a pass rate was set: default limit 0.
    max_errors = gate.max_error_rate if gate.max_error_rate is not None else 0.0
    if summary.error_rate > max_errors:
        problems.append(f"error rate {100 * summary.error_rate:.1f}% > {100 * max_errors:.1f}% "
                        f"({summary.errors} errors)")
    if problems:
        return GateResult(summary.suite, summary.model, False, "; ".join(problems))
    shown = "-" if rate is None else f"{100 * rate:.1f}%"
    need = f" >= {100 * gate.min_pass_rate:.1f}%" if gate.min_pass_rate is not None else ""
    return GateResult(summary.suite, summary.model, True, f"pass rate {shown}{need}, error rate "
                      f"{100 * summary.error_rate:.1f}% <= {100 * max_errors:.1f}%")
