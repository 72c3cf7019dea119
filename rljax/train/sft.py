"""Supervised warm start: masked next-token loss on scripted-expert demonstrations.

Runs on the same machinery as RL (the jitted update of `rljax.train.step` with an SFT "method"
whose loss is the negative log-likelihood of the action tokens). Its parameters are saved under
`<runs root>/sft/<fingerprint>/`, where the fingerprint covers everything that determines them
(model, task, SFT settings, seed), so every method's experiment on the same task reuses one warm
start instead of training its own.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import TYPE_CHECKING, Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath

from rljax.methods import Method
from rljax.rollout import expert_trajectories
from rljax.train import checkpoint as ckpt_lib
from rljax.train.config import ExperimentConfig, OptimSection
from rljax.train.optim import make_optimizer
from rljax.train.step import TrainState, make_update_fn

if TYPE_CHECKING:
    from rljax.train.loop import Trainer

log = logging.getLogger(__name__)


def nll_loss(logprobs: jax.Array, batch: dict) -> tuple[jax.Array, dict]:
    """Token-mean negative log-likelihood of the demonstration's action tokens."""
    mask = batch["action_mask"]
    nll = -(logprobs * mask).sum() / jnp.maximum(mask.sum(), 1)
    return nll, {"nll": nll}


SFT = Method(
    name="sft",
    prepare=lambda inputs, state: ({}, state, {}),
    loss=nll_loss,
    normalizer=lambda batch: jnp.maximum(batch["action_mask"].sum(), 1).astype(jnp.float32),
)


def fingerprint(config: ExperimentConfig) -> str:
    """Hash of the config fields that determine the warm-start parameters."""
    data = {
        "model": config.to_dict()["model"],
        "task": config.to_dict()["task"],
        "sft": config.to_dict()["sft"],
        "seed": config.train.seed,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def demonstrations(trainer: "Trainer", config: ExperimentConfig) -> list[dict]:
    """Expert demonstrations on training tasks, split into batches of `sft.batch_size` rows."""
    from rljax.train.loop import batch_arrays

    cfg = config.sft
    rng = np.random.default_rng(config.train.seed)
    if hasattr(trainer.family, "warm_start_tasks"):  # e.g. Anti-SD's student/teacher-mode mixture
        tasks = trainer.family.warm_start_tasks(cfg.num_demos)
    else:
        tasks = [trainer.family.generate("train", i) for i in range(cfg.num_demos)]
    traj = expert_trajectories(
        trainer.family,
        tasks,
        trainer.tokenizer,
        rng,
        cfg.noise,
        max_tokens=config.task.max_len,
        stage_scheme=getattr(trainer.family, "stage_scheme", None),
    )
    arrays = batch_arrays(traj)
    order = rng.permutation(traj.batch_size)
    usable = (traj.batch_size // cfg.batch_size) * cfg.batch_size
    if usable == 0:
        raise ValueError(
            f"sft.num_demos={cfg.num_demos} gives fewer demonstrations than "
            f"sft.batch_size={cfg.batch_size}"
        )
    return [
        {k: v[idx] for k, v in arrays.items()}
        for idx in np.split(order[:usable], usable // cfg.batch_size)
    ]


def warm_start(trainer: "Trainer", config: ExperimentConfig) -> Any:
    """Returns SFT parameters for the trainer's policy: loaded if already trained, else trained."""
    directory = trainer.run_dir.parent / "sft" / fingerprint(config)
    checkpointer = ckpt_lib.Checkpointer(directory, max_to_keep=1, async_save=False)
    restored = checkpointer.restore_latest(ckpt_lib.abstract_like(trainer.state.params))
    if restored is not None:
        checkpointer.close()
        log.info("SFT warm start loaded from %s", directory)
        return restored[1]
    cfg = config.sft
    optimizer = make_optimizer(
        OptimSection(
            learning_rate=cfg.learning_rate,
            schedule="cosine",
            warmup_steps=min(10, cfg.steps // 10),
        ),
        cfg.steps,
    )
    # The update donates its state: start from copies so the trainer's own buffers survive.
    params = jax.tree.map(jnp.copy, trainer.state.params)
    state = TrainState(
        params=params,
        opt_state=jax.jit(optimizer.init)(params),
        step=jnp.zeros((), jnp.int32),
        key=jnp.copy(trainer.state.key),
        method_state=(),
    )
    update = make_update_fn(
        trainer.graphdef, SFT, optimizer, temperature=1.0, impl=config.train.kernel_impl
    )
    batches = demonstrations(trainer, config)
    history = []
    for step in range(cfg.steps):
        batch = jax.tree.map(jnp.asarray, batches[step % len(batches)])
        state, metrics = update(state, trainer.rest, batch)
        history.append({"step": step + 1, "nll": float(metrics["nll"])})
    epath.Path(directory).mkdir(parents=True, exist_ok=True)
    (epath.Path(directory) / "sft_metrics.jsonl").write_text(
        "".join(json.dumps(h) + "\n" for h in history)
    )
    checkpointer.save(cfg.steps, state.params, {"config": config.to_dict()}, force=True)
    checkpointer.close()
    log.info(
        "SFT warm start trained for %d steps (final nll %.4f), saved to %s",
        cfg.steps,
        history[-1]["nll"] if history else float("nan"),
        directory,
    )
    return state.params
