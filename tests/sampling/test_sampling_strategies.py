"""Strategies: hand-worked and numpy-checked sampling distributions, draws, validation."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sampling_oracles import numpy_sampling_log_probs

from rljax.sampling import Greedy, Temperature


def test_hand_worked_top_k_and_top_p():
    logits = jnp.array([[0.0, 1.0, 2.0, 3.0]])
    # top_k=2 keeps {2, 3}: p(3) = e / (1 + e)
    got = np.asarray(Temperature(top_k=2).log_probs(logits))[0]
    np.testing.assert_allclose(got[2:], [-math.log1p(math.e), 1 - math.log1p(math.e)], rtol=1e-6)
    assert np.all(np.isneginf(got[:2]))
    # softmax = [0.032, 0.087, 0.237, 0.644]: top_p=0.5 keeps only token 3, top_p=0.7 keeps {2, 3}
    got = np.asarray(Temperature(top_p=0.5).log_probs(logits))[0]
    np.testing.assert_allclose(got[3], 0.0, atol=1e-7)
    assert np.all(np.isneginf(got[:3]))
    got = np.asarray(Temperature(top_p=0.7).log_probs(logits))[0]
    np.testing.assert_allclose(got[2:], [-math.log1p(math.e), 1 - math.log1p(math.e)], rtol=1e-6)
    # temperature 2 over [0, 2]: p = softmax([0, 1])
    got = np.asarray(Temperature(2.0).log_probs(jnp.array([[0.0, 2.0]])))[0]
    np.testing.assert_allclose(got, [-math.log1p(math.e), 1 - math.log1p(math.e)], rtol=1e-6)


@pytest.mark.parametrize(
    "temperature,top_k,top_p",
    [
        (1.0, None, None),
        (0.7, None, None),
        (1.3, 7, None),
        (1.0, None, 0.9),
        (0.8, 10, 0.75),
        (1.0, 1, None),
    ],
)
def test_log_probs_match_numpy(variant, temperature, top_k, top_p):
    logits = jax.random.normal(jax.random.key(1), (5, 40)) * 2.0
    strategy = Temperature(temperature, top_k=top_k, top_p=top_p)
    got = np.asarray(variant(strategy.log_probs)(logits))
    want = numpy_sampling_log_probs(np.asarray(logits), temperature, top_k, top_p)
    np.testing.assert_array_equal(np.isneginf(got), np.isneginf(want))
    finite = np.isfinite(want)
    np.testing.assert_allclose(got[finite], want[finite], atol=2e-5)


def test_sampled_logprob_is_that_of_the_sampling_distribution(variant):
    logits = jax.random.normal(jax.random.key(2), (16, 30)) * 3.0
    strategy = Temperature(0.9, top_k=6, top_p=0.8)
    tokens, logprobs = variant(strategy.__call__)(logits, jax.random.key(3))
    want = numpy_sampling_log_probs(np.asarray(logits), 0.9, 6, 0.8)
    rows = np.arange(16)
    assert np.all(np.isfinite(want[rows, np.asarray(tokens)])), "sampled a truncated token"
    np.testing.assert_allclose(np.asarray(logprobs), want[rows, np.asarray(tokens)], atol=2e-5)
    assert tokens.dtype == jnp.int32 and logprobs.dtype == jnp.float32


@pytest.mark.parametrize("top_k", [None, 3])
def test_draws_are_those_of_jax_random_categorical(variant, top_k):
    # The sampler's Gumbel-max arg-max is written as two reductions; its draws must be exactly
    # `jax.random.categorical`'s with each row's key, truncated (-inf) tokens never drawn.
    strategy = Temperature(0.8, top_k=top_k)
    logits = jax.random.normal(jax.random.key(7), (32, 50)) * 2.0
    for seed in range(4):
        key = jax.random.key(100 + seed)
        tokens, _ = variant(strategy.__call__)(logits, key)
        keys = jax.vmap(lambda row: jax.random.fold_in(key, row))(jnp.arange(32))
        want = jax.vmap(jax.random.categorical)(keys, strategy.log_probs(logits))
        np.testing.assert_array_equal(np.asarray(tokens), np.asarray(want))


def test_first_argmax_matches_jnp_argmax_on_ties_and_nan():
    from rljax.sampling.strategies import _first_argmax

    scores = jnp.array(
        [
            [0.0, 2.0, 2.0, 1.0],  # tie: the first
            [-jnp.inf, -jnp.inf, 0.5, -jnp.inf],
            [1.0, jnp.nan, 3.0, jnp.nan],  # jnp.argmax returns the first NaN
            [5.0, 5.0, 5.0, 5.0],
        ]
    )
    got = np.asarray(_first_argmax(scores))
    np.testing.assert_array_equal(got, np.asarray(jnp.argmax(scores, axis=-1)))
    np.testing.assert_array_equal(got, [1, 2, 1, 0])
    assert got.dtype == np.int32


def test_draw_frequencies_follow_the_distribution():
    logits = jnp.tile(jnp.array([[0.0, 1.0, 2.0, 0.5, -1.0]]), (20_000, 1))
    tokens, _ = jax.jit(Temperature(1.0, top_k=4).__call__)(logits, jax.random.key(4))
    freq = np.bincount(np.asarray(tokens), minlength=5) / tokens.shape[0]
    want = np.exp(numpy_sampling_log_probs(np.asarray(logits[:1]), 1.0, 4)[0])
    # 4 standard errors of a frequency estimated from 20k draws
    np.testing.assert_allclose(freq, want, atol=4 * math.sqrt(0.25 / 20_000))


def test_rows_draw_independently_of_batch_padding():
    logits = jax.random.normal(jax.random.key(5), (8, 50))
    strategy = Temperature(1.0)
    key = jax.random.key(6)
    small = strategy(logits[:3], key)
    large = strategy(logits, key)
    np.testing.assert_array_equal(np.asarray(small.tokens), np.asarray(large.tokens)[:3])


def test_greedy_takes_argmax_with_lowest_id_on_ties(variant):
    logits = jnp.array([[0.1, 3.0, 3.0, -2.0], [5.0, 1.0, 2.0, 4.9]])
    tokens, logprobs = variant(Greedy().__call__)(logits, jax.random.key(0))
    np.testing.assert_array_equal(np.asarray(tokens), [1, 0])
    np.testing.assert_array_equal(np.asarray(logprobs), [0.0, 0.0])
    log_probs = np.asarray(Greedy().log_probs(logits))
    np.testing.assert_array_equal(
        log_probs == 0.0, [[False, True, False, False], [True, False, False, False]]
    )


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(temperature=0.0), "temperature"),
        (dict(temperature=-1.0), "temperature"),
        (dict(top_k=0), "top_k"),
        (dict(top_k=2.5), "top_k"),
        (dict(top_p=0.0), "top_p"),
        (dict(top_p=1.5), "top_p"),
    ],
)
def test_invalid_settings_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Temperature(**kwargs)


def test_bad_logits_raise():
    with pytest.raises(ValueError, match=r"logits must be .*\(2, 3, 4\)"):
        Temperature()(jnp.zeros((2, 3, 4)), jax.random.key(0))
    with pytest.raises(ValueError, match="floating"):
        Greedy()(jnp.zeros((2, 3), jnp.int32), jax.random.key(0))


def test_strategies_are_hashable_static_arguments():
    assert hash(Temperature(0.7, top_p=0.9)) == hash(Temperature(0.7, top_p=0.9))
    assert Greedy() == Greedy()
