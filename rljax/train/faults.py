"""Faults during training, caught on the host before they can poison a run.

- `mask_nonfinite_groups`: a group with a NaN/inf reward is masked out of the update (and counted)
  instead of turning every advantage of the batch into NaN.
- `call_reward` (defined in `rljax.envs.reward`, where the rollout calls it): a reward function
  that raises stops the run with the task and the exception.
- `check_update`: after `max_skipped` consecutive non-finite gradients (skipped by
  `optax.apply_if_finite`) or any non-finite parameter, the run stops before its next save, so the
  last checkpoint on disk is the last good state.
- `check_token_ids`: token ids outside the vocabulary are refused on the host (under `jit` an
  embedding lookup would clamp them silently).
"""

from __future__ import annotations

import logging
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rljax.envs.reward import RewardFunctionError, call_reward  # noqa: F401 - re-exported

log = logging.getLogger(__name__)


class NonFiniteTrainingError(FloatingPointError):
    """The run cannot continue: its gradients or parameters are no longer finite."""


class MaskedGroups(NamedTuple):
    """`mask_nonfinite_groups`'s result.

    Attributes:
        rewards: [P, G] with the rewards of masked groups replaced by 0.
        stage_rewards: [P, G, K] likewise (None when not given).
        group_mask: [P] the input mask with the non-finite groups switched off.
        action_mask: [B, T] with the rows of masked groups zeroed (B = P * G, rows p*G..p*G+G-1
            belong to prompt p), as `PrepareInputs.group_mask` requires.
        count: how many groups were newly masked out.
    """

    rewards: np.ndarray
    stage_rewards: np.ndarray | None
    group_mask: np.ndarray
    action_mask: np.ndarray
    count: int


def mask_nonfinite_groups(
    rewards: np.ndarray,
    group_mask: np.ndarray,
    action_mask: np.ndarray,
    stage_rewards: np.ndarray | None = None,
) -> MaskedGroups:
    """Masks out every group holding a NaN or infinite reward (or stage reward), with a warning.

    Args:
        rewards: [P, G] rewards by group (row p holds prompt p's G samples).
        group_mask: [P] bool, groups that count in the update.
        action_mask: [B, T] loss tokens of the batch.
        stage_rewards: optional [P, G, K] per-stage rewards (RubricEM).

    Returns:
        MaskedGroups; the replaced values are 0 so advantage arithmetic over the whole batch stays
        finite, and the masked groups contribute nothing to the loss.
    """
    rewards = np.asarray(rewards, np.float32)
    group_mask = np.asarray(group_mask, bool)
    if rewards.ndim != 2 or group_mask.shape != rewards.shape[:1]:
        raise ValueError(
            f"rewards must be [P, G] and group_mask [P], got {rewards.shape} and {group_mask.shape}"
        )
    bad = ~np.isfinite(rewards).all(axis=1)
    if stage_rewards is not None:
        stage_rewards = np.asarray(stage_rewards, np.float32)
        bad |= ~np.isfinite(stage_rewards.reshape(rewards.shape[0], -1)).all(axis=1)
        stage_rewards = np.where(bad[:, None, None], 0.0, stage_rewards).astype(np.float32)
    action_mask = np.asarray(action_mask)
    if action_mask.shape[0] != rewards.size:
        raise ValueError(
            f"action_mask has {action_mask.shape[0]} rows, rewards {rewards.shape} need P * G"
        )
    rows = np.repeat(bad, rewards.shape[1])
    newly = bad & group_mask
    if bad.any():
        log.warning(
            "%d group(s) with a non-finite reward masked out of this update (prompts %s)",
            int(newly.sum()),
            np.flatnonzero(bad).tolist(),
        )
    return MaskedGroups(
        rewards=np.where(bad[:, None], 0.0, rewards).astype(np.float32),
        stage_rewards=stage_rewards,
        group_mask=group_mask & ~bad,
        action_mask=np.where(rows[:, None], 0, action_mask).astype(action_mask.dtype),
        count=int(newly.sum()),
    )


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [
        jnp.isfinite(x).all() for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)
    ]
    return jnp.all(jnp.stack(leaves)) if leaves else jnp.asarray(True)


def check_update(opt_state: Any, params: Any, *, max_skipped: int, step: int) -> None:
    """Stops the run on `max_skipped` consecutive non-finite gradients or non-finite parameters.

    Call after every optimiser update and before the step's checkpoint is saved.

    Args:
        opt_state: the optimiser state, an `optax.ApplyIfFiniteState` (from `make_optimizer`):
            its `notfinite_count` counts consecutive skipped updates and is checkpointed, so the
            count survives a restart.
        params: the parameters after the update.
        max_skipped: `train.max_skipped_updates`.
        step: the RL step, for the message.

    Raises:
        NonFiniteTrainingError naming the step and the cause.
    """
    skipped = int(opt_state.notfinite_count)
    if skipped >= max_skipped:
        raise NonFiniteTrainingError(
            f"step {step}: {skipped} consecutive updates had a non-finite gradient and were "
            f"skipped (train.max_skipped_updates={max_skipped}); the run stops and its last "
            "checkpoint is the last good state"
        )
    if not bool(_all_finite(params)):
        raise NonFiniteTrainingError(
            f"step {step}: a parameter became non-finite after the update (learning rate or "
            "update too large?); the run stops and its last checkpoint is the last good state"
        )


def check_token_ids(
    tokens: np.ndarray,
    vocab_size: int,
    *,
    what: str,
    env_mask: np.ndarray | None = None,
    action_mask: np.ndarray | None = None,
) -> None:
    """Raises ValueError if a token id lies outside [0, vocab_size), naming where it is.

    Args:
        tokens: [B, T] int token ids (host array).
        vocab_size: the model's vocabulary size.
        what: the batch ("demonstrations", "rollout batch", ...).
        env_mask, action_mask: optional [B, T] masks; with them the message says whether the bad
            token is in an observation, a generated action or the prompt.
    """
    tokens = np.asarray(tokens)
    bad = (tokens < 0) | (tokens >= vocab_size)
    if not bad.any():
        return
    row, col = (int(i) for i in np.argwhere(bad)[0])
    part = ""
    if env_mask is not None and np.asarray(env_mask)[row, col] > 0:
        part = " (an observation token)"
    elif action_mask is not None and np.asarray(action_mask)[row, col] > 0:
        part = " (a generated token)"
    elif env_mask is not None or action_mask is not None:
        part = " (a prompt token)"
    raise ValueError(
        f"{what}: token id {int(tokens[row, col])} at row {row}, position {col}{part} is outside "
        f"the model's vocabulary [0, {vocab_size}) ({int(bad.sum())} such ids in all); check the "
        "tokenizer against model.vocab_size"
    )
