"""Exact match of a class label after normalization."""

from __future__ import annotations

import json
import re
import string
from collections.abc import Iterable

from pytest_distill.models.base import Completion
from pytest_distill.scoring.base import Score
from pytest_distill.suite.model import Example

_PREFIX = re.compile(r"^\s*(?:the\s+)?(?:label|class|category|answer|intent)\s*(?:is)?\s*[:=\-]?\s*", re.IGNORECASE)
_EDGE = string.punctuation + string.whitespace + "“”‘’«»`"


def unwrap_label(text: str) -> str:
    """A label sent as JSON (`"card_arrival"`, `{"label": "card_arrival"}`) is the label."""
    stripped = text.strip()
    if not stripped or stripped[0] not in '{"':
        return text
    try:
        value = json.loads(stripped)
    except ValueError:
        return text
    if isinstance(value, dict) and len(value) == 1:
        value = next(iter(value.values()))
    return value if isinstance(value, str) else text


def normalize_label(text: str) -> str:
    """Case, surrounding whitespace, quotes and punctuation, a `label:` prefix and a JSON
    wrapping don't count. `card arrival` stays another label than `card_arrival`."""
    text = unwrap_label(text)
    value = text.strip().splitlines()[0] if text.strip() else ""
    value = _PREFIX.sub("", value, count=1)
    value = value.strip(_EDGE)
    return re.sub(r"\s+", " ", value).casefold()


def _shown(text: str) -> str:
    shown = text.strip()  # repr() escapes newlines: the message stays one line
    return shown if len(shown) <= 120 else shown[:117] + "..."


def exact_match(expected: str, got: str) -> Score:
    passed = normalize_label(got) == normalize_label(expected)
    explanation = f"expected {expected!r}, got {_shown(got)!r}"
    return Score(
        passed=passed, value=1.0 if passed else 0.0, explanation=explanation, expected=expected, got=got.strip()
    )


def match_label(expected: str, got: str, *, labels: Iterable[str] | None = None, normalize: bool = True) -> Score:
    """exact_match with the normalised values in the explanation (the assert_exact_match
    message): `expected 'card_arrival', got 'card_delivery_estimate' (normalised from
    ' Card Delivery Estimate.')`. With `labels`, the reply is named by the label it
    normalises to, and a reply that is none of them says so."""
    if not normalize:
        passed = got == expected
        return Score(
            passed=passed,
            value=float(passed),
            explanation=f"expected {expected!r}, got {got!r}",
            expected=expected,
            got=got,
        )
    by_key = {normalize_label(label): label for label in labels or ()}
    got_key, expected_key = normalize_label(got), normalize_label(expected)
    shown_got = by_key.get(got_key, got_key)
    passed = got_key == expected_key
    explanation = f"expected {expected!r}, got {shown_got!r}"
    if shown_got != got:
        original = got if len(got) <= 120 else got[:117] + "..."
        explanation += f" (normalised from {original!r})"
    if labels is not None and got_key not in by_key:
        passed = False
        explanation += f", which is none of the {len(by_key)} labels"
    return Score(passed=passed, value=float(passed), explanation=explanation, expected=expected, got=shown_got)


def score_label(example: Example, completion: Completion) -> Score:
    return exact_match(example.answer, completion.text)
