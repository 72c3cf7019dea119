"""Tests for rljax.losses.poly_epo: methods/poly_epo.md section 6 and a brute-force reference."""

import functools
import inspect
import itertools
import math

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.advantages import group_advantages
from rljax.losses.poly_epo import (
    diversity_bonus,
    grpo_div_advantages,
    poly_epo_advantages,
    polychromic_score,
)

SETTINGS = hypothesis.settings(max_examples=30, deadline=None)
A, B, C, D, E = range(5)
X = 100  # the paper judge's degenerate id
# Hypothesis examples reuse compiled programs: shapes and static arguments come from small sets.
JIT_ADVANTAGES = jax.jit(
    poly_epo_advantages,
    static_argnames=("set_size", "degenerate", "form", "score_fn", "num_subsets", "max_enumerated"),
)


def _advantages(rewards, clusters, variant, **kwargs):
    fn = variant(functools.partial(poly_epo_advantages, **kwargs))
    return np.asarray(fn(np.asarray([rewards], np.float32), np.asarray([clusters], np.int32)))[0]


def _reference(rewards, clusters, set_size, degenerate, form="mean"):
    """Brute-force float64 PEPO-1..5 over itertools.combinations, one prompt."""
    subsets = list(itertools.combinations(range(len(rewards)), set_size))
    scores = [
        np.mean([rewards[g] for g in s])
        * len({clusters[g] for g in s if clusters[g] != degenerate})
        / set_size
        for s in subsets
    ]
    baseline = np.mean(scores)
    out = []
    for g in range(len(rewards)):
        mine = [f - baseline for s, f in zip(subsets, scores) if g in s]
        out.append(np.sum(mine) if form == "sum" else np.mean(mine))
    return np.array(out)


def test_e1_hand_example_all_forms(variant):
    rewards, clusters = [1, 1, 1, 0], [A, A, B, C]
    np.testing.assert_allclose(
        _advantages(rewards, clusters, variant, set_size=2), [0, 0, 0.166667, -0.166667], atol=1e-6
    )
    np.testing.assert_allclose(
        _advantages(rewards, clusters, variant, set_size=2, form="sum"),
        [0, 0, 0.5, -0.5],
        atol=1e-6,
    )
    indicator = functools.partial(polychromic_score, min_clusters=2)
    np.testing.assert_allclose(
        _advantages(rewards, clusters, variant, set_size=2, score_fn=indicator),
        [-0.0833333, -0.0833333, 0.25, -0.0833333],
        atol=1e-6,
    )
    got = variant(grpo_div_advantages)(
        np.array([rewards], np.float32), np.array([clusters], np.int32)
    )
    np.testing.assert_allclose(got[0], [0.0833333, 0.0833333, 0.416667, -0.583333], atol=1e-6)


def test_e1_subset_scores(variant):
    sets = list(itertools.combinations(range(4), 2))
    rewards = np.array([1, 1, 1, 0], np.float32)[np.array(sets)]
    clusters = np.array([A, A, B, C], np.int32)[np.array(sets)]
    np.testing.assert_allclose(
        variant(polychromic_score)(rewards, clusters), [0.5, 1, 0.5, 1, 0.5, 0.5], atol=1e-7
    )


@pytest.mark.parametrize(
    "rewards, clusters, expected",
    [
        ([1, 1, 0, 0], [A, A, B, C], [0.0833333, 0.0833333, -0.0833333, -0.0833333]),
        ([1, 0, 0, 0], [A, X, B, B], [0.208333, -0.125, -0.0416667, -0.0416667]),
        ([1, 1, 1, 1], [A, A, A, B], [-0.0833333, -0.0833333, -0.0833333, 0.25]),
        ([1, 1, 1, 0], [A, A, A, B], [0, 0, 0, 0]),
        ([0, 0, 0, 0], [A, B, X, C], [0, 0, 0, 0]),
    ],
)
def test_e2_group_of_four_pairs(variant, rewards, clusters, expected):
    got = _advantages(rewards, clusters, variant, set_size=2, degenerate=X)
    np.testing.assert_allclose(got, expected, atol=1e-6)


@pytest.mark.parametrize(
    "rewards, clusters, expected",
    [
        ([1, 1, 1, 1, 0, 0, 0, 0], [A, A, B, B, C, C, D, D], [0.05] * 4 + [-0.05] * 4),
        ([1, 1, 1, 1, 1, 0, 0, 0], [A, A, A, A, A, B, C, D], [0.0] * 8),
        (
            [1, 0, 0, 0, 0, 0, 0, 0],
            [A, B, B, B, B, C, D, E],
            [0.101786] + [-0.0214286] * 4 + [-0.00535714] * 3,
        ),
        (
            [1, 1, 1, 1, 1, 0, 0, 0],
            [A, A, A, A, B, C, D, E],
            [-0.00357143] * 4 + [0.0839286] + [-0.0232143] * 3,
        ),
        ([1, 1, 1, 1, 0, 0, 0, 0], [A] * 8, [0.0178571] * 4 + [-0.0178571] * 4),
        ([1, 1, 1, 1, 0, 0, 0, 0], list(range(8)), [0.0714286] * 4 + [-0.0714286] * 4),
        ([1] * 8, [A, A, A, A, B, C, D, E], [-0.0678571] * 4 + [0.0678571] * 4),
        (
            [1, 1, 0, 0, 1, 0, 0, 0],
            [A, A, X, X, B, C, C, D],
            [0.05, 0.05, -0.0607143, -0.0607143, 0.0857143, -0.0285714, -0.0285714, -0.00714286],
        ),
        ([0] * 8, [A, B, C, D, A, B, C, D], [0.0] * 8),
    ],
)
def test_e3_group_of_eight_sets_of_four(variant, rewards, clusters, expected):
    got = _advantages(rewards, clusters, variant, set_size=4, degenerate=X)
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_e4_set_size_one_is_drgrpo(variant):
    got = _advantages([1, 0, 1, 1], [C, A, A, B], variant, set_size=1)
    np.testing.assert_allclose(got, [0.25, -0.75, 0.25, 0.25], atol=1e-7)


def test_all_degenerate_prompt_gets_zero(variant):
    got = _advantages([1, 1, 0, 1, 0, 1], [X] * 6, variant, set_size=3, degenerate=X)
    np.testing.assert_array_equal(got, np.zeros(6))


rewards_and_clusters = st.sampled_from([4, 6]).flatmap(
    lambda n: st.tuples(
        hnp.arrays(np.float32, (2, n), elements=st.sampled_from([0.0, 1.0, 0.5])),
        hnp.arrays(np.int32, (2, n), elements=st.integers(-1, 3)),
    )
)


@SETTINGS
@hypothesis.given(data=rewards_and_clusters, set_size=st.integers(1, 4))
def test_matches_brute_force_and_sums_to_zero(data, set_size):
    rewards, clusters = data
    got = np.asarray(JIT_ADVANTAGES(rewards, clusters, set_size=set_size))
    got_sum = np.asarray(JIT_ADVANTAGES(rewards, clusters, set_size=set_size, form="sum"))
    for p in range(2):
        np.testing.assert_allclose(
            got[p], _reference(rewards[p], clusters[p], set_size, -1), atol=1e-6
        )
        np.testing.assert_allclose(
            got_sum[p], _reference(rewards[p], clusters[p], set_size, -1, form="sum"), atol=1e-5
        )
    np.testing.assert_allclose(got.sum(axis=1), 0.0, atol=1e-6)
    ratio = math.comb(rewards.shape[1] - 1, set_size - 1)
    np.testing.assert_allclose(got_sum, ratio * got, atol=1e-5)


def _reward_only(rewards, cluster_ids, *, degenerate):
    del cluster_ids, degenerate
    return jnp.mean(rewards, axis=-1)


@SETTINGS
@hypothesis.given(
    rewards=hnp.arrays(np.float32, (3, 6), elements=st.floats(0, 1, width=32)),
    clusters=hnp.arrays(np.int32, (3, 6), elements=st.integers(-1, 4)),
)
def test_set_size_one_with_reward_score_is_drgrpo(rewards, clusters):
    got = JIT_ADVANTAGES(rewards, clusters, set_size=1, score_fn=_reward_only)
    np.testing.assert_allclose(got, group_advantages(rewards, scale="none"), atol=1e-6)
    np.testing.assert_allclose(got, rewards - rewards.mean(1, keepdims=True), atol=1e-6)


@SETTINGS
@hypothesis.given(data=rewards_and_clusters, seed=st.integers(0, 2**31 - 1))
def test_sampling_every_subset_equals_enumeration(data, seed):
    rewards, clusters = data
    total = math.comb(rewards.shape[1], 3)
    sampled = JIT_ADVANTAGES(
        rewards, clusters, set_size=3, num_subsets=total, key=jax.random.key(seed)
    )
    np.testing.assert_allclose(sampled, JIT_ADVANTAGES(rewards, clusters, set_size=3), atol=1e-6)


def test_independent_subset_sampling_converges_to_enumeration():
    rewards = np.array([[1, 1, 1, 1, 1, 0, 0, 0], [1, 0, 0, 0, 0, 0, 0, 0]], np.float32)
    clusters = np.array([[A, A, A, A, B, C, D, E], [A, B, B, B, B, C, D, E]], np.int32)
    exact = poly_epo_advantages(rewards, clusters)
    errors = [
        float(
            np.max(
                np.abs(
                    JIT_ADVANTAGES(
                        rewards, clusters, num_subsets=m, key=jax.random.key(0), max_enumerated=0
                    )
                    - exact
                )
            )
        )
        for m in (100, 10000)
    ]
    assert errors[1] < min(0.004, errors[0])


def test_sampling_is_reproducible_and_undrawn_responses_get_zero(variant):
    rewards = np.array([[1, 0, 1, 1, 0, 1, 0, 0]], np.float32)
    clusters = np.arange(8, dtype=np.int32)[None]
    fn = variant(functools.partial(poly_epo_advantages, set_size=1, num_subsets=3))
    first, again = (
        fn(rewards, clusters, key=jax.random.key(3)),
        fn(rewards, clusters, key=jax.random.key(3)),
    )
    np.testing.assert_array_equal(first, again)
    drawn = np.asarray(first)[0] != 0
    assert drawn.sum() <= 3
    # The three drawn singletons are centred on their own mean (n = 1, distinct clusters).
    np.testing.assert_allclose(np.asarray(first)[0].sum(), 0.0, atol=1e-6)


def test_no_gradient_into_rewards():
    clusters = np.array([[A, A, B, C]], np.int32)
    weights = jnp.arange(4.0)[None]
    grad = jax.grad(lambda r: jnp.sum(poly_epo_advantages(r, clusters, set_size=2) * weights))(
        jnp.array([[1.0, 0.5, 1.0, 0.0]])
    )
    np.testing.assert_array_equal(grad, np.zeros((1, 4)))
    grad = jax.grad(lambda r: jnp.sum(grpo_div_advantages(r, clusters) * weights))(
        jnp.array([[1.0, 0.5, 1.0, 0.0]])
    )
    np.testing.assert_array_equal(grad, np.zeros((1, 4)))


def test_polychromic_score_gradient_is_diversity_over_n(variant):
    # f = mean(r) * d is linear in r with slope d / n per member (hand-derived).
    clusters = np.array([A, A, B, -1], np.int32)
    grad = variant(jax.grad(lambda r: polychromic_score(r, clusters)))(jnp.ones(4))
    np.testing.assert_allclose(grad, np.full(4, (2 / 4) / 4), atol=1e-7)


def test_diversity_bonus(variant):
    got = variant(functools.partial(diversity_bonus, degenerate=X))(
        np.array([[A, A, B, C], [A, A, A, A], [A, X, X, B]], np.int32)
    )
    np.testing.assert_allclose(got, [[1 / 3, 1 / 3, 1, 1], [0, 0, 0, 0], [1, 0, 0, 1]], atol=1e-6)


REWARDS = np.ones((2, 4), np.float32)
CLUSTERS = np.zeros((2, 4), np.int32)


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: poly_epo_advantages(REWARDS[0], CLUSTERS[0]), "rewards"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS[:, :3]), "cluster_ids"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS.astype(np.float32)), "cluster_ids"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, set_size=-1), "set_size"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, set_size=0), "set_size"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, set_size=5), "set_size"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, set_size=2.0), "set_size"),
        (
            lambda: poly_epo_advantages(
                REWARDS, CLUSTERS, set_size=2, num_subsets=2.5, key=jax.random.key(0)
            ),
            "num_subsets",
        ),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, form="max"), "form"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, num_subsets=2), "num_subsets"),
        (lambda: poly_epo_advantages(REWARDS, CLUSTERS, key=jax.random.key(0)), "num_subsets"),
        (
            lambda: poly_epo_advantages(
                REWARDS, CLUSTERS, set_size=2, num_subsets=7, key=jax.random.key(0)
            ),
            "num_subsets",
        ),
        (
            lambda: poly_epo_advantages(
                REWARDS, CLUSTERS, set_size=2, num_subsets=0, key=jax.random.key(0)
            ),
            "num_subsets",
        ),
        (
            lambda: poly_epo_advantages(REWARDS, CLUSTERS, set_size=2, max_enumerated=5),
            "max_enumerated",
        ),
        (lambda: polychromic_score(REWARDS, CLUSTERS, min_clusters=3), "min_clusters"),
        (lambda: polychromic_score(np.float32(1.0), np.int32(0)), "rewards"),
        (lambda: diversity_bonus(CLUSTERS[:, :1]), "cluster_ids"),
        (lambda: grpo_div_advantages(REWARDS, CLUSTERS[:1]), "cluster_ids"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_part_b_names_are_exported_from_rljax_losses():
    import rljax.losses
    from rljax.losses import anti_sd, poly_epo, rubric_em

    for module in (anti_sd, rubric_em, poly_epo):
        for name in module.__all__:
            assert name in rljax.losses.__all__
            assert getattr(rljax.losses, name) is getattr(module, name)
            obj = getattr(module, name)
            if inspect.isfunction(obj) or inspect.isclass(obj):
                assert obj.__doc__ and obj.__doc__.strip(), f"{name} has no docstring"
