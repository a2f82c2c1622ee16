"""Exact match of a class label after normalization."""

from __future__ import annotations

import re
import string

from pytest_distill.models.base import Completion
from pytest_distill.scoring.base import Score
from pytest_distill.suite.model import Example

_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:label|class|category|answer|intent)\s*(?:is)?\s*[:=\-]?\s*", re.IGNORECASE)
_EDGE = string.punctuation + string.whitespace + "“”‘’«»`"


def normalize_label(text: str) -> str:
    """Case, surrounding whitespace, quotes and punctuation, and a `label:` prefix don't count."""
    value = text.strip().splitlines()[0] if text.strip() else ""
    value = _PREFIX.sub("", value, count=1)
    value = value.strip(_EDGE)
    return re.sub(r"\s+", " ", value).casefold()


def exact_match(expected: str, got: str) -> Score:
    passed = normalize_label(got) == normalize_label(expected)
    shown = got.strip()  # repr() below escapes newlines: the message stays one line
    if len(shown) > 120:
        shown = shown[:117] + "..."
    explanation = f"expected {expected!r}, got {shown!r}"
    return Score(passed=passed, value=1.0 if passed else 0.0, explanation=explanation,
                 expected=expected, got=got.strip())


def score_label(example: Example, completion: Completion) -> Score:
    return exact_match(example.answer, completion.text)
