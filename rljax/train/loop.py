"""The RL loop: rollout -> rewards -> method.prepare -> jitted updates -> metrics, eval, checkpoints.

`train(config, run_dir)` runs (or resumes) one experiment. Everything random derives from
`config.train.seed` through the `TrainState.key` and the data iterator state, both checkpointed, so
a run killed at any point and restarted from its last checkpoint continues exactly as an
uninterrupted one (bitwise on CPU).
"""

from __future__ import annotations

import dataclasses
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

from rljax import methods as methods_lib
from rljax import parallel
from rljax.envs import registry
from rljax.rollout.types import Trajectories
from rljax.train import checkpoint as ckpt_lib
from rljax.train import evaluation, policy, sft
from rljax.train.config import ExperimentConfig
from rljax.train.metrics import MetricWriter, read_metrics, to_python
from rljax.train.optim import make_optimizer
from rljax.train.reflection import ReflectionPhase
from rljax.train.step import TrainState, make_forward_fn, make_update_fn, split_model

log = logging.getLogger(__name__)

# Config fields that change the shape or meaning of the checkpointed state.
STATE_KEYS = (
    "model.preset",
    "model.overrides",
    "model.hf_path",
    "model.dtype",
    "method.name",
    "method.kwargs",
    "task.family",
    "task.kwargs",
    "train.seed",
    "train.reflection",
)


@dataclasses.dataclass
class RunResult:
    run_dir: epath.Path
    final_step: int
    metrics: list[dict]
    evals: list[dict]


def batch_arrays(traj: Trajectories) -> dict[str, np.ndarray]:
    """The trajectory arrays the jitted passes read (host numpy)."""
    return {
        "tokens": np.asarray(traj.tokens, np.int32),
        "positions": np.asarray(traj.positions, np.int32),
        "segment_ids": np.asarray(traj.segment_ids, np.int32),
        "action_mask": np.asarray(traj.action_mask, np.float32),
        "env_mask": np.asarray(traj.env_mask, np.float32),
        "warning_mask": np.asarray(traj.warning_mask, np.float32),
        "stage_ids": np.asarray(traj.stage_ids, np.int32),
    }


def init_state(
    params: Any, optimizer, method: methods_lib.Method, mesh: Mesh, *, seed: int
) -> tuple[TrainState, Any]:
    """A fresh TrainState on `mesh` and its shardings.

    Parameters keep the shardings the partition rules gave them; the optimiser state is created
    under `jax.jit`, so its moments inherit their parameter's sharding; scalars, the PRNG key and
    the method state are replicated.
    """
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_state = jax.jit(optimizer.init)(params)
    state = TrainState(
        params=params,
        opt_state=opt_state,
        step=jnp.zeros((), jnp.int32),
        key=jax.random.key_data(jax.random.key(seed)),
        method_state=method.init_state(),
        ref_params=(jax.tree.map(jnp.copy, params) if "reference" in method.needs else None),
    )

    def sharding_of(x):
        sharding = getattr(x, "sharding", None)
        if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
            return sharding
        return replicated

    shardings = jax.tree.map(sharding_of, state)
    return jax.device_put(state, shardings), shardings


class Trainer:
    """Holds the components of one run; `run()` executes the loop from the latest checkpoint."""

    def __init__(self, config: ExperimentConfig, run_dir: str | epath.Path):
        self.config = config
        self.run_dir = epath.Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        cfg = config
        self.method = methods_lib.make_method(cfg.method.name, **cfg.method.kwargs)
        self.family = registry.make(cfg.task.family, **cfg.task.kwargs)
        self.mesh = parallel.make_mesh(cfg.train.mesh)
        batch = cfg.task.prompts_per_step * cfg.task.group_size
        if cfg.train.minibatches < 1 or batch % cfg.train.minibatches:
            raise ValueError(
                f"train.minibatches={cfg.train.minibatches} must divide the batch of "
                f"{batch} sequences (task.prompts_per_step * task.group_size)"
            )
        parallel.check_batch_size(batch // cfg.train.minibatches, self.mesh)
        self.tokenizer, self.model = policy.build_policy(
            cfg.model, seed=cfg.train.seed, mesh=self.mesh
        )
        self.optimizer = make_optimizer(cfg.optim, cfg.train.steps * cfg.train.minibatches)
        self.graphdef, params, self.rest = split_model(self.model)
        self.state, self.state_sharding = init_state(
            params, self.optimizer, self.method, self.mesh, seed=cfg.train.seed
        )
        needs = self.method.needs
        self.forward = make_forward_fn(
            self.graphdef,
            temperature=cfg.task.temperature,
            impl=cfg.train.kernel_impl,
            with_hidden="hidden" in needs,
            with_teacher="teacher" in needs,
        )
        self.ref_forward = (
            make_forward_fn(
                self.graphdef,
                temperature=cfg.task.temperature,
                impl=cfg.train.kernel_impl,
                with_hidden=False,
                with_teacher=False,
            )
            if "reference" in needs
            else None
        )
        self.update = make_update_fn(
            self.graphdef,
            self.method,
            self.optimizer,
            temperature=cfg.task.temperature,
            impl=cfg.train.kernel_impl,
            microbatches=cfg.train.microbatches,
            mesh=self.mesh,
            state_sharding=self.state_sharding,
        )
        self.data = policy.prompt_stream(
            self.family,
            cfg.task.prompts_per_step,
            seed=cfg.train.seed,
            num_tasks=cfg.task.num_tasks,
        )
        self.checkpointer = ckpt_lib.Checkpointer(
            self.run_dir / "checkpoints",
            max_to_keep=cfg.train.keep_checkpoints,
            every=cfg.train.checkpoint_every,
        )
        # RubricEM REM-10/11: reflection meta-policy (deferred Phase A) and windowed curriculum.
        self.reflection = (
            None if cfg.train.reflection is None else ReflectionPhase(self, **cfg.train.reflection)
        )

    # -- checkpoint plumbing ------------------------------------------------------------------

    def _meta(self, extra: dict | None = None) -> dict:
        meta = {"config": self.config.to_dict(), "data": self.data.get_state(), **(extra or {})}
        if hasattr(self.family, "get_state"):  # e.g. RubricEM's rubric buffer and reflection bank
            meta["family"] = self.family.get_state()
        if self.reflection is not None:
            meta["reflection"] = self.reflection.get_state()
        return meta

    def _check_meta(self, meta: dict) -> None:
        # Compare as stored: JSON turns tuples (e.g. a context-length range) into lists.
        ckpt_lib.check_compatible(meta["config"], json.loads(self.config.to_json()), STATE_KEYS)

    def _restore(self) -> int:
        restored = self.checkpointer.restore_latest(
            ckpt_lib.abstract_like(self.state), check_meta=self._check_meta
        )
        if restored is None:
            return 0
        step, state, meta = restored
        self.state = state
        self.data.set_state(meta["data"])
        if "family" in meta:
            self.family.set_state(meta["family"])
        if self.reflection is not None:
            self.reflection.set_state(meta["reflection"])
        log.info("resumed from step %d", step)
        return step

    def _save(self, step: int, *, force: bool = False) -> None:
        self.checkpointer.save(step, self.state, self._meta(), force=force)

    # -- one RL step ---------------------------------------------------------------------------

    def _rollout(self, key: jax.Array) -> tuple[Trajectories, list, np.ndarray, dict]:
        """One batch of P groups, with DAPO dynamic sampling when the method asks for it."""
        cfg = self.config.task
        if self.reflection is not None:  # next batch + bank context, Phase A, then reflections
            tasks, metrics = self.reflection.next_tasks(self.data, int(self.state.step) + 1)
            metrics.update(self.reflection.phase_a())
            traj = policy.rollout(
                self, tasks, jax.random.fold_in(key, 0), group_size=cfg.group_size
            )
            metrics.update(self.reflection.after_rollout(tasks, traj))
            return traj, tasks, np.ones(len(tasks), bool), metrics

        def sample(round_: int) -> tuple[Trajectories, list]:
            tasks = next(self.data)
            return policy.rollout(
                self, tasks, jax.random.fold_in(key, round_), group_size=cfg.group_size
            ), tasks

        if not self.method.filter_groups:
            traj, tasks = sample(0)
            return traj, tasks, np.ones(len(tasks), bool), {}
        return policy.filter_groups(
            sample,
            num_prompts=cfg.prompts_per_step,
            group_size=cfg.group_size,
            max_rounds=self.config.train.max_gen_rounds,
            pad_id=self.tokenizer.pad_token_id,
        )

    def prepare_inputs(
        self,
        traj: Trajectories,
        tasks: list,
        group_mask: np.ndarray,
        *,
        group_size: int | None = None,
    ) -> tuple[methods_lib.PrepareInputs, dict[str, np.ndarray], dict]:
        """What `method.prepare` reads for a rollout batch, under the current policy.

        Runs the no-grad forward pass (log-probs and entropies through `kernels.token_stats`,
        plus hidden states and teacher statistics when the method needs them).

        Args:
            traj: a rollout batch of P groups.
            tasks: its P tasks (the teacher context is built from them).
            group_mask: [P] groups that count (False: dynamic-sampling filler).
            group_size: G of the batch (default: `task.group_size`).

        Returns:
            (inputs, token arrays of the batch, the forward pass's outputs).
        """
        group = self.config.task.group_size if group_size is None else group_size
        arrays = batch_arrays(traj)
        if "teacher" in self.method.needs:
            arrays.update(policy.teacher_batch(self, traj, tasks))
        fwd = self.forward(self.state.params, self.rest, arrays)
        num_prompts = traj.batch_size // group
        inputs = methods_lib.PrepareInputs(
            rewards=jnp.asarray(traj.rewards_by_group(group), jnp.float32),
            task_ids=jnp.asarray(np.asarray(traj.task_ids)[::group], jnp.int32),
            group_mask=jnp.asarray(group_mask, bool),
            action_mask=jnp.asarray(arrays["action_mask"]),
            env_mask=jnp.asarray(arrays["env_mask"]),
            warning_mask=jnp.asarray(arrays["warning_mask"]),
            stage_ids=jnp.asarray(arrays["stage_ids"]),
            stage_rewards=jnp.asarray(traj.stage_rewards, jnp.float32).reshape(
                num_prompts, group, -1
            ),
            cluster_ids=jnp.asarray(policy.cluster_ids(self.family, traj), jnp.int32).reshape(
                num_prompts, group
            ),
            old_logprobs=fwd["logprobs"],
            old_entropy=fwd["entropy"],
            lengths=jnp.asarray(np.asarray(traj.action_mask).sum(-1), jnp.int32),
            hidden=fwd.get("hidden"),
            teacher_logprobs=fwd.get("teacher_logprobs"),
            teacher_entropy=fwd.get("teacher_entropy"),
        )
        return inputs, arrays, fwd

    def _prepare(
        self, traj: Trajectories, tasks: list, group_mask: np.ndarray
    ) -> tuple[dict, dict]:
        inputs, arrays, fwd = self.prepare_inputs(traj, tasks, group_mask)
        prepared, method_state, metrics = self.method.prepare(inputs, self.state.method_state)
        # To host now: metrics may alias method-state buffers that the update donates.
        metrics = to_python(metrics)
        self.state = self.state.replace(method_state=method_state)
        batch = {k: v for k, v in arrays.items() if not k.startswith("teacher_")}
        batch.update(prepared)
        batch["old_logprobs"] = fwd["logprobs"]
        if self.ref_forward is not None:
            batch["ref_logprobs"] = self.ref_forward(self.state.ref_params, self.rest, arrays)[
                "logprobs"
            ]
        mask = arrays["action_mask"] > 0
        metrics = {
            **metrics,
            "rollout_entropy": float(
                (np.asarray(fwd["entropy"]) * mask).sum() / max(mask.sum(), 1)
            ),
            "sampler_logprob_gap": float(
                np.abs(
                    (np.asarray(fwd["logprobs"]) - np.asarray(traj.sampler_logprobs)) * mask
                ).sum()
                / max(mask.sum(), 1)
            ),
        }
        return batch, metrics

    def _update(self, batch: dict) -> dict:
        mb = self.config.train.minibatches
        rows = batch["tokens"].shape[0] // mb
        metrics = []
        for i in range(mb):
            part = parallel.shard_batch(
                jax.tree.map(lambda x: np.asarray(x[i * rows : (i + 1) * rows]), batch), self.mesh
            )
            self.state, m = self.update(self.state, self.rest, part)
            metrics.append(m)
        return jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *metrics)

    def step(self) -> dict:
        key, rollout_key = jax.random.split(jax.random.wrap_key_data(self.state.key))
        start = time.perf_counter()
        traj, tasks, group_mask, metrics = self._rollout(rollout_key)
        rollout_time = time.perf_counter() - start
        metrics["reward"] = float(np.mean(traj.rewards))
        if not group_mask.any():
            log.warning(
                "dynamic sampling kept no group after %d rounds: update skipped",
                self.config.train.max_gen_rounds,
            )
        batch, prep_metrics = self._prepare(traj, tasks, group_mask)
        metrics.update(prep_metrics)
        metrics.update(self._update(batch))
        self.state = self.state.replace(step=self.state.step + 1, key=jax.random.key_data(key))
        elapsed = time.perf_counter() - start
        generated = int(np.asarray(traj.action_mask).sum())
        metrics.update(
            {
                "steps_per_s": 1.0 / elapsed,
                "tokens_per_s": generated / elapsed,
                "rollout_s": rollout_time,
                "response_tokens": generated / max(traj.batch_size, 1),
            }
        )
        return metrics

    # -- the loop ------------------------------------------------------------------------------

    def run(self) -> RunResult:
        cfg = self.config
        (self.run_dir / "config.json").write_text(cfg.to_json())
        start = self._restore()
        if start == 0:
            self._warm_start()
        writer = MetricWriter(self.run_dir, resume_step=start, progress_total=cfg.train.steps)
        eval_log = evaluation.EvalLog(self.run_dir / "eval.jsonl", resume_step=start)
        try:
            with ckpt_lib.PreemptionGuard() as guard:
                if start == 0:
                    eval_log.write(0, self.evaluate())
                for step in range(start + 1, cfg.train.steps + 1):
                    metrics = self.step()
                    writer.write(step, metrics)
                    if step % cfg.train.log_every == 0:
                        log.info(
                            "step %d %s",
                            step,
                            {k: round(float(v), 4) for k, v in metrics.items() if np.ndim(v) == 0},
                        )
                    if (
                        cfg.train.eval_every
                        and step % cfg.train.eval_every == 0
                        and step != cfg.train.steps
                    ):
                        eval_log.write(step, self.evaluate())
                    self._save(step)
                    if guard.requested:
                        log.warning("SIGTERM: saving step %d and stopping", step)
                        self._save(step, force=True)
                        self.checkpointer.wait()
                        raise SystemExit(143)
                final = cfg.train.steps
                if start < final:
                    eval_log.write(final, self.evaluate())
                self._save(final, force=True)
        finally:
            writer.close()
            self.checkpointer.close()
        return RunResult(self.run_dir, cfg.train.steps, read_metrics(self.run_dir), eval_log.read())

    def _warm_start(self) -> None:
        cfg = self.config
        if cfg.sft.steps <= 0:
            return
        params = jax.device_put(sft.warm_start(self, cfg), self.state_sharding.params)
        self.state = self.state.replace(
            params=params,
            opt_state=jax.jit(self.optimizer.init)(params),
            ref_params=None if self.state.ref_params is None else jax.tree.map(jnp.copy, params),
        )
        self.state = jax.device_put(self.state, self.state_sharding)

    def evaluate(self) -> dict:
        return evaluation.evaluate(
            self,
            num_prompts=self.config.train.eval_prompts,
            num_samples=self.config.train.eval_samples,
        )


def train(config: ExperimentConfig, run_dir: str | epath.Path) -> RunResult:
    """Runs (or resumes) the experiment described by `config` in `run_dir`."""
    return Trainer(config, run_dir).run()


def model_state(trainer: Trainer) -> nnx.Module:
    """The current policy as an nnx module (for sampling and evaluation)."""
    return nnx.merge(trainer.graphdef, trainer.state.params, trainer.rest)


__all__ = ["RunResult", "Trainer", "train", "batch_arrays", "model_state"]
