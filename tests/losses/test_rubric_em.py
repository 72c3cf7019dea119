"""Tests for rljax.losses.rubric_em against methods/rubric_em.md section 6 and numpy references."""

import functools

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.advantages import group_advantages
from rljax.losses.kl import kl_penalty
from rljax.losses.rubric_em import (
    PAPER_STAGE_DEPENDENCE,
    answer_score_fallback,
    reflection_advantages,
    reflection_utility,
    rubric_stage_score,
    stage_returns,
    stage_token_advantages,
    stagewise_advantages,
    terminal_broadcast_advantages,
)

SETTINGS = hypothesis.settings(max_examples=30, deadline=None)
# Hypothesis examples reuse compiled programs (fixed shapes, static std and eps).
JIT_STAGEWISE = jax.jit(stagewise_advantages, static_argnames=("std", "eps"))
JIT_GROUP = jax.jit(group_advantages, static_argnames=("std", "eps"))

# E2/E3 stage scores of four rollouts of one query.
E3_REWARDS = np.array(
    [[[0.8, 0.5, 0.6, 0.7], [0.4, 0.9, 0.9, 0.3], [0.6, 0.6, 0.2, 0.5], [1.0, 0.0, 0.0, 0.0]]],
    np.float32,
)
E3_ADVANTAGES = np.array(
    [
        [1.40282, 0.569558, 0.915688, 1.25676],
        [0.256430, 0.914745, 0.873587, -0.290021],
        [-0.286599, 0.189853, -0.263129, 0.483368],
        [-1.37266, -1.67416, -1.52615, -1.45010],
    ]
)


def _reference_stagewise(rewards, lam, ddof, eps):
    """Independent float64 loop implementation of REM-3 and REM-4."""
    rewards = np.asarray(rewards, np.float64)
    num_prompts, group_size, num_stages = rewards.shape
    out = np.zeros_like(rewards)
    for p in range(num_prompts):
        returns = np.array(
            [
                [
                    sum(lam[k][j] * rewards[p, i, j] for j in range(k, num_stages))
                    for k in range(num_stages)
                ]
                for i in range(group_size)
            ]
        )
        for k in range(num_stages):
            col = returns[:, k]
            out[p, :, k] = (col - col.mean()) / (col.std(ddof=ddof) + eps)
    return out


def test_e1_rubric_stage_score(variant):
    scores = np.array([[2, 1, 1], [2, 1, 2]], np.float32)
    weights = np.array([[3, 1, 2], [3, 1, 2]], np.float32)
    negative = np.array([[False, False, True]] * 2)
    got = variant(rubric_stage_score)(scores, weights, negative, np.ones((2, 3), bool))
    np.testing.assert_allclose(got, [0.75, 0.583333], atol=1e-6)


def test_rubric_stage_score_padding_and_empty_stage(variant):
    scores = np.array([[2, 1, 1, 2], [0, 0, 0, 0]], np.float32)
    weights = np.array([[3, 1, 2, 3], [1, 1, 1, 1]], np.float32)
    negative = np.array([[False, False, True, False], [False] * 4])
    mask = np.array([[True, True, True, False], [False] * 4])
    got = variant(rubric_stage_score)(scores, weights, negative, mask)
    np.testing.assert_allclose(got, [0.75, 0.0], atol=1e-6)


def test_e2_stage_returns(variant):
    got = variant(stage_returns)(E3_REWARDS, PAPER_STAGE_DEPENDENCE)
    expected = [
        [1.92, 1.30, 1.16, 0.70],
        [1.54, 1.50, 1.14, 0.30],
        [1.36, 1.08, 0.60, 0.50],
        [1.0, 0.0, 0.0, 0.0],
    ]
    np.testing.assert_allclose(got[0], expected, atol=1e-6)
    np.testing.assert_allclose(got[0].mean(0), [1.455, 0.97, 0.725, 0.375], atol=1e-6)
    np.testing.assert_allclose(got[0].std(0), [0.331474, 0.579396, 0.475053, 0.258602], atol=1e-6)


def test_e2_two_rollouts_population_and_unbiased(variant):
    rewards = E3_REWARDS[:, :2]
    population = variant(functools.partial(stagewise_advantages, dependence=PAPER_STAGE_DEPENDENCE))
    got = population(rewards)
    expected = np.array([0.99999995, -0.99999995, 0.999999, 0.99999995])
    # The Review-stage returns (1.16 vs 1.14) cancel in float32: one ulp of 1.16 (1.2e-7) over the
    # group std of 0.01 is 1.2e-5, and XLA's reduction order on the CPU decides where it lands.
    np.testing.assert_allclose(got[0, 0], expected, atol=2.5e-5)
    np.testing.assert_allclose(got[0, 1], -expected, atol=2.5e-5)
    unbiased = variant(
        functools.partial(
            stagewise_advantages, dependence=PAPER_STAGE_DEPENDENCE, std="unbiased", eps=1e-6
        )
    )
    np.testing.assert_allclose(
        unbiased(rewards)[0, 0], [0.707104, -0.707102, 0.707057, 0.707104], atol=2.5e-5
    )


def test_e3_four_rollouts_and_terminal_broadcast(variant):
    got = variant(functools.partial(stagewise_advantages, dependence=PAPER_STAGE_DEPENDENCE))(
        E3_REWARDS
    )
    np.testing.assert_allclose(got[0], E3_ADVANTAGES, rtol=3e-6, atol=1e-6)
    broadcast = variant(terminal_broadcast_advantages)(E3_REWARDS)
    np.testing.assert_allclose(
        broadcast[0], np.repeat(E3_ADVANTAGES[:, 3:], 4, axis=1), rtol=3e-6, atol=1e-6
    )


def test_e4_k3_penalty():
    got = kl_penalty(np.array([[-1.0]], np.float32), np.array([[-1.2]], np.float32), kind="k3")
    np.testing.assert_allclose(got, [[0.0187308]], atol=1e-7)


@SETTINGS
@hypothesis.given(
    rewards=hnp.arrays(np.float32, (3, 5, 3), elements=st.floats(0, 1, width=32)),
    upper=hnp.arrays(np.float32, 3, elements=st.floats(0, 1, width=32)),
    std=st.sampled_from(["population", "unbiased"]),
)
def test_stagewise_matches_reference(rewards, upper, std):
    lam = np.eye(3, dtype=np.float32)
    lam[0, 1], lam[0, 2], lam[1, 2] = upper
    eps = 1e-8 if std == "population" else 1e-6
    got = JIT_STAGEWISE(rewards, lam, std=std, eps=eps)
    expected = _reference_stagewise(rewards, lam, ddof=0 if std == "population" else 1, eps=eps)
    # float32 rounding of near-equal returns divided by a tiny std: compare where spread is real.
    returns = np.einsum("pij,kj->pik", rewards.astype(np.float64), lam)
    spread = np.broadcast_to(returns.std(axis=1, keepdims=True) > 1e-3, returns.shape)
    np.testing.assert_allclose(np.asarray(got)[spread], expected[spread], atol=2e-4)


@SETTINGS
@hypothesis.given(
    rewards=hnp.arrays(np.float32, (4, 6), elements=st.floats(0, 1, width=32)),
    std=st.sampled_from(["population", "unbiased"]),
)
def test_single_stage_reduces_to_grpo(rewards, std):
    eps = 1e-8 if std == "population" else 1e-6
    got = np.asarray(
        JIT_STAGEWISE(rewards[..., None], np.ones((1, 1), np.float32), std=std, eps=eps)
    )
    tied = np.all(rewards == rewards[:, :1], axis=1)
    np.testing.assert_array_equal(got[tied], 0.0)  # exact zero, whatever the mean's rounding
    # Elsewhere it is the GRPO group advantage of the base module ...
    grpo = np.asarray(JIT_GROUP(rewards, std=std, eps=eps))
    np.testing.assert_allclose(got[~tied, :, 0], grpo[~tied], rtol=1e-6, atol=1e-6)
    # ... and the hand formula, where float32 cancellation is not amplified by a tiny std.
    centred = rewards.astype(np.float64) - rewards.mean(1, keepdims=True, dtype=np.float64)
    scale = rewards.std(1, ddof=0 if std == "population" else 1, keepdims=True, dtype=np.float64)
    spread = np.broadcast_to(scale > 1e-3, rewards.shape)
    np.testing.assert_allclose(got[..., 0][spread], (centred / (scale + eps))[spread], atol=2e-4)


def test_all_equal_group_and_single_rollout_are_finite(variant):
    rewards = np.full((1, 3, 4), 0.3, np.float32)  # the float32 mean of equal returns is inexact
    got = variant(functools.partial(stagewise_advantages, dependence=PAPER_STAGE_DEPENDENCE))(
        rewards
    )
    np.testing.assert_array_equal(got, np.zeros_like(rewards))
    single = variant(functools.partial(stagewise_advantages, dependence=PAPER_STAGE_DEPENDENCE))(
        E3_REWARDS[:, :1]
    )
    np.testing.assert_allclose(single[0, 0], [1.92, 1.30, 1.16, 0.70], atol=1e-6)  # verl G = 1


def test_stage_token_advantages(variant):
    stage_adv = np.array([[1.0, -2.0, 3.0, -4.0], [0.5, 0.25, 0.125, 0.0625]], np.float32)
    stage_ids = np.array([[-1, 0, 0, 1, -1, 2, 3], [-1, -1, 3, 3, 2, 1, 0]], np.int32)
    got = variant(stage_token_advantages)(stage_adv, stage_ids)
    np.testing.assert_array_equal(
        got, [[0, 1, 1, -2, 0, 3, -4], [0, 0, 0.0625, 0.0625, 0.125, 0.25, 0.5]]
    )


def test_no_gradient_into_rewards_or_advantages():
    weights = jnp.arange(16.0).reshape(1, 4, 4)
    grad = jax.grad(lambda r: jnp.sum(stagewise_advantages(r, PAPER_STAGE_DEPENDENCE) * weights))(
        jnp.asarray(E3_REWARDS)
    )
    np.testing.assert_array_equal(grad, np.zeros_like(E3_REWARDS))
    stage_ids = jnp.array([[0, 1, 2, 3, -1]], jnp.int32)
    grad = jax.grad(lambda a: jnp.sum(stage_token_advantages(a, stage_ids) * 2.0))(jnp.ones((1, 4)))
    np.testing.assert_array_equal(grad, np.zeros((1, 4)))
    grad = jax.grad(lambda u: jnp.sum(reflection_advantages(u) * jnp.arange(3.0)[None]))(
        jnp.array([[0.1, 0.5, 0.7]])
    )
    np.testing.assert_array_equal(grad, np.zeros((1, 3)))


def test_stage_returns_gradient_is_dependence_column_sum(variant):
    # d/dR[j] sum_k Ret[k] = sum_k lam[k, j] (hand-derived); stage_returns itself is linear.
    grad = variant(jax.grad(lambda r: jnp.sum(stage_returns(r, PAPER_STAGE_DEPENDENCE))))(
        jnp.asarray(E3_REWARDS[0, 0])
    )
    np.testing.assert_allclose(grad, [1.0, 1.4, 2.0, 3.4], atol=1e-6)


def test_answer_score_fallback(variant):
    failed = np.array([[False, True, False, False]])
    got = variant(answer_score_fallback)(E3_REWARDS, failed)
    expected = E3_REWARDS.copy()
    expected[0, 1] = 0.3
    np.testing.assert_array_equal(got, expected)


def test_reflection_utility_and_advantages(variant):
    diag = np.array([[1.0, 0.5, 0.9]], np.float32)
    spec = np.array([[0.5, 0.0, 1.0]], np.float32)
    scope = np.array([[0.5, 1.0, 1.0]], np.float32)
    valid = np.array([[True, True, False]])
    u = variant(reflection_utility)(diag, spec, scope, valid)
    np.testing.assert_allclose(u, [[0.7, 0.5, 0.0]], atol=1e-6)  # 0.4 d + 0.3 s + 0.3 c
    std = np.sqrt((0.3**2 + 0.1**2 + 0.4**2) / 3)  # mean u = 0.4, population std
    np.testing.assert_allclose(
        variant(reflection_advantages)(u), [[0.3 / std, 0.1 / std, -0.4 / std]], atol=1e-5
    )


@pytest.mark.parametrize(
    "call, name",
    [
        (lambda: stagewise_advantages(E3_REWARDS[0], PAPER_STAGE_DEPENDENCE), "stage_rewards"),
        (lambda: stagewise_advantages(E3_REWARDS, np.eye(3)), "dependence"),
        (lambda: stagewise_advantages(E3_REWARDS, np.ones(4)), "dependence"),
        (lambda: stagewise_advantages(E3_REWARDS, PAPER_STAGE_DEPENDENCE.T), "dependence"),
        (lambda: stagewise_advantages(E3_REWARDS, 2 * np.eye(4)), "dependence"),
        (lambda: stagewise_advantages(E3_REWARDS, PAPER_STAGE_DEPENDENCE, std="sample"), "std"),
        (lambda: stagewise_advantages(E3_REWARDS, PAPER_STAGE_DEPENDENCE, eps=0.0), "eps"),
        (lambda: stage_returns(np.float32(1.0), np.eye(1)), "stage_rewards"),
        (lambda: stage_token_advantages(np.ones(4), np.zeros((1, 3), np.int32)), "stage_adv"),
        (lambda: stage_token_advantages(np.ones((1, 4)), np.zeros(3, np.int32)), "stage_ids"),
        (lambda: stage_token_advantages(np.ones((2, 4)), np.zeros((1, 3), np.int32)), "stage_ids"),
        (lambda: stage_token_advantages(np.ones((1, 4)), np.zeros((1, 3))), "stage_ids"),
        (
            lambda: stage_token_advantages(np.ones((1, 4)), np.array([[0, 4]], np.int32)),
            "stage_ids",
        ),
        (
            lambda: stage_token_advantages(np.ones((1, 4)), np.array([[-2, 0]], np.int32)),
            "stage_ids",
        ),
        (lambda: rubric_stage_score(np.ones(3), np.ones(2), np.ones(3), np.ones(3)), "weights"),
        (lambda: answer_score_fallback(E3_REWARDS, np.ones((1, 3), bool)), "judge_failed"),
        (
            lambda: reflection_utility(
                np.ones((1, 2)), np.ones((1, 3)), np.ones((1, 2)), np.ones((1, 2))
            ),
            "specificity",
        ),
        (
            lambda: reflection_utility(
                np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2)), np.ones((1, 2)), weights=(1.0,)
            ),
            "weights",
        ),
        (lambda: reflection_advantages(np.ones(3)), "utilities"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()
