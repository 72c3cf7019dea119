"""Tests for rljax.losses.shaping: methods/grpo.md E6 (overlong) and E7 (dynamic sampling)."""

import functools

import numpy as np
import pytest

from rljax.losses.shaping import dynamic_sampling_mask, overlong_penalty


def test_overlong_e6(variant):
    fn = variant(functools.partial(overlong_penalty, max_len=20480, buffer_len=4096))
    lengths = np.array([10000, 16384, 17408, 18432, 20480])
    np.testing.assert_allclose(fn(lengths), [0, 0, -0.25, -0.5, -1.0], atol=1e-7)


def test_overlong_factor_and_shape(variant):
    fn = variant(functools.partial(overlong_penalty, max_len=64, buffer_len=16, factor=0.5))
    lengths = np.array([[48, 56], [64, 10]])
    np.testing.assert_allclose(fn(lengths), [[0, -0.25], [-0.5, 0]], atol=1e-7)


def test_dynamic_sampling_e7(variant):
    rewards = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [0, 0, 0, 0]], np.float32)
    np.testing.assert_array_equal(variant(dynamic_sampling_mask)(rewards), [False, True, False])


def test_dynamic_sampling_single_sample_kept(variant):
    np.testing.assert_array_equal(variant(dynamic_sampling_mask)(np.zeros((3, 1))), [True] * 3)


def test_bad_input():
    with pytest.raises(ValueError, match="buffer_len"):
        overlong_penalty(np.array([1]), max_len=10, buffer_len=0)
    with pytest.raises(ValueError, match="buffer_len=20"):
        overlong_penalty(np.array([1]), max_len=10, buffer_len=20)
    with pytest.raises(ValueError, match="rewards"):
        dynamic_sampling_mask(np.zeros(4))
