"""Training faults: non-finite reward groups, raising reward functions, non-finite updates, token ids."""

import logging

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from rljax.train import faults
from rljax.train.config import OptimSection
from rljax.train.optim import make_optimizer


def test_nonfinite_groups_are_masked_counted_and_zeroed(caplog):
    rewards = np.array([[1.0, 0.0], [np.nan, 1.0], [0.5, np.inf]], np.float32)
    action_mask = np.ones((6, 3), np.float32)
    with caplog.at_level(logging.WARNING):
        out = faults.mask_nonfinite_groups(rewards, np.array([True, True, False]), action_mask)
    assert "non-finite reward" in caplog.text
    np.testing.assert_array_equal(out.group_mask, [True, False, False])
    assert out.count == 1  # group 2 was already masked (dynamic-sampling filler)
    np.testing.assert_array_equal(out.rewards, [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]])
    np.testing.assert_array_equal(out.action_mask.sum(1), [3, 3, 0, 0, 0, 0])
    assert out.stage_rewards is None


def test_nonfinite_stage_reward_masks_its_group():
    stage = np.zeros((2, 2, 3), np.float32)
    stage[1, 0, 2] = np.nan
    out = faults.mask_nonfinite_groups(
        np.zeros((2, 2)), np.ones(2, bool), np.ones((4, 1)), stage_rewards=stage
    )
    np.testing.assert_array_equal(out.group_mask, [True, False])
    assert out.count == 1 and np.isfinite(out.stage_rewards).all()


def test_group_advantages_stay_finite_after_masking():
    from rljax.losses import group_advantages

    rewards = np.array([[1.0, 0.0], [np.nan, 1.0]], np.float32)
    assert not np.isfinite(np.asarray(group_advantages(jnp.asarray(rewards)))).all()
    out = faults.mask_nonfinite_groups(rewards, np.ones(2, bool), np.ones((4, 2)))
    assert np.isfinite(np.asarray(group_advantages(jnp.asarray(out.rewards)))).all()


def test_all_finite_rewards_change_nothing(caplog):
    rewards = np.array([[1.0, 0.0]], np.float32)
    with caplog.at_level(logging.WARNING):
        out = faults.mask_nonfinite_groups(rewards, np.ones(1, bool), np.ones((2, 2)))
    assert out.count == 0 and out.group_mask.all() and not caplog.text
    np.testing.assert_array_equal(out.rewards, rewards)


def test_raising_reward_names_the_task_and_exception():
    class Task:
        uid = "arith/train/17"

    def reward(task, response):
        raise KeyError("answer")

    with pytest.raises(
        faults.RewardFunctionError, match="KeyError: 'answer' on task 'arith/train/17'"
    ):
        faults.call_reward(reward, Task(), "42")
    assert faults.call_reward(lambda task, r: len(r), Task(), "42") == 2


def _optimizer_state(grads_seq, learning_rate=0.1):
    optimizer = make_optimizer(OptimSection(learning_rate=learning_rate), 100)
    params = {"w": jnp.ones(3)}
    state = optimizer.init(params)
    for g in grads_seq:
        updates, state = optimizer.update({"w": jnp.asarray(g)}, state, params)
        params = optax.apply_updates(params, updates)
    return state, params


def test_consecutive_nonfinite_gradients_stop_the_run():
    nan = [np.nan, 0.0, 0.0]
    state, params = _optimizer_state([nan] * 2)
    faults.check_update(state, params, max_skipped=3, step=2)
    state, params = _optimizer_state([nan] * 3)
    with pytest.raises(faults.NonFiniteTrainingError, match="3 consecutive.*max_skipped_updates=3"):
        faults.check_update(state, params, max_skipped=3, step=3)
    # A finite update in between resets the count.
    state, params = _optimizer_state([nan, nan, [1.0, 1.0, 1.0], nan])
    faults.check_update(state, params, max_skipped=3, step=4)


def test_nonfinite_parameter_stops_the_run():
    # An infinite learning rate passes optax's finiteness test on the gradient, not the parameters.
    state, params = _optimizer_state([[1.0, 1.0, 1.0]], learning_rate=float("inf"))
    assert not np.isfinite(np.asarray(params["w"])).all()
    with pytest.raises(
        faults.NonFiniteTrainingError, match="step 1: a parameter became non-finite"
    ):
        faults.check_update(state, params, max_skipped=10, step=1)


def test_token_ids_outside_the_vocabulary_are_refused():
    tokens = np.array([[1, 2, 3], [4, 9, 5]])
    faults.check_token_ids(tokens, 10, what="demonstrations")
    with pytest.raises(ValueError, match=r"demonstrations: token id 9 at row 1, position 1 is"):
        faults.check_token_ids(tokens, 9, what="demonstrations")
    env = np.array([[0, 0, 0], [0, 1, 0]])
    with pytest.raises(ValueError, match=r"\(an observation token\).*\[0, 9\)"):
        faults.check_token_ids(tokens, 9, what="rollout batch", env_mask=env)
    with pytest.raises(ValueError, match=r"token id -1 .*\(a prompt token\)"):
        faults.check_token_ids(
            np.array([[-1, 2]]), 9, what="rollout batch", env_mask=np.zeros((1, 2))
        )
