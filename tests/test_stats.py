"""stats.py against scipy / numpy, to 1e-9."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats as sps

from pytest_distill.core import stats

TOL = 1e-9


@pytest.mark.parametrize(
    ("k", "n"),
    [(0, 1), (1, 1), (0, 10), (3, 10), (10, 10), (1, 2), (50, 100), (97, 120), (1, 1000), (999, 1000), (12345, 20000)],
)
def test_wilson_matches_scipy(k, n):
    expected = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(k, n)
    assert low == pytest.approx(expected.low, abs=TOL)
    assert high == pytest.approx(expected.high, abs=TOL)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 5000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_matches_scipy_everywhere(kn):
    k, n = kn
    expected = sps.binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
    low, high = stats.wilson_interval(k, n)
    assert abs(low - expected.low) < TOL and abs(high - expected.high) < TOL


def test_wilson_without_data_is_the_whole_range():
    assert stats.wilson_interval(0, 0) == (0.0, 1.0)


@pytest.mark.parametrize(
    ("b", "c"),
    [(0, 0), (0, 1), (1, 0), (3, 3), (0, 6), (6, 0), (2, 9), (10, 25), (40, 41), (100, 140), (0, 60), (333, 300)],
)
def test_mcnemar_exact_matches_scipy_binomial_test(b, c):
    # The exact McNemar test is a two-sided binomial test of b successes in b + c at p = 1/2.
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5, alternative="two-sided").pvalue
    assert stats.mcnemar_exact(b, c) == pytest.approx(expected, abs=TOL)


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 400), st.integers(0, 400))
def test_mcnemar_exact_matches_scipy_everywhere(b, c):
    expected = 1.0 if b + c == 0 else sps.binomtest(b, b + c, 0.5).pvalue
    assert abs(stats.mcnemar_exact(b, c) - expected) < TOL
    assert stats.mcnemar_exact(b, c) == stats.mcnemar_exact(c, b)  # symmetric


def test_mcnemar_of_many_pairs_stays_finite():
    # Large n: exact integer arithmetic, no overflow to inf/nan.
    assert stats.mcnemar_exact(4000, 4300) == pytest.approx(sps.binomtest(4000, 8300).pvalue, abs=TOL)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.floats(0, 1, allow_nan=False), min_size=1, max_size=40))
def test_mean_and_sample_stdev_match_numpy(values):
    assert abs(stats.mean(values) - float(np.mean(values))) < TOL
    expected_std = 0.0 if len(values) == 1 else float(np.std(values, ddof=1))
    assert abs(stats.stdev(values) - expected_std) < TOL


@pytest.mark.parametrize("values", [[0.9], [0.9, 0.8], [0.96, 0.98, 0.97], [0.5, 0.5, 0.5, 1.0]])
def test_stdev_is_scipys_sample_standard_deviation(values):
    expected = float(sps.tstd(values)) if len(values) > 1 else 0.0
    assert stats.stdev(values) == pytest.approx(expected, abs=TOL)


def test_mean_and_stdev_of_nothing():
    assert stats.mean([]) is None and stats.stdev([]) is None


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.floats(0, 100, allow_nan=False), min_size=1, max_size=60), st.sampled_from([0, 5, 25, 50, 95, 99, 100])
)
def test_percentile_matches_numpy_linear(values, q):
    assert abs(stats.percentile(values, q) - float(np.percentile(values, q))) < TOL


def test_percentile_of_nothing():
    assert stats.percentile([], 50) is None
