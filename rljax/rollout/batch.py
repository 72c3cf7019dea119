"""Packing finished rollout rows into right-padded `Trajectories`."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence

import numpy as np
import transformers

from rljax.data.chat import Role, role_masks
from rljax.envs.stages import StageScheme
from rljax.rollout.stages import stage_ids
from rljax.rollout.types import Trajectories


@dataclasses.dataclass
class RowRecord:
    """One finished sequence of a rollout, before padding.

    Attributes:
        tokens: [T_b] token ids (prompt, actions, observations).
        roles: [T_b] `Role` of each token.
        logprobs: [T_b] sampler log-prob of generated tokens, 0 elsewhere.
        reward: scalar reward.
        group_id: prompt index p of the row.
        task_id: task type (GoLongRL).
        num_turns: assistant turns taken.
        truncated: the episode hit the token budget or the turn limit.
        stage_rewards: [K] per-stage judge scores, or None.
        info: the verifier's info dict plus rollout metadata.
    """

    tokens: np.ndarray
    roles: np.ndarray
    logprobs: np.ndarray
    reward: float
    group_id: int
    task_id: int
    num_turns: int
    truncated: bool
    stage_rewards: np.ndarray | None
    info: dict


def bucket_length(length: int, multiple: int) -> int:
    """Rounds `length` up to a multiple of `multiple` (at least one bucket), so shapes recompile rarely."""
    if multiple < 1:
        raise ValueError(f"pad_multiple must be >= 1, got {multiple}")
    return max(1, math.ceil(length / multiple)) * multiple


MIN_ROLLOUT_WIDTH = 16


def rollout_width(length: int, multiple: int) -> int:
    """The padded width T of a rollout batch whose longest row has `length` tokens: the smaller of
    the next power of two (at least 16) and the next multiple of `multiple`.

    Short batches are not padded to a whole `multiple` (a 24-token arithmetic batch takes 32
    columns, not 64: the update costs half), long ones waste less than a power of two would, and
    the distinct widths (16, 32, ..., then multiples of `multiple`) stay few, so the jitted
    forward and update compile rarely.
    """
    power = MIN_ROLLOUT_WIDTH
    while power < length:
        power *= 2
    return min(power, bucket_length(length, multiple))


def pack_rows(
    rows: Sequence[RowRecord],
    tokenizer: transformers.PreTrainedTokenizerFast,
    *,
    pad_id: int,
    pad_multiple: int = 64,
    stage_scheme: StageScheme | None = None,
) -> Trajectories:
    """Right-pads rows into aligned [B, T] arrays; T is `rollout_width` of the longest row.

    Args:
        rows: the B finished rows, in batch order.
        tokenizer: the rollout's tokenizer (decodes generated tokens for stage ids).
        pad_id: token id written on padding.
        pad_multiple: T is a power of two or a multiple of this (`rollout_width`).
        stage_scheme: stage tags of the task (rubric_em.md REM-1); None gives stage id -1 everywhere.

    Returns:
        `Trajectories` with masks derived from the token roles.

    Raises:
        ValueError: rows disagree on the number of stage rewards.
    """
    batch = len(rows)
    seq_len = rollout_width(max(row.tokens.shape[0] for row in rows), pad_multiple)
    tokens = np.full((batch, seq_len), pad_id, np.int32)
    roles = np.full((batch, seq_len), Role.TEMPLATE, np.int8)
    logprobs = np.zeros((batch, seq_len), np.float32)
    positions = np.zeros((batch, seq_len), np.int32)
    lengths = np.array([row.tokens.shape[0] for row in rows], np.int32)
    for b, row in enumerate(rows):
        n = lengths[b]
        tokens[b, :n], roles[b, :n], logprobs[b, :n] = row.tokens, row.roles, row.logprobs
        positions[b, :n] = np.arange(n)
    action_mask, env_mask, warning_mask = role_masks(roles)
    if stage_scheme is None:
        stages = np.full((batch, seq_len), -1, np.int32)
    else:
        stages = stage_ids(tokenizer, tokens, action_mask, stage_scheme)
    return Trajectories(
        tokens=tokens,
        positions=positions,
        segment_ids=(np.arange(seq_len)[None, :] < lengths[:, None]).astype(np.int32),
        action_mask=action_mask,
        env_mask=env_mask,
        warning_mask=warning_mask,
        stage_ids=stages,
        sampler_logprobs=logprobs,
        rewards=np.array([row.reward for row in rows], np.float32),
        group_ids=np.array([row.group_id for row in rows], np.int32),
        task_ids=np.array([row.task_id for row in rows], np.int32),
        lengths=lengths,
        num_turns=np.array([row.num_turns for row in rows], np.int32),
        truncated=np.array([row.truncated for row in rows], bool),
        stage_rewards=_stack_stage_rewards(rows),
        info=tuple(row.info for row in rows),
    )


def _stack_stage_rewards(rows: Sequence[RowRecord]) -> np.ndarray:
    sizes = {None if row.stage_rewards is None else row.stage_rewards.shape[0] for row in rows}
    if len(sizes) > 1:
        raise ValueError(
            f"rows disagree on stage_rewards: sizes {sorted(sizes, key=str)} (None = absent)"
        )
    if sizes == {None}:
        return np.zeros((len(rows), 0), np.float32)
    return np.stack([row.stage_rewards for row in rows]).astype(np.float32)
