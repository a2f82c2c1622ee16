"""The result every scorer returns. Scorers are pure: no pytest, no I/O."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Score:
    passed: bool
    value: float  # 0..1; partial credit for staged scorers
    explanation: str  # one line, shown as the assertion message of a miss
    expected: str = ""
    got: str = ""
    details: dict[str, Any] = field(default_factory=dict)


class ScoringError(Exception):
    """The answer could not be scored (the judge never gave a readable verdict, the reference
    query fails): an error, never a pass or a miss."""
