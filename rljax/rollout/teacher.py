"""Anti-SD's privileged teacher context as token arrays (anti_sd.md ASD-7 and section 2's alignment).

For rollout row b = p*G + g the self-teacher reads `[x ; c ; y]`: the family's teacher turn (the
task prompt x with the privileged block c: a verified solution and the correctness feedback on y)
rendered as one user turn, followed by exactly the student's response tokens y (actions and
observations, never re-tokenised). The solution comes from a correct rollout of the same group
chosen uniformly at random, excluding y itself when another correct one exists (so a lone correct y
sees itself), else from the task's reference solution; what the teacher reads of it is the family's
choice (`teacher_context`, e.g. `KeySearchFamily.teacher_context`). `teacher_index[b, t]` points
each student response position t at the position of the same token in the teacher sequence, so the
trainer gathers teacher log-probs by response position, never by absolute position.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence

import numpy as np
import transformers

from rljax.data.chat import ChatFormat, render_prompt
from rljax.envs.base import Task
from rljax.rollout.batch import bucket_length
from rljax.rollout.types import Trajectories

REFERENCE = -1  # `solution_rows` entry of a row whose solution is the reference


def solution_rows(rewards: np.ndarray, group_size: int, rng: np.random.Generator) -> np.ndarray:
    """Which row's response serves as each row's verified solution (ASD-7).

    Args:
        rewards: [B] rewards, B = P * group_size; a row is correct when its reward is 1.
        group_size: G rollouts per prompt (rows p*G .. p*G+G-1 form group p).
        rng: draws the peer uniformly among the candidates.

    Returns:
        [B] int: a correct row of the same group (another one when the group has one, else the row
        itself), or `REFERENCE` (-1) when the group has no correct row.
    """
    rewards = np.asarray(rewards)
    if rewards.ndim != 1 or group_size < 1 or rewards.shape[0] % group_size:
        raise ValueError(
            f"rewards must be [B] with B a multiple of group_size={group_size}, got shape {rewards.shape}"
        )
    out = np.full(rewards.shape[0], REFERENCE, np.int64)
    for b in range(rewards.shape[0]):
        start = b - b % group_size
        correct = [r for r in range(start, start + group_size) if rewards[r] == 1.0]
        peers = [r for r in correct if r != b] or correct
        if peers:
            out[b] = peers[int(rng.integers(len(peers)))]
    return out


def response_text(
    tokenizer: transformers.PreTrainedTokenizerFast,
    tokens: np.ndarray,
    action_mask: np.ndarray,
    env_mask: np.ndarray,
    warning_mask: np.ndarray,
) -> str:
    """A row's response as text: its action and observation runs decoded and joined by spaces.

    Harness warnings and chat glue are left out; special tokens are skipped.

    Args:
        tokenizer: the rollout's tokenizer.
        tokens: [T] token ids of one row.
        action_mask, env_mask, warning_mask: [T] bool masks of that row.

    Returns:
        e.g. "WAIT TRY 3 NO TRY 5 YES ANSWER 5".
    """
    kind = np.where(action_mask, 1, np.where(env_mask & ~warning_mask, 2, 0))
    runs, start = [], 0
    for t in range(1, kind.shape[0] + 1):
        if t == kind.shape[0] or kind[t] != kind[start]:
            if kind[start]:
                runs.append(
                    tokenizer.decode(tokens[start:t].tolist(), skip_special_tokens=True).strip()
                )
            start = t
    return " ".join(run for run in runs if run)


def build_teacher_batch(
    traj: Trajectories,
    tasks: Sequence[Task],
    tokenizer: transformers.PreTrainedTokenizerFast,
    teacher_context: Callable[[Task, str | None, bool], str],
    *,
    group_size: int,
    seed: int,
    fmt: ChatFormat | None = None,
    pad_multiple: int = 64,
) -> dict[str, np.ndarray]:
    """The teacher sequences and the student-to-teacher index of a rollout batch (ASD-7).

    Args:
        traj: the rollout, B = P * group_size rows; row b plays `tasks[b // group_size]`.
        tasks: the P tasks.
        tokenizer: the rollout's tokenizer.
        teacher_context: (task, peer, correct) -> the teacher's user-turn text (x and c), where
            peer is the chosen correct peer's response text (`response_text`), or None when the
            group has no correct row (the family shows its reference solution), and correct says
            whether the row's own response was correct; e.g. `KeySearchFamily.teacher_context`.
        group_size: G.
        seed: with the batch's tokens, seeds the uniform peer choice (reproducible on resume).
        fmt: the chat format of the rollout (None: the tokenizer's).
        pad_multiple: T' is a multiple of this.

    Returns:
        "teacher_tokens", "teacher_positions", "teacher_segment_ids": [B, T'] int32 (right-padded
        with the pad id; positions 0..len-1; segment 1 on real tokens), and "teacher_index": [B, T]
        int32, the teacher position of every student response position (prompt and padding: -1).

    Raises:
        ValueError: sizes disagree, or a row does not start with its task's rendered prompt.
    """
    tokens, lengths = np.asarray(traj.tokens), np.asarray(traj.lengths)
    batch = tokens.shape[0]
    if len(tasks) * group_size != batch:
        raise ValueError(f"{len(tasks)} tasks x group_size={group_size} != {batch} trajectory rows")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token")
    digest = hashlib.sha256(tokens.tobytes()).digest()
    peers = solution_rows(
        np.asarray(traj.rewards), group_size, np.random.default_rng([seed, *digest[:8]])
    )
    masks = [np.asarray(m, bool) for m in (traj.action_mask, traj.env_mask, traj.warning_mask)]
    rows, index = [], np.full(tokens.shape, -1, np.int32)
    for b in range(batch):
        task = tasks[b // group_size]
        prompt = render_prompt(tokenizer, task.prompt, task.system, fmt=fmt).tokens
        n = prompt.shape[0]
        if n > lengths[b] or not np.array_equal(tokens[b, :n], prompt):
            raise ValueError(
                f"row {b} does not start with the rendered prompt of task {task.uid!r}; "
                "pass the tasks the rollout played, in order"
            )
        peer = None
        if peers[b] != REFERENCE:
            span = slice(0, lengths[peers[b]])
            peer = response_text(
                tokenizer, tokens[peers[b], span], *(m[peers[b], span] for m in masks)
            )
        text = teacher_context(task, peer, bool(traj.rewards[b] == 1.0))
        teacher_prompt = render_prompt(tokenizer, text, task.system, fmt=fmt).tokens
        rows.append(np.concatenate([teacher_prompt, tokens[b, n : lengths[b]]]))
        index[b, n : lengths[b]] = teacher_prompt.shape[0] + np.arange(lengths[b] - n)
    width = bucket_length(max(row.shape[0] for row in rows), pad_multiple)
    teacher = np.full((batch, width), tokenizer.pad_token_id, np.int32)
    positions, segments = np.zeros((batch, width), np.int32), np.zeros((batch, width), np.int32)
    for b, row in enumerate(rows):
        n = row.shape[0]
        teacher[b, :n], positions[b, :n], segments[b, :n] = row, np.arange(n), 1
    return {
        "teacher_tokens": teacher,
        "teacher_positions": positions,
        "teacher_segment_ids": segments,
        "teacher_index": index,
    }
