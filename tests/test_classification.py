"""Exact match after normalization: what may differ, and what may not."""

from __future__ import annotations

import pytest

from pytest_distill.scoring.classification import exact_match, normalize_label


@pytest.mark.parametrize(
    "got",
    [
        "card_arrival",
        "Card_Arrival",
        "  card_arrival\n",
        "'card_arrival'",
        '"card_arrival".',
        "label: card_arrival",
        "Label = card_arrival",
        "The answer is card_arrival",
        "`card_arrival`",
        "Intent: card_arrival!",
        "card_arrival\nBecause the card has not arrived.",
    ],
)
def test_equivalent_spellings_match(got):
    assert exact_match("card_arrival", got).passed


@pytest.mark.parametrize("got", ["card_delivery_estimate", "card arrival", "card_arrival_x", "", "arrival"])
def test_other_labels_do_not_match(got):
    assert not exact_match("card_arrival", got).passed


def test_labels_ending_in_punctuation_keep_their_identity():
    # BANKING77 has a label that ends in "?": stripping punctuation must not merge labels.
    assert exact_match("reverted_card_payment?", "reverted_card_payment?").passed
    assert normalize_label("Refund_not_showing_up") == "refund_not_showing_up"


def test_miss_explains_in_one_line():
    score = exact_match("sports", "weather\nand more")
    assert not score.passed and score.value == 0.0
    assert score.explanation == "expected 'sports', got 'weather\\nand more'"
    assert "\n" not in score.explanation
