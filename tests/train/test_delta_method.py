"""methods.delta's study knobs: the proxy ablation and the c = 1 baseline (delta.md section 8)."""

import numpy as np
import pytest

from rljax import losses, methods
from rljax.methods import PrepareInputs

P, G, T, H = 2, 4, 5, 3


def _inputs():
    rng = np.random.default_rng(0)
    rewards = np.array([[1, 0, 0, 1], [1, 1, 1, 0]], np.float32)
    mask = np.ones((P * G, T), bool)
    mask[1, 3:] = False  # a shorter response
    zeros = np.zeros((P * G, T), np.float32)
    return PrepareInputs(
        rewards=rewards,
        task_ids=np.zeros(P, np.int32),
        group_mask=np.ones(P, bool),
        action_mask=mask.astype(np.float32),
        env_mask=zeros,
        warning_mask=zeros,
        stage_ids=np.full((P * G, T), -1, np.int32),
        stage_rewards=np.zeros((P, G, 0), np.float32),
        cluster_ids=np.zeros((P, G), np.int32),
        # Token probabilities spread over (0.05, 0.95), so (1 - p) h and h differ.
        old_logprobs=np.log(rng.uniform(0.05, 0.95, (P * G, T))).astype(np.float32),
        old_entropy=zeros,
        lengths=mask.sum(1).astype(np.int32),
        hidden=rng.normal(size=(P * G, T, H)).astype(np.float32),
    )


@pytest.mark.parametrize("proxy", ["one_minus_p_h", "h"])
def test_proxy_reaches_the_coefficients(variant, proxy):
    inputs = _inputs()
    method = methods.delta(proxy=proxy)
    advantages, _, metrics = variant(method.prepare)(inputs, method.init_state())
    adv = np.asarray(losses.group_advantages(inputs.rewards)).reshape(-1)
    coeffs = losses.delta_coefficients(
        inputs.hidden, np.exp(inputs.old_logprobs), adv, inputs.action_mask, proxy=proxy
    )
    expected = adv[:, None] * np.asarray(coeffs) * inputs.action_mask
    np.testing.assert_allclose(advantages, expected, rtol=1e-6, atol=1e-7)
    other = "h" if proxy == "one_minus_p_h" else "one_minus_p_h"
    other_coeffs = losses.delta_coefficients(
        inputs.hidden, np.exp(inputs.old_logprobs), adv, inputs.action_mask, proxy=other
    )
    assert np.abs(np.asarray(coeffs) - np.asarray(other_coeffs)).max() > 1e-3
    assert float(metrics["delta_coef_std"]) > 1e-3


def test_unit_range_is_the_plain_dapo_update(variant):
    # c_min = c_max = 1: every valid token's coefficient is exactly 1, so the token advantages
    # are the sequence advantages on the mask (the study's c = 1 baseline).
    inputs = _inputs()
    method = methods.delta(c_min=1.0, c_max=1.0)
    advantages, _, metrics = variant(method.prepare)(inputs, method.init_state())
    adv = np.asarray(losses.group_advantages(inputs.rewards)).reshape(-1)
    np.testing.assert_array_equal(advantages, adv[:, None] * inputs.action_mask)
    assert float(metrics["delta_coef_min"]) == float(metrics["delta_coef_max"]) == 1.0


def test_bad_proxy():
    with pytest.raises(ValueError, match=r"delta: proxy='grad' is not one of \['one_minus_p_h'"):
        methods.delta(proxy="grad")
