"""Tests for rljax.losses.policy against methods/grpo.md E2, E2b and the GRPO-6 gradient facts."""

import functools

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.policy import clipped_surrogate, policy_loss

# grpo.md E2, eps_low 0.2, eps_high 0.28, c_dual 3: one token per row.
E2_ADV = np.array([1.5, 1.5, 1.5, -0.5, -0.5, -0.5], np.float32)
E2_RHO = np.array([0.7, 1.0, 1.3, 0.7, 1.3, 5.0], np.float32)
E2_LOSS = [-1.05, -1.5, -1.92, 0.4, 0.65, 1.5]
E2_GRAD = [-1.05, -1.5, 0.0, 0.0, 0.65, 0.0]
E2_CLIPPED = [0, 0, 1, 1, 0, 0]
E2_DUAL = [0, 0, 0, 0, 0, 1]
OLD = np.full((6, 1), -1.0, np.float32)
E2_LOGP = OLD + np.log(E2_RHO)[:, None]
ONES = np.ones((6, 1), np.float32)
E2_KWARGS = dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0)


def _per_token(logp, old, adv, mask, **kwargs):
    return clipped_surrogate(logp, old, adv, mask, **kwargs)[0]


def _loss(logp, old, adv, mask, **kwargs):
    return policy_loss(logp, old, adv, mask, **kwargs)[0]


def test_e2_values_and_branches(variant):
    fn = variant(functools.partial(clipped_surrogate, **E2_KWARGS))
    losses, diag = fn(E2_LOGP, OLD, E2_ADV, ONES)
    np.testing.assert_allclose(losses[:, 0], E2_LOSS, rtol=1e-5)
    np.testing.assert_array_equal(diag["clipped"][:, 0], E2_CLIPPED)
    np.testing.assert_array_equal(diag["dual_clipped"][:, 0], E2_DUAL)


def test_e2_gradients(variant):
    grad_fn = variant(jax.grad(lambda lp: jnp.sum(_per_token(lp, OLD, E2_ADV, ONES, **E2_KWARGS))))
    np.testing.assert_allclose(grad_fn(jnp.asarray(E2_LOGP))[:, 0], E2_GRAD, rtol=1e-5, atol=1e-7)


def test_e2_without_dual_clip(variant):
    kwargs = dict(clip_low=0.2, clip_high=0.28)
    fn = variant(functools.partial(_per_token, **kwargs))
    np.testing.assert_allclose(fn(E2_LOGP, OLD, E2_ADV, ONES)[5, 0], 2.5, rtol=1e-5)
    grad = jax.grad(lambda lp: jnp.sum(_per_token(lp, OLD, E2_ADV, ONES, **kwargs)))(
        jnp.asarray(E2_LOGP)
    )
    np.testing.assert_allclose(grad[5, 0], 2.5, rtol=1e-5)


def test_e2b_log_ratio_clamp_and_padding(variant):
    logp = np.array([[25.0, -30.0, -np.inf]], np.float32)
    old = np.array([[0.0, 0.0, 3.0]], np.float32)
    mask = np.array([[1, 1, 0]], np.float32)
    fn = variant(functools.partial(clipped_surrogate, **E2_KWARGS))
    losses, diag = fn(logp, old, np.ones(1, np.float32), mask)
    np.testing.assert_allclose(diag["ratio"][0], [4.85165e8, 2.06115e-9, 1.0], rtol=1e-5)
    assert np.all(np.isfinite(losses)) and losses[0, 2] == 0.0
    loss_fn = functools.partial(_loss, **E2_KWARGS)
    grad = jax.grad(loss_fn)(jnp.asarray(logp), old, np.ones(1, np.float32), mask)
    assert np.all(np.isfinite(grad))
    # Both valid tokens sit outside the clip range (or the clamp): no gradient anywhere.
    np.testing.assert_array_equal(grad, 0.0)


def test_on_policy_gradient_is_reinforce(variant):
    # rho = 1: d L / d logp = -A * mask / N for token-mean.
    rng = np.random.default_rng(1)
    logp = rng.normal(size=(4, 5)).astype(np.float32)
    adv = rng.normal(size=4).astype(np.float32)
    mask = (rng.uniform(size=(4, 5)) < 0.7).astype(np.float32)
    grad = variant(jax.grad(_loss))(jnp.asarray(logp), logp, adv, mask)
    np.testing.assert_allclose(grad, -adv[:, None] * mask / mask.sum(), rtol=1e-6)


@pytest.mark.parametrize(
    "clip_low, clip_high, adv",
    [(0.0, 0.28, 1.0), (0.0, 0.28, -1.0), (0.2, 0.0, 1.0), (0.2, 0.0, -1.0)],
)
def test_one_sided_clip_on_policy_gradient(variant, clip_low, clip_high, adv):
    # Issue 14.1: rho = 1 sits on the bound of a one-sided clip; the loss is smooth there and
    # grpo.md GRPO-6 says the on-policy gradient is exactly -A (verl: -A). Before: 0.75 * (-A).
    logp = np.full((1, 1), -0.5, np.float32)
    kwargs = dict(clip_low=clip_low, clip_high=clip_high)
    fn = variant(jax.grad(functools.partial(_loss, **kwargs)))
    grad = fn(jnp.asarray(logp), logp, np.array([adv], np.float32), np.ones((1, 1), np.float32))
    np.testing.assert_allclose(grad, [[-adv]], rtol=1e-6)


def test_dual_clip_tie_takes_unclipped_gradient(variant):
    # l = -A rho equals the dual bound -A c_dual exactly: the tie keeps the unclipped gradient -A rho.
    log_ratio = np.float32(1.0)
    rho = float(jnp.exp(jnp.float32(log_ratio)))  # c_dual = rho bit for bit
    logp = np.full((1, 1), log_ratio, np.float32)
    old = np.zeros((1, 1), np.float32)
    kwargs = dict(clip_low=0.2, clip_high=0.28, dual_clip=rho)
    fn = variant(
        jax.grad(lambda lp: jnp.sum(_per_token(lp, old, np.array([-1.0]), ONES[:1], **kwargs)))
    )
    np.testing.assert_allclose(fn(jnp.asarray(logp)), [[rho]], rtol=1e-6)


def test_seq_mean_token_mean_gradient(variant):
    # rho = 1, GRPO aggregation: d L / d logp[b, t] = -A[b] * mask / (n_b * B_v).
    logp = np.zeros((3, 4), np.float32)
    adv = np.array([1.0, -2.0, 3.0], np.float32)
    mask = np.array([[1, 1, 0, 0], [1, 1, 1, 1], [0, 0, 0, 0]], np.float32)
    fn = variant(jax.grad(functools.partial(_loss, mode="seq-mean-token-mean")))
    expected = np.array([[-0.25, -0.25, 0, 0], [0.25, 0.25, 0.25, 0.25], [0, 0, 0, 0]])
    np.testing.assert_allclose(fn(jnp.asarray(logp), logp, adv, mask), expected, rtol=1e-6)


def test_metrics(variant):
    fn = variant(functools.partial(policy_loss, **E2_KWARGS))
    loss, metrics = fn(E2_LOGP, OLD, E2_ADV, ONES)
    np.testing.assert_allclose(loss, np.mean(E2_LOSS), rtol=1e-5)
    np.testing.assert_allclose(metrics["policy_loss"], np.mean(E2_LOSS), rtol=1e-5)
    np.testing.assert_allclose(metrics["clip_fraction"], 2 / 6, rtol=1e-6)
    np.testing.assert_allclose(metrics["dual_clip_fraction"], 1 / 6, rtol=1e-6)
    np.testing.assert_allclose(metrics["ratio_mean"], np.mean(E2_RHO), rtol=1e-5)
    np.testing.assert_allclose(metrics["approx_kl"], np.mean(0.5 * np.log(E2_RHO) ** 2), rtol=1e-5)


def test_token_advantages_equal_broadcast():
    adv_tok = np.repeat(E2_ADV[:, None], 1, axis=1)
    a = policy_loss(E2_LOGP, OLD, E2_ADV, ONES, **E2_KWARGS)[0]
    b = policy_loss(E2_LOGP, OLD, adv_tok, ONES, **E2_KWARGS)[0]
    np.testing.assert_allclose(a, b, rtol=1e-7)


def test_no_gradient_into_targets():
    def loss(old, adv):
        return policy_loss(jnp.asarray(E2_LOGP), old, adv, ONES, **E2_KWARGS)[0]

    grad_old, grad_adv = jax.grad(loss, argnums=(0, 1))(jnp.asarray(OLD), jnp.asarray(E2_ADV))
    np.testing.assert_array_equal(grad_old, 0.0)
    np.testing.assert_array_equal(grad_adv, 0.0)


@hypothesis.settings(max_examples=25, deadline=None)
@hypothesis.given(
    log_ratio=hnp.arrays(np.float32, (3, 4), elements=st.floats(-1.0, 1.0, width=32)),
    adv=hnp.arrays(np.float32, (3,), elements=st.floats(-2.0, 2.0, width=32)),
)
def test_gradient_matches_finite_differences(log_ratio, adv):
    old = np.zeros((3, 4), np.float32)
    mask = np.array([[1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 1]], np.float32)
    kwargs = dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0)
    grad = jax.grad(_loss)(jnp.asarray(log_ratio), old, adv, mask, **kwargs)
    # Per token the loss is piecewise smooth; compare with a central difference in float64
    # away from the kinks (|rho - bound| > 2 h).
    rho = np.exp(log_ratio.astype(np.float64))
    h = 1e-4
    for b in range(3):
        for t in range(4):
            near_kink = min(abs(rho[b, t] - 0.8), abs(rho[b, t] - 1.28), abs(rho[b, t] - 3.0))
            if not mask[b, t] or near_kink < 1e-3:
                continue

            def token_loss(x, a=float(adv[b])):
                r = np.exp(x)
                value = max(-a * r, -a * np.clip(r, 0.8, 1.28))
                return min(value, -a * 3.0) if a < 0 else value

            x0 = float(log_ratio[b, t])  # float64: with NumPy 2, float32 + h would stay float32
            fd = (token_loss(x0 + h) - token_loss(x0 - h)) / (2 * h)
            np.testing.assert_allclose(grad[b, t], fd / mask.sum(), rtol=1e-3, atol=1e-6)


def test_bad_input():
    with pytest.raises(ValueError, match="dual_clip"):
        policy_loss(E2_LOGP, OLD, E2_ADV, ONES, dual_clip=0.5)
    with pytest.raises(ValueError, match="clip_low"):
        policy_loss(E2_LOGP, OLD, E2_ADV, ONES, clip_low=1.0)
    with pytest.raises(ValueError, match="mode='sum'"):
        policy_loss(E2_LOGP, OLD, E2_ADV, ONES, mode="sum")
    with pytest.raises(ValueError, match="advantages"):
        policy_loss(E2_LOGP, OLD, E2_ADV[:3], ONES)
    with pytest.raises(ValueError, match="old_logprobs"):
        policy_loss(E2_LOGP, OLD[:3], E2_ADV, ONES)
    with pytest.raises(ValueError, match="logprobs"):
        policy_loss(E2_LOGP[:, 0], OLD[:, 0], E2_ADV, ONES[:, 0])
