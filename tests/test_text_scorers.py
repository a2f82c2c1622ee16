"""Short-answer scorers: normalized exact match, token F1, ROUGE-L (pure functions)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from pytest_distill.models.base import Completion
from pytest_distill.scoring import SCORERS
from pytest_distill.scoring.text import (
    answer_text,
    normalize_answer,
    rouge_l,
    score_normalized_exact_match,
    score_rouge_l,
    score_token_f1,
    token_f1,
)


def _example(answer):
    return SimpleNamespace(answer=answer)


@pytest.mark.parametrize(
    ("text", "normal"),
    [
        ("The Eiffel Tower.", "eiffel tower"),
        ("  an  APPLE, a pear ", "apple pear"),
        ("“Lyon”", "lyon"),
        ("ﬁve", "five"),  # NFKC folds the ligature
    ],
)
def test_normalize_answer(text, normal):
    assert normalize_answer(text) == normal


def test_token_f1_matches_squad_definition():
    assert token_f1("Guido van Rossum", "Guido van Rossum") == 1.0
    assert token_f1("Guido van Rossum", "Rossum") == pytest.approx(0.5)  # p=1, r=1/3
    assert token_f1("Haarlem", "Amsterdam") == 0.0
    assert token_f1("the", "a") == 1.0  # both empty after normalization
    assert token_f1("Haarlem", "") == 0.0


def test_rouge_l_is_lcs_f_measure():
    assert rouge_l("the cat sat on the mat", "the cat sat on the mat") == 1.0
    # LCS "the cat the mat" = 4 of 6 reference and 4 of 5 candidate tokens
    assert rouge_l("the cat sat on the mat", "the cat lay the mat") == pytest.approx(
        2 * (4 / 5) * (4 / 6) / (4 / 5 + 4 / 6)
    )
    assert rouge_l("alpha beta", "gamma") == 0.0


def test_exact_match_scorer_ignores_case_articles_and_punctuation():
    assert score_normalized_exact_match(_example("Haarlem"), Completion(text=" haarlem. ")).passed
    assert not score_normalized_exact_match(_example("Haarlem"), Completion(text="Haarlem, Netherlands")).passed
    # several acceptable references
    assert score_normalized_exact_match(_example(["1990", "in 1990"]), Completion(text="In 1990")).passed


def test_f1_and_rouge_scorers_pass_at_their_threshold_and_explain():
    f1 = score_token_f1(_example("Haarlem"), Completion(text="Haarlem, Netherlands"))
    assert f1.passed and f1.value == pytest.approx(2 / 3)
    assert "token F1 0.67" in f1.explanation
    rl = score_rouge_l(_example("Convert a string to a slug"), Completion(text="Make coffee"))
    assert not rl.passed and "ROUGE-L 0.00" in rl.explanation


def test_think_blocks_are_not_part_of_the_answer():
    assert answer_text(Completion(text="<think>Haarlem or Leiden?</think>\nHaarlem")) == "Haarlem"
    assert score_normalized_exact_match(_example("Haarlem"), Completion(text="<think>x</think>Haarlem")).passed


def test_registered_under_their_names():
    for name in ("normalized_exact_match", "token_f1", "rouge_l", "sql_execution", "judge"):
        assert name in SCORERS
