"""Collecting RL batches: sampled rollouts, DAPO dynamic sampling, the Anti-SD teacher context.

Functions of explicit arguments (a policy module, a task family, a tokenizer, the task settings,
a PRNG key); the driver (`rljax.train.loop`) composes them, the SFT warm start, the reflection
phase and evaluation reuse them.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import jax
import numpy as np
from flax import nnx

from rljax.envs.base import StagedFamily, StatefulFamily, Task, TaskFamily, TeacherContextFamily
from rljax.methods import keep_groups
from rljax.parallel import multihost
from rljax.rollout import rollout as run_rollout
from rljax.rollout.teacher import build_teacher_batch
from rljax.rollout.types import Trajectories
from rljax.sampling import DecodeSession, Greedy, Temperature
from rljax.sampling.placement import params_mesh
from rljax.train.config import TaskSection


def sampling_strategy(cfg: TaskSection, *, greedy: bool = False):
    """The sampler's strategy for the task settings (greedy decoding when asked)."""
    if greedy:
        return Greedy()
    return Temperature(
        cfg.temperature, top_k=cfg.top_k or None, top_p=cfg.top_p if cfg.top_p < 1.0 else None
    )


def stage_scheme(family: TaskFamily):
    """The family's stage tags (RubricEM), or None."""
    return family.stage_scheme if isinstance(family, StagedFamily) else None


def sample_trajectories(
    model: nnx.Module,
    family: TaskFamily,
    tasks: Sequence[Task],
    tokenizer: Any,
    cfg: TaskSection,
    key: jax.Array,
    *,
    group_size: int,
    greedy: bool = False,
) -> Trajectories:
    """Rolls out `group_size` samples of each task with the KV-cache sampler.

    Args:
        model: the policy.
        family: plays and verifies the tasks.
        tasks: P tasks.
        tokenizer: the policy's tokenizer.
        cfg: sampling settings (temperature, top-k/p, turn and token budgets).
        key: the sampling key.
        group_size: G samples per task.
        greedy: decode greedily instead.

    Returns:
        B = P * G rows, row p * G + g playing `tasks[p]` (the whole batch, on every process).

    In a multi-process run every process passes the same P tasks and gets the same batch back.
    When the prompts split evenly over the processes (`process_tasks`), each process plays only
    its own prompts' environments, prefill and decode run on the global batch assembled from every
    process's rows, and the finished rows are gathered (`gather_trajectories`); otherwise every
    process plays every row.
    """
    share = process_tasks(model, family, len(tasks), group_size)
    own = tasks if share is None else tasks[share]
    session = DecodeSession(
        model,
        batch_size=len(own) * group_size,
        max_len=cfg.max_len,
        strategy=sampling_strategy(cfg, greedy=greedy),
        key=key,
        shard_rows=share is not None,
    )
    traj = run_rollout(
        session,
        family,
        own,
        tokenizer,
        max_tokens=cfg.max_len,
        group_size=group_size,
        max_turns=cfg.max_turns,
        max_new_tokens=cfg.max_new_tokens,
        stage_scheme=stage_scheme(family),
    )
    if share is None:
        return traj
    return gather_trajectories(traj, tokenizer.pad_token_id, group_size)


def process_tasks(
    model: nnx.Module, family: TaskFamily, num_prompts: int, group_size: int
) -> slice | None:
    """The prompts whose environments this process plays when a batch's rows split over the
    processes (None: every process plays every row).

    The rows split when the model is on a mesh spanning several processes, the P * G rows divide
    over its data axes with each process holding whole groups (`parallel.multihost.process_block`),
    and the family keeps no state across episodes: a `StatefulFamily` (RubricEM's rubric buffer)
    plays every row on every process, so its state evolves on each as with one process.
    """
    if jax.process_count() == 1 or isinstance(family, StatefulFamily):
        return None
    mesh = params_mesh(nnx.state(model))
    if mesh is None:
        return None
    block = multihost.process_block(num_prompts * group_size, mesh)
    if block is None or block.start % group_size or block.stop % group_size:
        return None
    return slice(block.start // group_size, block.stop // group_size)


def gather_trajectories(traj: Trajectories, pad_id: int, group_size: int) -> Trajectories:
    """Every process's rollout rows, in process order, as one batch on every process.

    The rows are right-padded to the longest T (the same T one process would have packed), and
    `group_ids` renumbered over the whole batch.
    """
    parts = multihost.allgather_objects(traj)
    batch = concat_trajectories(parts, pad_id)
    return batch.replace(group_ids=np.arange(batch.batch_size, dtype=np.int32) // group_size)


class SharedPrompts:
    """The run's prompt stream: each process reads its own part of every batch (the data
    pipeline's process shard), and `next` returns the whole batch of P tasks on every process.

    `get_state()` returns every process's iterator state (a collective); `set_state` takes that
    list back (each process restores its own entry).

    Args:
        local: this process's iterator (`components.prompt_stream`), with get/set_state.
    """

    def __init__(self, local):
        self.local = local

    def __iter__(self):
        return self

    def __next__(self) -> list[Task]:
        return [task for part in multihost.allgather_objects(next(self.local)) for task in part]

    def get_state(self) -> list[dict]:
        return multihost.allgather_objects(self.local.get_state())

    def set_state(self, states: list[dict] | dict) -> None:
        """Restores this process's iterator from `get_state()`'s list.

        A list of another length restores when its entries agree (the position in the stream
        does not depend on the number of processes); a dict is a one-process state.

        Raises:
            ValueError: the states disagree and their number is not the process count.
        """
        if isinstance(states, dict):
            states = [states]
        count, index = jax.process_count(), jax.process_index()
        if len(states) == count:
            self.local.set_state(states[index])
        elif all(state == states[0] for state in states):
            self.local.set_state(states[0])
        else:
            raise ValueError(
                f"the checkpoint holds data iterator states of {len(states)} processes that "
                f"differ; this run has {count} processes"
            )


def concat_trajectories(parts: Sequence[Trajectories], pad_id: int) -> Trajectories:
    """Stacks trajectories along the batch, right-padding every [B, T] array to the longest T."""
    seq_len = max(part.seq_len for part in parts)

    def pad(name: str, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x)
        if x.ndim != 2 or name in ("stage_rewards",) or x.shape[1] == seq_len:
            return x
        fill = {"tokens": pad_id, "stage_ids": -1}.get(name, 0)
        return np.pad(x, ((0, 0), (0, seq_len - x.shape[1])), constant_values=fill)

    fields = {}
    for name in Trajectories.__dataclass_fields__:
        if name == "info":
            continue
        fields[name] = np.concatenate([pad(name, getattr(part, name)) for part in parts])
    return Trajectories(**fields, info=tuple(i for part in parts for i in part.info))


def take_groups(traj: Trajectories, groups: Sequence[int], group_size: int) -> Trajectories:
    """The rows of prompts `groups` (in that order), renumbered 0..len(groups)-1."""
    rows = (
        np.concatenate([np.arange(g * group_size, (g + 1) * group_size) for g in groups])
        if len(groups)
        else np.zeros((0,), np.int64)
    )
    arrays = jax.tree.map(lambda x: np.asarray(x)[rows], traj)
    group_ids = np.repeat(np.arange(len(groups), dtype=np.int32), group_size)
    return arrays.replace(group_ids=group_ids, info=tuple(traj.info[i] for i in rows))


def filter_groups(
    sample: Callable[[int], tuple[Trajectories, list[Task]]],
    *,
    num_prompts: int,
    group_size: int,
    max_rounds: int,
    pad_id: int,
) -> tuple[Trajectories, list[Task], np.ndarray, dict]:
    """DAPO dynamic sampling (grpo.md GRPO-10) with a static batch shape.

    Draws batches with `sample(round)` and keeps the groups whose rewards are not all equal until
    `num_prompts` are kept or `max_rounds` batches were drawn. The batch keeps its P groups: when
    fewer survive (library choice, logged), the first dropped groups fill the remaining places
    with their action mask zeroed and `group_mask` False, so they add nothing to the loss, its
    denominators or the cross-group statistics, and shapes (hence compilations) never change.

    Returns:
        (trajectories of P groups, their tasks, group_mask [P] bool, metrics).
    """
    kept, dropped, generated_rewards = [], [], []
    for round_ in range(max_rounds):
        traj, tasks = sample(round_)
        generated_rewards.append(np.asarray(traj.rewards))
        keep = np.asarray(keep_groups(traj.rewards_by_group(group_size)))
        for p, tasks_p in enumerate(tasks):
            (kept if keep[p] else dropped).append((traj, p, tasks_p))
        if len(kept) >= num_prompts:
            break
    chosen = kept[:num_prompts]
    filler = dropped[: num_prompts - len(chosen)]
    parts = [take_groups(t, [p], group_size) for t, p, _ in chosen + filler]
    batch = concat_trajectories(parts, pad_id).replace(
        group_ids=np.repeat(np.arange(num_prompts, dtype=np.int32), group_size)
    )
    group_mask = np.arange(num_prompts) < len(chosen)
    row_mask = np.repeat(group_mask, group_size)[:, None]
    batch = batch.replace(action_mask=np.asarray(batch.action_mask) * row_mask)
    metrics = {
        "groups_kept": float(len(chosen)),
        "sampling_rounds": float(round_ + 1),
        "reward_generated": float(np.mean(np.concatenate(generated_rewards))),
    }
    return batch, [task for _, _, task in chosen + filler], group_mask, metrics


def teacher_batch(
    family: TeacherContextFamily,
    traj: Trajectories,
    tasks: Sequence[Task],
    tokenizer: Any,
    *,
    group_size: int,
    seed: int,
) -> dict[str, np.ndarray]:
    """The teacher-context token arrays for Anti-SD (see `rljax.train.step.teacher_stats`).

    The family's `teacher_context` gives, for each row, the text of the privileged context (a
    correct peer rollout from the group, else the reference solution, plus the correctness
    feedback); `rljax.rollout.teacher.build_teacher_batch` returns `teacher_tokens`,
    `teacher_positions`, `teacher_segment_ids` [B, T'] and `teacher_index` [B, T].
    """
    return build_teacher_batch(
        traj, tasks, tokenizer, family.teacher_context, group_size=group_size, seed=seed
    )
