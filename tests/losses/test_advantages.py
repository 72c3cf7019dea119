"""Tests for rljax.losses.advantages against methods/grpo.md E1 and hand derivations."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.advantages import group_advantages, rloo_advantages

# grpo.md E1, G = 4: rewards -> (GRPO unbiased eps 1e-6, Dr.GRPO, RLOO).
E1_REWARDS = np.array([[1, 0, 0, 0], [0.9, 0.8, 0.7, 0.85], [1, 1, 1, 1]], np.float32)
E1_GRPO = [
    [1.499997, -0.499999, -0.499999, -0.499999],
    [1.02468, -0.146383, -1.31745, 0.439150],
    [0, 0, 0, 0],
]
E1_DRGRPO = [[0.75, -0.25, -0.25, -0.25], [0.0875, -0.0125, -0.1125, 0.0375], [0, 0, 0, 0]]
E1_RLOO = [[1, -0.333333, -0.333333, -0.333333], [0.116667, -0.0166667, -0.15, 0.05], [0, 0, 0, 0]]


def test_grpo_e1(variant):
    np.testing.assert_allclose(variant(group_advantages)(E1_REWARDS), E1_GRPO, rtol=5e-6, atol=1e-6)


def test_drgrpo_e1(variant):
    fn = variant(functools.partial(group_advantages, scale="none"))
    np.testing.assert_allclose(fn(E1_REWARDS), E1_DRGRPO, atol=1e-6)


def test_rloo_e1(variant):
    np.testing.assert_allclose(variant(rloo_advantages)(E1_REWARDS), E1_RLOO, atol=1e-6)


def test_single_sample_group_e1(variant):
    rewards = np.array([[0.7]], np.float32)
    np.testing.assert_allclose(variant(group_advantages)(rewards), [[0.6999993]], rtol=1e-7)
    fn = variant(functools.partial(group_advantages, scale="none"))
    np.testing.assert_allclose(fn(rewards), [[0.7]], rtol=1e-7)
    np.testing.assert_allclose(variant(rloo_advantages)(rewards), [[0.7]], rtol=1e-7)


def test_population_std(variant):
    # [1,0,0,0]: population sigma = sqrt(0.1875) = 0.4330127; A = (r - 0.25) / (sigma + 1e-6).
    fn = variant(functools.partial(group_advantages, std="population"))
    sigma = np.sqrt(0.1875)
    expected = (np.array([1, 0, 0, 0]) - 0.25) / (sigma + 1e-6)
    np.testing.assert_allclose(fn(E1_REWARDS[:1]), expected[None], rtol=1e-6)


@pytest.mark.parametrize("std", ["unbiased", "population"])
def test_all_equal_non_dyadic_group_is_exactly_zero(variant, std):
    # 1.1 is not representable: the float32 mean of three 1.1s rounds away from 1.1, and without
    # the all-equal rule that residue divided by a ~1e-8 std gave A = -0.104 (grpo.md: exactly 0).
    rewards = np.full((2, 3), 1.1, np.float32)
    rewards[1] = [0.3, 0.3, 0.3]
    for fn in (
        functools.partial(group_advantages, std=std, eps=1e-8),
        functools.partial(group_advantages, scale="none"),
        rloo_advantages,
    ):
        np.testing.assert_array_equal(variant(fn)(rewards), np.zeros((2, 3), np.float32))


def test_rloo_is_scaled_drgrpo():
    rng = np.random.default_rng(0)
    rewards = rng.uniform(size=(5, 6)).astype(np.float32)
    expected = 6 / 5 * (rewards - rewards.mean(1, keepdims=True))
    np.testing.assert_allclose(rloo_advantages(rewards), expected, atol=1e-6)


def test_no_gradient_into_rewards():
    rewards = jnp.asarray(E1_REWARDS[:2])
    for fn in (
        group_advantages,
        functools.partial(group_advantages, scale="none"),
        rloo_advantages,
    ):
        grad = jax.grad(lambda r, f=fn: jnp.sum(f(r) * jnp.arange(4.0)[None]))(rewards)
        np.testing.assert_array_equal(grad, 0.0)


def test_vmap_over_batches():
    stacked = np.stack([E1_REWARDS, E1_REWARDS[::-1]])
    out = jax.vmap(group_advantages)(stacked)
    np.testing.assert_allclose(out[1], np.asarray(E1_GRPO)[::-1], rtol=5e-6, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="rewards"):
        group_advantages(jnp.ones(4))
    with pytest.raises(ValueError, match="rewards"):
        rloo_advantages(jnp.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="scale='zscore'"):
        group_advantages(E1_REWARDS, scale="zscore")
    with pytest.raises(ValueError, match="std='biased'"):
        group_advantages(E1_REWARDS, std="biased")
    with pytest.raises(ValueError, match="eps"):
        group_advantages(E1_REWARDS, eps=0.0)
