"""Rollout batch -> what the jitted passes read: one `TrainBatch` and the method's `PrepareInputs`.

The only place where `Trajectories` become device-side training inputs: `train_batch` builds the
update batch, `prepare_inputs` collects rewards, masks, stages and clusters plus the no-grad
forward pass's outputs for `Method.prepare`.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rljax.methods import PrepareInputs, TrainBatch
from rljax.rollout.types import Trajectories
from rljax.train.step import ForwardOutputs


def train_batch(traj: Trajectories) -> TrainBatch:
    """The token arrays of a rollout batch (host numpy, no credit yet).

    Args:
        traj: B rows of rollouts (or demonstrations).

    Returns:
        A `TrainBatch` with tokens, positions, segment_ids, stage_ids (int32) and action, env and
        warning masks (float32), [B, T]; old_logprobs, advantages and ref_logprobs None.
    """
    return TrainBatch(
        tokens=np.asarray(traj.tokens, np.int32),
        positions=np.asarray(traj.positions, np.int32),
        segment_ids=np.asarray(traj.segment_ids, np.int32),
        action_mask=np.asarray(traj.action_mask, np.float32),
        env_mask=np.asarray(traj.env_mask, np.float32),
        warning_mask=np.asarray(traj.warning_mask, np.float32),
        stage_ids=np.asarray(traj.stage_ids, np.int32),
    )


def cluster_ids(traj: Trajectories) -> np.ndarray:
    """Strategy cluster of each row [B] (Poly-EPO), from the verifier's info; zeros when absent."""
    return np.asarray(
        [int(info.get("cluster", 0)) if isinstance(info, dict) else 0 for info in traj.info]
        or np.zeros(traj.batch_size),
        np.int32,
    )


def prepare_inputs(
    traj: Trajectories,
    forward: ForwardOutputs,
    *,
    group_size: int,
    group_mask: np.ndarray | None = None,
) -> PrepareInputs:
    """What `Method.prepare` reads for a rollout batch of P groups of G rows.

    Args:
        traj: the rollout batch, B = P * G rows (row p * G + g plays prompt p).
        forward: the no-grad forward pass on `train_batch(traj)` (`step.make_forward_fn`).
        group_size: G.
        group_mask: [P] groups that count (False: dynamic-sampling filler); None: all.

    Returns:
        The inputs (hidden and teacher statistics as the forward pass computed them).
    """
    if traj.batch_size % group_size:
        raise ValueError(
            f"batch of {traj.batch_size} rows does not split into groups of {group_size}"
        )
    num_prompts = traj.batch_size // group_size
    if group_mask is None:
        group_mask = np.ones(num_prompts, bool)
    return PrepareInputs(
        rewards=jnp.asarray(traj.rewards_by_group(group_size), jnp.float32),
        task_ids=jnp.asarray(np.asarray(traj.task_ids)[::group_size], jnp.int32),
        group_mask=jnp.asarray(group_mask, bool),
        action_mask=jnp.asarray(traj.action_mask, jnp.float32),
        env_mask=jnp.asarray(traj.env_mask, jnp.float32),
        warning_mask=jnp.asarray(traj.warning_mask, jnp.float32),
        stage_ids=jnp.asarray(traj.stage_ids, jnp.int32),
        stage_rewards=jnp.asarray(traj.stage_rewards, jnp.float32).reshape(
            num_prompts, group_size, -1
        ),
        cluster_ids=jnp.asarray(cluster_ids(traj)).reshape(num_prompts, group_size),
        old_logprobs=forward.logprobs,
        old_entropy=forward.entropy,
        lengths=jnp.asarray(np.asarray(traj.action_mask).sum(-1), jnp.int32),
        hidden=forward.hidden,
        teacher_logprobs=forward.teacher_logprobs,
        teacher_entropy=forward.teacher_entropy,
    )
