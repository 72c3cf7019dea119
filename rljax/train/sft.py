"""Supervised warm start: masked next-token loss on scripted-expert demonstrations.

Runs on the same machinery as RL (the jitted update of `rljax.train.step` with an SFT "method"
whose loss is the negative log-likelihood of the action tokens). Its parameters are saved under
`<runs root>/sft/<fingerprint>/`, where the fingerprint covers everything that determines them
(model, task, SFT settings, seed), so every method's experiment on the same task reuses one warm
start instead of training its own.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from tqdm.auto import tqdm

from rljax import losses
from rljax.envs.base import TaskFamily, WarmStartFamily
from rljax.methods import Method, PrepareInputs, TrainBatch
from rljax.parallel import multihost
from rljax.rollout import expert_trajectories
from rljax.train import checkpoint as ckpt_lib
from rljax.train.batches import train_batch
from rljax.train.collect import stage_scheme
from rljax.train.config import ExperimentConfig, OptimSection
from rljax.train.faults import check_token_ids
from rljax.train.optim import make_optimizer
from rljax.train.step import init_state, make_update_fn

log = logging.getLogger(__name__)


# Progress checkpoints while the warm start trains (`<cache>/progress`, removed once the warm
# start is saved): a crash loses at most this many SFT steps, and the restart continues exactly.
PROGRESS_EVERY = 100
PROGRESS_DIR = "progress"


def nll_loss(logprobs: jax.Array, batch: TrainBatch) -> tuple[jax.Array, dict]:
    """Token-mean negative log-likelihood of the demonstration's action tokens."""
    nll = losses.aggregate(-logprobs, batch.action_mask)
    return nll, {"nll": nll}


def _no_credit(inputs: PrepareInputs, state: Any) -> tuple[jax.Array, Any, dict]:
    return jnp.zeros(inputs.action_mask.shape[:1], jnp.float32), state, {}


SFT = Method(name="sft", prepare=_no_credit, loss=nll_loss, mode="token-mean")


def seeded(config: ExperimentConfig) -> ExperimentConfig:
    """`config` with `train.seed` set to the warm start's seed (`sft.seed`, when given)."""
    if config.sft.seed is None:
        return config
    return dataclasses.replace(
        config, train=dataclasses.replace(config.train, seed=config.sft.seed)
    )


def fingerprint(config: ExperimentConfig) -> str:
    """Hash of the config fields that determine the warm-start parameters.

    Runs that differ only in `train.seed` share one warm start when `sft.seed` fixes it.
    """
    fields = config.to_dict()
    settings = {k: v for k, v in fields["sft"].items() if k != "seed"}
    data = {
        "model": fields["model"],
        "task": fields["task"],
        "sft": settings,
        "seed": seeded(config).train.seed,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def demonstrations(
    family: TaskFamily, tokenizer: Any, config: ExperimentConfig
) -> list[TrainBatch]:
    """Expert demonstrations on training tasks, split into batches of `sft.batch_size` rows.

    Args:
        family: scripts the demonstrations (its own task mixture for a `WarmStartFamily`).
        tokenizer: the policy's tokenizer.
        config: the run's config (`sft` settings, `task.max_len`, `train.seed`).

    Returns:
        Host batches of `sft.batch_size` rows, in a seeded random order.
    """
    cfg = config.sft
    rng = np.random.default_rng(config.train.seed)
    start = time.perf_counter()
    log.info("SFT warm start: scripting %d expert demonstrations", cfg.num_demos)
    if isinstance(family, WarmStartFamily):  # e.g. Anti-SD's student/teacher-mode mixture
        tasks = family.warm_start_tasks(cfg.num_demos)
    else:
        tasks = [family.generate("train", i) for i in range(cfg.num_demos)]
    traj = expert_trajectories(
        family,
        tasks,
        tokenizer,
        rng,
        cfg.noise,
        max_tokens=config.task.max_len,
        stage_scheme=stage_scheme(family),
    )
    log.info(
        "SFT warm start: %d demonstrations in %.1f s", traj.batch_size, time.perf_counter() - start
    )
    cut = [i for i, info in enumerate(traj.info) if info.get("stop") == "token_budget"]
    if cut:
        raise ValueError(
            f"{len(cut)} of {traj.batch_size} SFT demonstrations do not fit "
            f"task.max_len={config.task.max_len} tokens (e.g. {tasks[cut[0]].uid!r}): the policy "
            "would learn responses that never end; raise task.max_len"
        )
    batch = train_batch(traj)
    order = rng.permutation(traj.batch_size)
    usable = (traj.batch_size // cfg.batch_size) * cfg.batch_size
    if usable == 0:
        raise ValueError(
            f"sft.num_demos={cfg.num_demos} gives fewer demonstrations than "
            f"sft.batch_size={cfg.batch_size}"
        )
    return [
        jax.tree.map(lambda x, idx=idx: x[idx], batch)
        for idx in np.split(order[:usable], usable // cfg.batch_size)
    ]


def warm_start(
    graphdef: nnx.GraphDef,
    params: Any,
    rest: Any,
    family: TaskFamily,
    tokenizer: Any,
    config: ExperimentConfig,
    *,
    directory: str | epath.Path,
    vocab_size: int | None = None,
    mesh: Mesh | None = None,
) -> Any:
    """SFT parameters for the policy: loaded from `directory` if already trained, else trained.

    The cache follows the run's checkpoint rules (`checkpoint.cached`): a concurrent writer is
    waited for, an unreadable entry is moved aside and retrained, and "saved" is logged only after
    the new entry has been restored and verified. Training writes a progress checkpoint every
    `PROGRESS_EVERY` steps; an interrupted warm start resumes from the latest one.

    Args:
        graphdef, params, rest: the policy's split parts (`step.split_model`); `params` is the
            starting point and is not modified.
        family: scripts the demonstrations.
        tokenizer: the policy's tokenizer.
        config: the run's config, seeded with the warm start's seed (`seeded`).
        directory: where the warm start is kept (keyed by `fingerprint(config)`).
        vocab_size: the model's vocabulary; demonstration token ids outside it are refused.
        mesh: the parameters' mesh; every process holds every demonstration batch whole and
            places it replicated there (a multi-process run trains the same warm start).

    Returns:
        The warm-started parameters.
    """
    params = ckpt_lib.cached(
        directory,
        ckpt_lib.abstract_like(params),
        lambda: _train(
            graphdef, params, rest, family, tokenizer, config, directory, vocab_size, mesh
        ),
        step=config.sft.steps,
        what="SFT warm start",
    )
    progress = epath.Path(directory) / PROGRESS_DIR
    if jax.process_index() == 0 and progress.exists():  # the warm start is saved and verified
        progress.rmtree()
    return params


def _train(graphdef, params, rest, family, tokenizer, config, directory, vocab_size, mesh):
    """Trains the warm start; returns (parameters, meta) for `checkpoint.cached` to save."""
    directory = epath.Path(directory)
    cfg = config.sft
    optimizer = make_optimizer(
        OptimSection(
            learning_rate=cfg.learning_rate,
            schedule="cosine",
            warmup_steps=min(10, cfg.steps // 10),
        ),
        cfg.steps,
    )
    # The update donates its state: start from copies so the caller's buffers survive. On a mesh
    # every leaf is placed explicitly, so a restored progress checkpoint lands the same way.
    state, _ = init_state(
        jax.tree.map(jnp.copy, params), optimizer, SFT, mesh, seed=config.train.seed
    )
    update = make_update_fn(
        graphdef, SFT, optimizer, temperature=1.0, impl=config.train.kernel_impl
    )
    batches = demonstrations(family, tokenizer, config)
    if vocab_size is not None:
        for batch in batches:
            check_token_ids(batch.tokens, vocab_size, what="SFT demonstrations")
    progress = ckpt_lib.Checkpointer(
        directory / PROGRESS_DIR, max_to_keep=1, every=PROGRESS_EVERY, async_save=False
    )
    try:
        start, history = 0, []
        restored = progress.restore_latest(
            ckpt_lib.abstract_like(state), required_meta=("history",), start_fresh=True
        )
        if restored is not None:
            start, state, meta = restored
            history = meta["history"]
            log.info("SFT warm start: resuming from its step-%d progress checkpoint", start)
        with tqdm(total=cfg.steps, initial=start, desc="sft", dynamic_ncols=True) as bar:
            for step in range(start, cfg.steps):
                batch = batches[step % len(batches)]
                if mesh is None:
                    batch = jax.tree.map(jnp.asarray, batch)
                else:
                    replicated = NamedSharding(mesh, PartitionSpec())
                    batch = jax.tree.map(lambda x: multihost.place(x, replicated), batch)
                state, metrics = update(state, rest, batch)
                history.append({"step": step + 1, "nll": float(metrics["nll"])})
                if step + 1 < cfg.steps:  # the last step is the warm start itself, saved whole
                    progress.save(step + 1, state, {"history": history})
                bar.set_postfix(nll=f"{history[-1]['nll']:.3g}")
                bar.update(1)
    finally:
        progress.close()
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "sft_metrics.jsonl").write_text("".join(json.dumps(h) + "\n" for h in history))
    log.info(
        "SFT warm start trained for %d steps (final nll %.4f)",
        cfg.steps,
        history[-1]["nll"] if history else float("nan"),
    )
    return state.params, {"config": config.to_dict()}
