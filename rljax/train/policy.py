"""Glue between the trainer and the policy-side components: model, prompts, sampler, rollout.

Each function here is one arrow of the data flow in DESIGN.md, written once for the RL loop, the
SFT warm start and evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import jax
import numpy as np
import transformers
from flax import nnx
from jax.sharding import Mesh

from rljax import methods as methods_lib
from rljax import parallel
from rljax.data import load_tokenizer
from rljax.data.pipeline import FamilySource, task_batches
from rljax.envs.base import Task, TaskFamily
from rljax.models import PRESETS, Decoder, load_hf
from rljax.rollout import rollout as run_rollout
from rljax.rollout.teacher import build_teacher_batch
from rljax.rollout.types import Trajectories
from rljax.sampling import DecodeSession, Greedy, Temperature
from rljax.train.config import ModelSection, TaskSection

if TYPE_CHECKING:
    from rljax.train.loop import Trainer


def build_policy(
    cfg: ModelSection, *, seed: int, mesh: Mesh | None = None
) -> tuple[transformers.PreTrainedTokenizerFast, Decoder]:
    """The tokenizer and the policy network a run starts from.

    With `cfg.hf_path`, both come from that local Hugging Face checkpoint directory; otherwise the
    built-in tokenizer and a freshly initialised `cfg.preset` (vocabulary sized to the tokenizer)
    with `cfg.overrides` applied. Parameters are placed on `mesh` by the logical partition rules.
    """
    if cfg.hf_path is not None:
        tokenizer = load_tokenizer(cfg.hf_path)
        return tokenizer, load_hf(cfg.hf_path, dtype=cfg.dtype, mesh=mesh)
    if cfg.preset not in PRESETS:
        raise ValueError(f"model.preset={cfg.preset!r} is not one of {sorted(PRESETS)}")
    tokenizer = load_tokenizer()
    overrides = {"vocab_size": len(tokenizer), "dtype": cfg.dtype, **cfg.overrides}
    config = PRESETS[cfg.preset](**overrides)
    model = Decoder(config, rngs=nnx.Rngs(seed))
    if mesh is not None:
        model = parallel.shard_model(model, mesh)
    return tokenizer, model


def prompt_stream(
    family: TaskFamily,
    prompts_per_step: int,
    *,
    seed: int,
    num_tasks: int | None = None,
    split: str = "train",
):
    """An endless iterator of `prompts_per_step`-task batches (this process's shard), shuffled by
    `seed`, whose `get_state()`/`set_state()` checkpoint its position exactly.

    `num_tasks` is the epoch size; None takes the family's `num_examples(split)` when it has one
    (finite datasets), else 100,000 generated instances.
    """
    if num_tasks is None:
        num_tasks = family.num_examples(split) if hasattr(family, "num_examples") else 100_000
    return task_batches(
        FamilySource(family, split, num_tasks),
        batch_size=prompts_per_step,
        seed=seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )


def strategy(cfg: TaskSection, *, greedy: bool = False):
    if greedy:
        return Greedy()
    return Temperature(
        cfg.temperature, top_k=cfg.top_k or None, top_p=cfg.top_p if cfg.top_p < 1.0 else None
    )


def sample_trajectories(
    model: nnx.Module,
    family: TaskFamily,
    tasks: Sequence[Task],
    tokenizer: transformers.PreTrainedTokenizerFast,
    cfg: TaskSection,
    key: jax.Array,
    *,
    group_size: int,
    greedy: bool = False,
) -> Trajectories:
    """Rolls out `group_size` samples of each task with the KV-cache sampler."""
    session = DecodeSession(
        model,
        batch_size=len(tasks) * group_size,
        max_len=cfg.max_len,
        strategy=strategy(cfg, greedy=greedy),
        key=key,
    )
    return run_rollout(
        session,
        family,
        tasks,
        tokenizer,
        max_tokens=cfg.max_len,
        group_size=group_size,
        max_turns=cfg.max_turns,
        max_new_tokens=cfg.max_new_tokens,
        stage_scheme=stage_scheme(family),
    )


def stage_scheme(family: TaskFamily):
    """The family's stage tags (RubricEM), or None."""
    return getattr(family, "stage_scheme", None)


def rollout(
    trainer: "Trainer", tasks: Sequence[Task], key: jax.Array, *, group_size: int
) -> Trajectories:
    """One RL batch from the trainer's current policy."""
    from rljax.train.loop import model_state

    return sample_trajectories(
        model_state(trainer),
        trainer.family,
        tasks,
        trainer.tokenizer,
        trainer.config.task,
        key,
        group_size=group_size,
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
        keep = np.asarray(methods_lib.keep_groups(traj.rewards_by_group(group_size)))
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


def cluster_ids(family: TaskFamily, traj: Trajectories) -> np.ndarray:
    """Strategy cluster of each row [B] (Poly-EPO), from the verifier's info; zeros when absent."""
    return np.asarray(
        [int(info.get("cluster", 0)) if isinstance(info, dict) else 0 for info in traj.info]
        or np.zeros(traj.batch_size),
        np.int32,
    )


def teacher_batch(trainer: "Trainer", traj: Trajectories, tasks: Sequence[Task]) -> dict[str, Any]:
    """The teacher-context token arrays for Anti-SD (see `rljax.train.step.teacher_stats`).

    The family's `teacher_context` gives, for each row, the text of the privileged context (a
    correct peer rollout from the group, else the reference solution, plus the correctness
    feedback); `rljax.rollout.teacher.build_teacher_batch` returns `teacher_tokens`,
    `teacher_positions`, `teacher_segment_ids` [B, T'] and `teacher_index` [B, T].
    """
    context = getattr(trainer.family, "teacher_context", None)
    if context is None:
        raise ValueError(
            f"method {trainer.method.name!r} needs a teacher context, but task family "
            f"{trainer.config.task.family!r} does not provide `teacher_context`"
        )
    return build_teacher_batch(
        traj,
        tasks,
        trainer.tokenizer,
        context,
        group_size=trainer.config.task.group_size,
        seed=trainer.config.train.seed,
    )
