"""The Poly-EPO study's methods: GRPO+DIV, the indicator variant, and the diversity diagnostics
(poly_epo.md sections 6 and 8), checked on hand-worked groups, jitted and not."""

import numpy as np
import pytest

from rljax import losses, methods
from rljax.methods import PrepareInputs

X = -1  # degenerate cluster


def _inputs(rewards, clusters):
    rewards = np.asarray(rewards, np.float32)
    p, g = rewards.shape
    t = 4
    zeros = np.zeros((p * g, t), np.float32)
    return PrepareInputs(
        rewards=rewards,
        task_ids=np.zeros(p, np.int32),
        group_mask=np.ones(p, bool),
        action_mask=np.ones((p * g, t), bool),
        env_mask=zeros.astype(bool),
        warning_mask=zeros.astype(bool),
        stage_ids=np.full((p * g, t), -1, np.int32),
        stage_rewards=np.zeros((p, g, 0), np.float32),
        cluster_ids=np.asarray(clusters, np.int32),
        old_logprobs=zeros,
        old_entropy=zeros,
        lengths=np.full(p * g, t, np.int32),
    )


def test_strategy_metrics_hand_worked(variant):
    # Group 0: clusters [1, 1, 2, X], rewards [1, 0, 1, 0]; group 1: all degenerate.
    rewards = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], np.float32)
    clusters = np.array([[1, 1, 2, X], [X, X, X, X]], np.int32)
    advantages = np.array([[0.5, 0.25, 0.5, -1.0], [0.0, 0.1, 0.0, 0.0]], np.float32)
    got = variant(methods.strategy_metrics)(rewards, clusters, advantages)
    # Distinct valid clusters: 2 and 0; successful: {1, 2} and none.
    assert float(got["strategy_clusters"]) == pytest.approx(1.0)
    assert float(got["successful_strategies"]) == pytest.approx(1.0)
    # Entropy of (2/3, 1/3) = 0.636514 nats; the all-degenerate group has 0.
    assert float(got["strategy_entropy"]) == pytest.approx(0.636514 / 2, abs=1e-6)
    # Reward-0 responses: 2 in group 0 (advantages 0.25, -1.0), 4 in group 1 (one 0.1): 2 of 6.
    assert float(got["zero_reward_positive_adv"]) == pytest.approx(2 / 6)


def test_grpo_div_method_shapes_the_reward_and_zero_coef_is_drgrpo(variant):
    rewards, clusters = [[1, 1, 1, 0]], [[1, 1, 2, 3]]
    inputs = _inputs(rewards, clusters)
    adv, _, metrics = variant(methods.grpo_div().prepare)(inputs, ())
    # poly_epo.md 6 E1 (GRPO+DIV, lambda 0.5): [1/12, 1/12, 5/12, -7/12].
    np.testing.assert_allclose(adv, [0.0833333, 0.0833333, 0.416667, -0.583333], atol=1e-6)
    # The reward-0 response gets a negative advantage here.
    assert float(metrics["zero_reward_positive_adv"]) == 0.0
    plain, _, _ = variant(methods.grpo_div(coef=0.0).prepare)(inputs, ())
    drgrpo, _, _ = variant(methods.drgrpo().prepare)(inputs, ())
    np.testing.assert_allclose(plain, drgrpo, atol=0)
    assert methods.grpo_div().mode == methods.drgrpo().mode == "seq-mean-token-sum-norm"


def test_poly_epo_indicator_variant(variant):
    inputs = _inputs([[1, 1, 1, 0]], [[1, 1, 2, 3]])
    mean, _, _ = variant(methods.poly_epo(set_size=2).prepare)(inputs, ())
    indicator, _, metrics = variant(methods.poly_epo(set_size=2, min_clusters=2).prepare)(
        inputs, ()
    )
    # poly_epo.md 6 E1: mean form [0, 0, 1/6, -1/6]; indicator [-1/12, -1/12, 1/4, -1/12].
    np.testing.assert_allclose(mean, [0, 0, 0.166667, -0.166667], atol=1e-6)
    np.testing.assert_allclose(indicator, [-0.0833333, -0.0833333, 0.25, -0.0833333], atol=1e-6)
    assert float(metrics["strategy_clusters"]) == 3.0
    with pytest.raises(ValueError, match="min_clusters"):
        losses.polychromic_score(np.ones((1, 2)), np.ones((1, 2), np.int32), min_clusters=3)
