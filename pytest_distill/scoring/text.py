"""Scorers for short free-text answers: normalized exact match, token F1 and ROUGE-L.

Pure functions, no pytest. As a suite's main scorer they pass at a fixed threshold;
listed under `also` in distill.toml they are only recorded (Record.extra), never gated.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections import Counter
from collections.abc import Callable
from typing import Any

from pytest_distill.models.base import Completion
from pytest_distill.scoring.base import Score
from pytest_distill.suite.model import Example

# Thresholds used only when token F1 / ROUGE-L is a suite's gating scorer.
F1_PASS = 0.5
ROUGE_L_PASS = 0.5

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | set("“”‘’«»–—…")
_THINK = re.compile(r"^\s*<think>.*?</think>\s*", re.DOTALL)
_WORD = re.compile(r"\w+")


def answer_text(completion: Completion | str) -> str:
    """The model's answer without a leading <think> block (reasoning models emit one)."""
    text = completion if isinstance(completion, str) else completion.text
    return _THINK.sub("", text or "", count=1).strip()


def reference_texts(answer: Any) -> list[str]:
    """A reference as text; a list of strings means several acceptable answers."""
    if isinstance(answer, str):
        return [answer]
    if isinstance(answer, list) and answer and all(isinstance(a, str) for a in answer):
        return list(answer)
    return [json.dumps(answer, ensure_ascii=False, sort_keys=True)]


def normalize_answer(text: str) -> str:
    """SQuAD-style: case, punctuation, articles and extra whitespace don't count."""
    text = unicodedata.normalize("NFKC", text).casefold()
    text = "".join(" " if ch in _PUNCT else ch for ch in text)
    text = _ARTICLES.sub(" ", text)
    return " ".join(text.split())


def token_f1(expected: str, got: str) -> float:
    """Harmonic mean of token precision and recall after normalize_answer (SQuAD F1)."""
    ref = normalize_answer(expected).split()
    hyp = normalize_answer(got).split()
    if not ref or not hyp:
        return float(ref == hyp)
    common = sum((Counter(ref) & Counter(hyp)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(hyp), common / len(ref)
    return 2 * precision * recall / (precision + recall)


def _lcs_length(a: list[str], b: list[str]) -> int:
    if len(a) < len(b):
        a, b = b, a
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b, start=1):
            current.append(previous[j - 1] + 1 if x == y else max(previous[j], current[j - 1]))
        previous = current
    return previous[-1]


def rouge_l(expected: str, got: str) -> float:
    """ROUGE-L F1: longest common token subsequence, lower-cased words (no stemming)."""
    ref = _WORD.findall(expected.casefold())
    hyp = _WORD.findall(got.casefold())
    if not ref or not hyp:
        return float(ref == hyp)
    lcs = _lcs_length(ref, hyp)
    if lcs == 0:
        return 0.0
    precision, recall = lcs / len(hyp), lcs / len(ref)
    return 2 * precision * recall / (precision + recall)


def _shown(text: str, limit: int = 120) -> str:
    text = text.replace("\n", "\\n")
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _best(metric: Callable[[str, str], float], example: Example, completion: Completion) -> tuple[float, str, str]:
    """The best value over the acceptable references, with that reference and the answer."""
    got = answer_text(completion)
    value, reference = max((metric(ref, got), ref) for ref in reference_texts(example.answer))
    return value, reference, got


def score_normalized_exact_match(example: Example, completion: Completion) -> Score:
    got = answer_text(completion)
    refs = reference_texts(example.answer)
    norm = normalize_answer(got)
    passed = any(normalize_answer(ref) == norm for ref in refs)
    return Score(
        passed=passed,
        value=float(passed),
        explanation=f"expected {_shown(refs[0])!r}, got {_shown(got)!r} (normalized exact match)",
        expected=refs[0],
        got=got,
    )


def score_token_f1(example: Example, completion: Completion) -> Score:
    value, ref, got = _best(token_f1, example, completion)
    return Score(
        passed=value >= F1_PASS,
        value=value,
        explanation=f"token F1 {value:.2f} (pass >= {F1_PASS}): expected {_shown(ref)!r}, got {_shown(got)!r}",
        expected=ref,
        got=got,
    )


def score_rouge_l(example: Example, completion: Completion) -> Score:
    value, ref, got = _best(rouge_l, example, completion)
    return Score(
        passed=value >= ROUGE_L_PASS,
        value=value,
        explanation=f"ROUGE-L {value:.2f} (pass >= {ROUGE_L_PASS}): expected {_shown(ref)!r}, got {_shown(got)!r}",
        expected=ref,
        got=got,
    )
