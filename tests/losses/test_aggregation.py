"""Tests for rljax.losses.aggregation against methods/grpo.md E3 and hand derivations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.aggregation import MODES, aggregate, aggregate_sums

# grpo.md E3: per-token losses [1, 2] (n = 2) and [3, 4, 5, 6] (n = 4), T = 4, L_norm = 8.
E3_VALUES = np.array([[1, 2, 0, 0], [3, 4, 5, 6]], np.float32)
E3_MASK = np.array([[1, 1, 0, 0], [1, 1, 1, 1]], np.float32)
E3_EXPECTED = {
    "token-mean": 3.5,
    "seq-mean-token-mean": 3.0,
    "seq-mean-token-sum": 10.5,
    "seq-mean-token-sum-norm": 1.3125,
}


@pytest.mark.parametrize("mode", MODES)
def test_e3(variant, mode):
    fn = variant(functools.partial(aggregate, mode=mode, max_len=8))
    np.testing.assert_allclose(fn(E3_VALUES, E3_MASK), E3_EXPECTED[mode], rtol=1e-7)


def test_sum_norm_defaults_to_t(variant):
    # L_norm = T = 4: (3 + 18) / 4 / 2 = 2.625.
    fn = variant(functools.partial(aggregate, mode="seq-mean-token-sum-norm"))
    np.testing.assert_allclose(fn(E3_VALUES, E3_MASK), 2.625, rtol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_padding_garbage_and_empty_rows(variant, mode):
    # An all-masked row with inf/NaN garbage is excluded (not in B_v, except sum-norm's constant B).
    values = np.concatenate([E3_VALUES, [[np.inf, np.nan, -np.inf, 7]]]).astype(np.float32)
    mask = np.concatenate([E3_MASK, [[0, 0, 0, 0]]]).astype(np.float32)
    expected = dict(E3_EXPECTED, **{"seq-mean-token-sum-norm": 21 / 8 / 3})[mode]
    fn = variant(functools.partial(aggregate, mode=mode, max_len=8))
    np.testing.assert_allclose(fn(values, mask), expected, rtol=1e-6)
    grad = jax.grad(fn)(jnp.asarray(values), mask)
    assert np.all(np.isfinite(grad))
    np.testing.assert_array_equal(grad[2], 0.0)


@pytest.mark.parametrize("mode", MODES)
def test_all_masked_is_zero(mode):
    loss = aggregate(jnp.ones((2, 3)), jnp.zeros((2, 3)), mode=mode)
    assert float(loss) == 0.0


def test_token_mean_gradient():
    # d/dl of sum(mask*l)/sum(mask) is mask/6.
    grad = jax.grad(aggregate)(jnp.asarray(E3_VALUES), E3_MASK)
    np.testing.assert_allclose(grad, E3_MASK / 6, rtol=1e-7)


@pytest.mark.parametrize("mode", MODES)
def test_micro_batch_sums_are_exact(mode):
    whole = aggregate(E3_VALUES, E3_MASK, mode=mode, max_len=8)
    parts = [
        aggregate_sums(E3_VALUES[i : i + 1], E3_MASK[i : i + 1], mode=mode, max_len=8)
        for i in range(2)
    ]
    numerator = sum(p[0] for p in parts)
    denominator = sum(p[1] for p in parts)
    np.testing.assert_allclose(numerator / denominator, E3_EXPECTED[mode], rtol=1e-7)
    # Or: divide each micro-batch by the global denominator and add.
    split = sum(
        aggregate(
            E3_VALUES[i : i + 1], E3_MASK[i : i + 1], mode=mode, max_len=8, denominator=denominator
        )
        for i in range(2)
    )
    np.testing.assert_allclose(split, whole, rtol=1e-7)


def test_bad_input():
    with pytest.raises(ValueError, match="mode='mean'"):
        aggregate(E3_VALUES, E3_MASK, mode="mean")
    with pytest.raises(ValueError, match="mask"):
        aggregate(E3_VALUES, E3_MASK[:, :3])
    with pytest.raises(ValueError, match="values"):
        aggregate(E3_VALUES[0], E3_MASK[0])
    with pytest.raises(ValueError, match="max_len"):
        aggregate(E3_VALUES, E3_MASK, mode="seq-mean-token-sum-norm", max_len=0)
    with pytest.raises(ValueError, match="denominator"):
        aggregate(E3_VALUES, E3_MASK, denominator=jnp.ones(2))
