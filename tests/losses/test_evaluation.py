"""Tests for rljax.losses.evaluation: pass@k (methods/grpo.md E8) and majority vote."""

import math

import numpy as np
import pytest

from rljax.losses.evaluation import maj_at_k, pass_at_k


@pytest.mark.parametrize(
    "n,c,k,expected",
    [
        (10, 3, 1, 0.3),
        (10, 3, 5, 0.916667),
        (10, 3, 8, 1.0),
        (10, 0, 5, 0.0),
        (16, 1, 4, 0.25),
        (64, 2, 16, 0.440476),
    ],
)
def test_pass_at_k_e8(n, c, k, expected):
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-6)


def test_pass_at_k_matches_binomials():
    for n, c, k in [(20, 7, 3), (50, 1, 10), (8, 8, 8), (30, 29, 2)]:
        expected = 1 - math.comb(n - c, k) / math.comb(n, k)
        assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_bad_input():
    with pytest.raises(ValueError, match="num_samples"):
        pass_at_k(0, 0, 1)
    with pytest.raises(ValueError, match="num_correct"):
        pass_at_k(4, 5, 1)
    with pytest.raises(ValueError, match="k must"):
        pass_at_k(4, 1, 5)


def test_maj_at_k(variant):
    answers = np.array(
        [
            [1, 2, 2, -1],  # 2 wins 2 votes to 1 -> correct
            [3, 4, 4, 3],  # tie 3 vs 4 -> 3 (first seen) -> wrong
            [-1, -1, -1, -1],  # nothing parseable -> 0
            [-1, 5, -1, -1],  # invalid samples do not vote; 5 wins
        ]
    )
    correct = np.array([[0, 1, 1, 0], [0, 1, 1, 0], [1, 1, 1, 1], [0, 1, 0, 0]], bool)
    np.testing.assert_array_equal(variant(maj_at_k)(answers, correct), [1, 0, 0, 1])


def test_maj_at_k_bad_input():
    with pytest.raises(ValueError, match="correct"):
        maj_at_k(np.zeros((2, 3), int), np.zeros((2, 2), bool))
