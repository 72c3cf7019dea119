"""`methods.echo`: the env-only arm (echo.md 8.2) trains the observation CE alone."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax import losses, methods
from rljax.methods import TrainBatch

COEF = 0.05


def _batch():
    """Four rows of 12 tokens: actions at 0-3 and 8-9, environment output at 5-7, a warning at 4
    (rows 0 and 2 only); non-zero advantages of both signs and ratios away from 1."""
    rng = np.random.default_rng(0)
    shape = (4, 12)
    action = np.zeros(shape, np.float32)
    action[:, [0, 1, 2, 3, 8, 9]] = 1
    env = np.zeros(shape, np.float32)
    env[:, [5, 6, 7]] = 1
    warning = np.zeros(shape, np.float32)
    warning[[0, 2], 4] = 1
    env = np.maximum(env, warning)  # the rollout's env_mask includes the warnings
    logprobs = -rng.uniform(0.1, 3.0, shape).astype(np.float32)
    batch = TrainBatch.create(
        action_mask=action,
        env_mask=env,
        warning_mask=warning,
        old_logprobs=logprobs + rng.uniform(-0.1, 0.1, shape).astype(np.float32),
        advantages=np.array([1.5, -0.5, 0.7, -1.7], np.float32),
    )
    return jnp.asarray(logprobs), batch


def test_env_only_zeroes_the_policy_term_and_keeps_the_observation_ce(variant):
    logprobs, batch = _batch()
    both = variant(methods.echo(coef=COEF).loss)
    env_only = variant(methods.echo(coef=COEF, env_only=True).loss)
    loss, metrics = env_only(logprobs, batch)
    full_loss, full_metrics = both(logprobs, batch)

    env_loss, env_metrics = losses.echo_env_loss(logprobs, batch.env_mask, batch.warning_mask)
    assert float(metrics["policy_loss"]) == 0.0
    assert float(full_metrics["policy_loss"]) != 0.0  # the batch does carry a policy term
    np.testing.assert_allclose(loss, COEF * env_loss, rtol=1e-6)
    np.testing.assert_allclose(full_loss, full_metrics["policy_loss"] + COEF * env_loss, rtol=1e-6)
    for name in ("env_loss", "ce_env_per_token", "ce_warning_per_token"):
        np.testing.assert_allclose(metrics[name], env_metrics[name], rtol=1e-6)
        np.testing.assert_allclose(metrics[name], full_metrics[name], rtol=1e-6)

    grad = variant(jax.grad(lambda lp: env_only(lp, batch)[0]))(logprobs)
    full_grad = variant(jax.grad(lambda lp: both(lp, batch)[0]))(logprobs)
    actions = np.asarray(batch.action_mask, bool)
    assert np.all(np.asarray(grad)[actions] == 0.0)
    assert np.all(np.asarray(full_grad)[actions] != 0.0)
    # Observation tokens get the same gradient with or without the reward term.
    np.testing.assert_allclose(np.asarray(grad)[~actions], np.asarray(full_grad)[~actions])
    observed = np.asarray(batch.env_mask, bool)
    assert np.all(np.asarray(grad)[observed & ~np.asarray(batch.warning_mask, bool)] < 0)


def test_env_only_refuses_a_zero_coefficient_and_a_non_bool_flag():
    with pytest.raises(ValueError, match=r"coef must be > 0, got 0\.0"):
        methods.echo(coef=0.0, env_only=True)
    with pytest.raises(ValueError, match="env_only must be a bool, got 'yes'"):
        methods.echo(env_only="yes")
