"""Glue between the trainer and the policy-side components: model, prompts, sampler, rollout.

Each function here is one arrow of the data flow in DESIGN.md, written once for the RL loop, the
SFT warm start and evaluation.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import transformers
from flax import nnx
from jax.sharding import Mesh

from rljax import parallel
from rljax.data import load_tokenizer
from rljax.data.pipeline import FamilySource, task_batches
from rljax.envs.base import Task, TaskFamily
from rljax.models import PRESETS, Decoder, load_hf
from rljax.rollout import rollout as run_rollout
from rljax.rollout.types import Trajectories
from rljax.sampling import DecodeSession, Greedy, Temperature
from rljax.train.config import ModelSection, TaskSection

if TYPE_CHECKING:
    from rljax.train.loop import Trainer


def build_policy(cfg: ModelSection, *, seed: int, mesh: Mesh | None = None
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


def prompt_stream(family: TaskFamily, prompts_per_step: int, *, seed: int,
                  num_tasks: int | None = None, split: str = "train"):
    """An endless iterator of `prompts_per_step`-task batches (this process's shard), shuffled by
    `seed`, whose `get_state()`/`set_state()` checkpoint its position exactly.

    `num_tasks` is the epoch size; None takes the family's `num_examples(split)` when it has one
    (finite datasets), else 100,000 generated instances.
    """
    if num_tasks is None:
        num_tasks = family.num_examples(split) if hasattr(family, "num_examples") else 100_000
    return task_batches(FamilySource(family, split, num_tasks), batch_size=prompts_per_step,
                        seed=seed,
                        shard_index=jax.process_index(), shard_count=jax.process_count())


def strategy(cfg: TaskSection, *, greedy: bool = False):
    if greedy:
        return Greedy()
    return Temperature(cfg.temperature, top_k=cfg.top_k or None,
                       top_p=cfg.top_p if cfg.top_p < 1.0 else None)


def sample_trajectories(model: nnx.Module, family: TaskFamily, tasks: Sequence[Task],
                        tokenizer: transformers.PreTrainedTokenizerFast, cfg: TaskSection,
                        key: jax.Array, *, group_size: int, greedy: bool = False
                        ) -> Trajectories:
    """Rolls out `group_size` samples of each task with the KV-cache sampler."""
    session = DecodeSession(model, batch_size=len(tasks) * group_size, max_len=cfg.max_len,
                            strategy=strategy(cfg, greedy=greedy), key=key)
    return run_rollout(session, family, tasks, tokenizer, max_tokens=cfg.max_len,
                       group_size=group_size, max_turns=cfg.max_turns,
                       max_new_tokens=cfg.max_new_tokens, stage_scheme=stage_scheme(family))


def stage_scheme(family: TaskFamily):
    """The family's stage tags (RubricEM), or None."""
    return getattr(family, "stage_scheme", None)


def rollout(trainer: "Trainer", tasks: Sequence[Task], key: jax.Array, *, group_size: int
            ) -> Trajectories:
    """One RL batch from the trainer's current policy."""
    from rljax.train.loop import model_state
    return sample_trajectories(model_state(trainer), trainer.family, tasks, trainer.tokenizer,
                               trainer.config.task, key, group_size=group_size)


def select_groups(traj: Trajectories, keep: np.ndarray, group_size: int) -> Trajectories:
    """The rows of the prompts where `keep` [P] is True (DAPO dynamic sampling)."""
    rows = np.repeat(np.asarray(keep, bool), group_size)
    index = np.flatnonzero(rows)
    arrays = jax.tree.map(lambda x: np.asarray(x)[index], traj)
    kept_groups = np.flatnonzero(np.asarray(keep, bool))
    regroup = {g: i for i, g in enumerate(kept_groups)}
    group_ids = np.asarray([regroup[int(g)] for g in np.asarray(traj.group_ids)[index]], np.int32)
    info = [traj.info[i] for i in index] if traj.info else traj.info
    return arrays.replace(group_ids=group_ids, info=info)


def cluster_ids(family: TaskFamily, traj: Trajectories) -> np.ndarray:
    """Strategy cluster of each row [B] (Poly-EPO), from the verifier's info; zeros when absent."""
    return np.asarray([int(info.get("cluster", 0)) if isinstance(info, dict) else 0
                       for info in traj.info] or np.zeros(traj.batch_size), np.int32)


def teacher_batch(trainer: "Trainer", traj: Trajectories, tasks: Sequence[Task]) -> dict[str, Any]:
    """The teacher-context token arrays for Anti-SD (see `rljax.train.step.teacher_stats`).

    The family builds, for each row, the privileged context (a correct peer rollout from the group,
    else the reference solution, plus the correctness feedback); its `teacher_batch` returns
    `teacher_tokens`, `teacher_positions`, `teacher_segment_ids` [B, T'] and `teacher_index` [B, T].
    """
    builder = getattr(trainer.family, "teacher_batch", None)
    if builder is None:
        raise ValueError(f"method {trainer.method.name!r} needs a teacher context, but task family "
                         f"{trainer.config.task.family!r} does not provide `teacher_batch`")
    return builder(traj, tasks, trainer.tokenizer, group_size=trainer.config.task.group_size)
