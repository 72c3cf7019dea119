"""The driver: one RL run, composed of the step layer, the collectors, evaluation and SFT.

`train(config, run_dir)` runs (or resumes) one experiment. Everything random derives from
`config.train.seed` through the `TrainState.key` and the data iterator state, both checkpointed, so
a run killed at any point and restarted from its last checkpoint continues exactly as an
uninterrupted one (bitwise on CPU).

Each RL step: collect a batch (`collect`, with DAPO dynamic sampling or the RubricEM reflection
phase), the no-grad forward pass (skipped with one update per batch when `prepare` needs no hidden
states or teacher statistics: the update then uses its own log-probs as the old ones), the jitted
`method.prepare`, then the jitted updates (`step.update_minibatches`); when dynamic sampling keeps
no group, the update is skipped (no optimiser step, no schedule advance) and the metrics say
`update_skipped=1`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from flax import nnx

from rljax import methods as methods_lib
from rljax import parallel
from rljax.envs.base import StatefulFamily, Task, TaskFamily
from rljax.envs.reward import RewardFn, from_reward_fn
from rljax.methods import PrepareInputs, TrainBatch
from rljax.parallel import multihost
from rljax.rollout.types import Trajectories
from rljax.train import checkpoint as ckpt_lib
from rljax.train import collect, export, faults, heldout, rundir, sft
from rljax.train.batches import prepare_inputs, train_batch
from rljax.train.components import (
    build_family,
    build_policy,
    check_family,
    policy_tokenizer,
    prompt_stream,
)
from rljax.train.config import ExperimentConfig
from rljax.train.metrics import MetricWriter, read_metrics, to_python
from rljax.train.optim import guard_nonfinite, make_optimizer
from rljax.train.reflection_phase import ReflectionPhase
from rljax.train.step import (
    ForwardOutputs,
    init_state,
    make_forward_fn,
    make_prepare_fn,
    make_rollout_stats_fn,
    make_update_fn,
    policy_model,
    split_model,
    update_minibatches,
)

log = logging.getLogger(__name__)

# Config fields that change the shape or meaning of the checkpointed state.
STATE_KEYS = (
    "model.preset",
    "model.overrides",
    "model.hf_path",
    "model.dtype",
    "model.chat_template_kwargs",
    "method.name",
    "method.kwargs",
    "task.family",
    "task.kwargs",
    "train.seed",
    "train.reflection",
)


@dataclasses.dataclass
class RunResult:
    """What a finished run leaves: its directory, last step, per-step metrics and evaluations."""

    run_dir: epath.Path
    final_step: int
    metrics: list[dict]
    evals: list[dict]


class Trainer:
    """One run: builds the components from a config, `run()` executes the loop from the latest
    checkpoint, `step()` runs one RL step.

    Args:
        config: the experiment.
        run_dir: where checkpoints, metrics and evaluations go.
        family: a task family object used instead of `config.task.family`'s registry entry.
        reward_fn: `(task, response) -> float` replacing the family's verifier (a
            `rljax.envs.reward.RewardFamily` over the family's prompts).
        method: a `Method` used instead of `config.method`'s registry entry.
        optimizer: any optax transformation, used instead of `config.optim`'s AdamW; it is
            wrapped in `optax.apply_if_finite` unless it already is.

    Raises:
        ValueError: the family lacks a capability the method or the run needs, the batch does not
            split, or the model vocabulary does not match the tokenizer.
    """

    def __init__(
        self,
        config: ExperimentConfig,
        run_dir: str | epath.Path,
        *,
        family: TaskFamily | None = None,
        reward_fn: RewardFn | None = None,
        method: methods_lib.Method | None = None,
        optimizer: optax.GradientTransformation | None = None,
    ):
        self.config = cfg = config
        self.run_dir = epath.Path(run_dir)
        # Every field is checked before anything is built or compiled. A 0-step run (the SFT warm
        # start only, as the study harness uses) is allowed; objects replace registry names.
        self.mesh = parallel.make_mesh(cfg.train.mesh)
        ignore = ("train.steps",) if cfg.train.steps == 0 else ()
        ignore += ("task.family", "task.kwargs") if family is not None else ()
        ignore += ("method.name", "method.kwargs") if method is not None else ()
        cfg.validate(mesh=self.mesh, ignore=ignore)
        self.method = method or methods_lib.make_method(cfg.method.name, **cfg.method.kwargs)
        # The tokenizer first: a family that sizes prompts in tokens counts the policy's tokens.
        self.tokenizer = policy_tokenizer(cfg.model)
        family = build_family(cfg.task, self.tokenizer, family)
        if reward_fn is not None:
            family = from_reward_fn(family, reward_fn)
        self.family = family
        check_family(
            family,
            self.method,
            reflection=cfg.train.reflection is not None,
        )
        batch = cfg.task.prompts_per_step * cfg.task.group_size
        if cfg.train.minibatches < 1 or batch % cfg.train.minibatches:
            raise ValueError(
                f"train.minibatches={cfg.train.minibatches} must divide the batch of "
                f"{batch} sequences (task.prompts_per_step * task.group_size)"
            )
        parallel.check_batch_size(batch // cfg.train.minibatches, self.mesh)
        self.tokenizer, model = build_policy(
            cfg.model, seed=cfg.train.seed, mesh=self.mesh, tokenizer=self.tokenizer
        )
        self.vocab_size = model.config.vocab_size
        total_steps = cfg.train.steps * cfg.train.minibatches
        self.optimizer = (
            make_optimizer(cfg.optim, total_steps)
            if optimizer is None
            else guard_nonfinite(optimizer)
        )
        self.graphdef, params, self.rest = split_model(model)
        self.state, self.state_sharding = init_state(
            params, self.optimizer, self.method, self.mesh, seed=cfg.train.seed
        )
        needs = self.method.needs
        passes = dict(temperature=cfg.task.temperature, impl=cfg.train.kernel_impl)
        placed = dict(mesh=self.mesh, param_sharding=self.state_sharding.params)
        self.forward = make_forward_fn(
            self.graphdef,
            with_hidden="hidden" in needs,
            with_teacher="teacher" in needs,
            **passes,
            **placed,
        )
        self.ref_forward = (
            make_forward_fn(
                self.graphdef, with_hidden=False, with_teacher=False, **passes, **placed
            )
            if "reference" in needs
            else None
        )
        self.prepare = make_prepare_fn(self.method, self.mesh)
        self.rollout_stats = make_rollout_stats_fn(self.mesh)
        # One optimiser step per batch: the old policy is the current one, so the update uses its
        # own log-probs (under stop_gradient) and the step skips the no-grad forward pass, unless
        # `prepare` reads what only that pass gives (hidden states, teacher statistics).
        self.reuse_logprobs = cfg.train.minibatches == 1 and not needs & {"hidden", "teacher"}
        self.update = make_update_fn(
            self.graphdef,
            self.method,
            self.optimizer,
            microbatches=cfg.train.microbatches,
            old_logprobs="current" if self.reuse_logprobs else "batch",
            mesh=self.mesh,
            state_sharding=self.state_sharding,
            **passes,
        )
        # Each process reads its part of every batch; `next` gives the whole batch everywhere.
        self.data = collect.SharedPrompts(
            prompt_stream(
                family,
                cfg.task.prompts_per_step,
                seed=cfg.train.seed,
                num_tasks=cfg.task.num_tasks,
            )
        )
        self.checkpointer = None
        # RubricEM REM-10/11: reflection meta-policy (deferred Phase A) and windowed curriculum.
        self.reflection = (
            None
            if cfg.train.reflection is None
            else ReflectionPhase(
                family,
                self.method,
                cfg.task,
                self.tokenizer,
                minibatches=cfg.train.minibatches,
                **cfg.train.reflection,
            )
        )

    @property
    def policy(self) -> nnx.Module:
        """The current policy as an nnx module (for sampling and evaluation)."""
        return policy_model(self.graphdef, self.state.params, self.rest)

    # -- checkpoint plumbing ------------------------------------------------------------------

    def _open_checkpoints(self) -> ckpt_lib.Checkpointer:
        if self.checkpointer is None:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            self.checkpointer = ckpt_lib.Checkpointer(
                self.run_dir / "checkpoints",
                max_to_keep=self.config.train.keep_checkpoints,
                every=self.config.train.checkpoint_every,
            )
        return self.checkpointer

    def _meta(self) -> dict:
        meta = {"config": self.config.to_dict(), "data": self.data.get_state()}
        if isinstance(self.family, StatefulFamily):  # e.g. RubricEM's rubric buffer and bank
            meta["family"] = self.family.get_state()
        if self.reflection is not None:
            meta["reflection"] = self.reflection.get_state()
        return meta

    def _check_meta(self, meta: dict) -> None:
        # Compare as stored: JSON turns tuples (e.g. a context-length range) into lists.
        ckpt_lib.check_compatible(meta["config"], json.loads(self.config.to_json()), STATE_KEYS)

    def _restore(self) -> int:
        restored = self._open_checkpoints().restore_latest(
            ckpt_lib.abstract_like(self.state),
            check_meta=self._check_meta,
            required_meta=tuple(self._meta()),
            start_fresh=self.config.train.start_fresh_if_unreadable,
        )
        if restored is None:
            return 0
        step, state, meta = restored
        self._apply_checkpoint(state, meta)
        log.info("resumed from step %d", step)
        return step

    def load_checkpoint(self, step: int | None = None) -> int:
        """Loads checkpoint `step` of the run directory (None: the latest readable one) into this
        trainer, e.g. to evaluate or export it; returns its step.

        Raises:
            FileNotFoundError: the run has no checkpoint `step` (or none at all).
            ckpt_lib.UnreadableCheckpointError, ckpt_lib.IncompatibleCheckpointError.
        """
        directory = self.run_dir / "checkpoints"
        if not directory.exists():
            raise FileNotFoundError(f"{directory} does not exist: the run has no checkpoint")
        checkpointer = ckpt_lib.Checkpointer(directory, async_save=False)
        try:
            steps = checkpointer.steps()
            step = steps[-1] if step is None and steps else step
            if step not in steps:
                raise FileNotFoundError(
                    f"{directory} has no checkpoint of step {step}; it has {steps}"
                )
            state, meta = checkpointer.restore_step(
                step,
                ckpt_lib.abstract_like(self.state),
                required_meta=tuple(self._meta()),
                check_meta=self._check_meta,
            )
        finally:
            checkpointer.close()
        self._apply_checkpoint(state, meta)
        return step

    def export(self, directory: str | epath.Path | None = None) -> epath.Path:
        """Writes the current policy, its tokenizer and generation config as a Hugging Face
        directory (`rljax.train.export.export_hf`; default `<run_dir>/hf`); returns it."""
        directory = epath.Path(directory or self.run_dir / "hf")
        info = {"run_dir": str(self.run_dir), "step": int(self.state.step)}
        export.export_hf(
            self.policy, self.tokenizer, directory, source=self.config.model.hf_path, info=info
        )
        return directory

    def _apply_checkpoint(self, state, meta: dict) -> None:
        self.state = state
        self.data.set_state(meta["data"])
        if "family" in meta:
            self.family.set_state(meta["family"])
        if self.reflection is not None:
            self.reflection.set_state(meta["reflection"])

    def _save(self, step: int, *, force: bool = False) -> None:
        # Every process takes part (Orbax writes each process's shards; process 0 the metadata).
        self._open_checkpoints().save(step, self.state, self._meta(), force=force)

    # -- one RL step ---------------------------------------------------------------------------

    def _sample(self, tasks: list[Task], key: jax.Array) -> Trajectories:
        cfg = self.config.task
        return collect.sample_trajectories(
            self.policy, self.family, tasks, self.tokenizer, cfg, key, group_size=cfg.group_size
        )

    def collect(self, key: jax.Array) -> tuple[Trajectories, list[Task], np.ndarray, dict]:
        """One batch of P groups (DAPO dynamic sampling or the reflection phase when configured).

        Returns:
            (trajectories, their P tasks, group_mask [P]: False for dynamic-sampling filler,
            metrics).
        """
        cfg = self.config.task
        if self.reflection is not None:  # next batch + bank context, Phase A, then reflections
            tasks, metrics = self.reflection.next_tasks(self.data, int(self.state.step) + 1)
            metrics.update(self.reflection.phase_a(self.update_batch))
            traj = self._sample(tasks, jax.random.fold_in(key, 0))
            metrics.update(
                self.reflection.after_rollout(
                    tasks, traj, model=self.policy, key_data=self.state.key
                )
            )
            return traj, tasks, np.ones(len(tasks), bool), metrics

        def sample(round_: int) -> tuple[Trajectories, list[Task]]:
            tasks = next(self.data)
            return self._sample(tasks, jax.random.fold_in(key, round_)), tasks

        if not self.method.filter_groups:
            traj, tasks = sample(0)
            return traj, tasks, np.ones(len(tasks), bool), {}
        return collect.filter_groups(
            sample,
            num_prompts=cfg.prompts_per_step,
            group_size=cfg.group_size,
            max_rounds=self.config.train.max_gen_rounds,
            pad_id=self.tokenizer.pad_token_id,
        )

    def prepare_inputs(
        self,
        traj: Trajectories,
        tasks: list[Task],
        group_mask: np.ndarray,
        *,
        group_size: int | None = None,
        sampled: bool = False,
    ) -> tuple[PrepareInputs, TrainBatch, ForwardOutputs | None]:
        """What `method.prepare` reads for a rollout batch, under the current policy.

        Runs the no-grad forward pass (log-probs and entropies through `kernels.token_stats`,
        plus hidden states and teacher statistics when the method needs them), unless
        `sampled` is set: then the inputs' old log-probs are the sampler's (equal to the
        forward's to about 2e-6), their entropies zero, and the forward outputs returned None
        (what `step` does with `reuse_logprobs`: no `prepare` of such a method reads them).

        Args:
            traj: a rollout batch of P groups.
            tasks: its P tasks (the teacher context is built from them).
            group_mask: [P] groups that count (False: dynamic-sampling filler).
            group_size: G of the batch (default: `task.group_size`).

        Returns:
            (inputs, the batch's token arrays as global arrays split by rows over the mesh, the
            forward pass's outputs, or None when `sampled`).
        """
        group = self.config.task.group_size if group_size is None else group_size
        batch = train_batch(traj)
        teacher = None
        if "teacher" in self.method.needs:
            teacher = collect.teacher_batch(
                self.family,
                traj,
                tasks,
                self.tokenizer,
                group_size=group,
                seed=self.config.train.seed,
            )
        batch = parallel.place_batch(batch, self.mesh)
        if teacher is not None:
            teacher = parallel.place_batch(teacher, self.mesh)
        if sampled:
            # Global arrays over the mesh, as the forward pass's would be (multi-process too).
            logprobs = parallel.place_batch(
                np.asarray(traj.sampler_logprobs, np.float32), self.mesh
            )
            outputs = ForwardOutputs(logprobs, jnp.zeros_like(logprobs))
            inputs = prepare_inputs(traj, outputs, group_size=group, group_mask=group_mask)
            return inputs, batch, None
        fwd = self.forward(self.state.params, self.rest, batch, teacher)
        inputs = prepare_inputs(traj, fwd, group_size=group, group_mask=group_mask)
        return inputs, batch, fwd

    def _mask_nonfinite(
        self, traj: Trajectories, group_mask: np.ndarray
    ) -> tuple[Trajectories, np.ndarray, float]:
        """Masks groups with a NaN/inf reward out of the update; returns how many were masked."""
        group = len(traj.rewards) // len(group_mask)
        stage = np.asarray(traj.stage_rewards)
        stage = stage if stage.size else None  # K = 0: no stage rewards
        finite = np.isfinite(np.asarray(traj.rewards)).all()
        if finite and (stage is None or np.isfinite(stage).all()):
            return traj, group_mask, 0.0
        masked = faults.mask_nonfinite_groups(
            np.asarray(traj.rewards).reshape(len(group_mask), group),
            group_mask,
            np.asarray(traj.action_mask),
            None if stage is None else stage.reshape(len(group_mask), group, -1),
        )
        traj = traj.replace(rewards=masked.rewards.reshape(-1), action_mask=masked.action_mask)
        if stage is not None:
            traj = traj.replace(stage_rewards=masked.stage_rewards.reshape(stage.shape))
        return traj, masked.group_mask, float(masked.count)

    def update_batch(self, batch: TrainBatch) -> dict:
        """The method's update on a batch with advantages: `train.minibatches` optimiser steps.

        Old log-probs (when the batch has none and the update does not use its own,
        `reuse_logprobs`) and reference log-probs (for a KL term) are computed at the current
        parameters.

        Args:
            batch: B rows with `advantages` set.

        Returns:
            The update's metrics, averaged over the mini-batches.
        """
        batch = parallel.place_batch(batch, self.mesh)
        if batch.old_logprobs is None and not self.reuse_logprobs:
            batch = batch.replace(
                old_logprobs=self.forward(self.state.params, self.rest, batch).logprobs
            )
        if self.ref_forward is not None:
            batch = batch.replace(
                ref_logprobs=self.ref_forward(self.state.ref_params, self.rest, batch).logprobs
            )
        self.state, metrics = update_minibatches(
            self.update,
            self.state,
            self.rest,
            batch,
            minibatches=self.config.train.minibatches,
            mesh=self.mesh,
        )
        # Before the step's save: on failure the last checkpoint is the last good state. The
        # optimiser state is `guard_nonfinite`'s `ApplyIfFiniteState` (any user optimiser is wrapped).
        faults.check_update(
            self.state.opt_state,
            self.state.params,
            max_skipped=self.config.train.max_skipped_updates,
            step=int(self.state.step) + 1,
        )
        return metrics

    def step(self) -> dict:
        """One RL step: collect, forward, prepare, update; the step counter and key advance."""
        key, rollout_key = jax.random.split(jax.random.wrap_key_data(self.state.key))
        start = time.perf_counter()
        traj, tasks, group_mask, metrics = self.collect(rollout_key)
        rollout_time = time.perf_counter() - start
        faults.check_token_ids(
            traj.tokens,
            self.vocab_size,
            what="rollout batch",
            env_mask=traj.env_mask,
            action_mask=traj.action_mask,
        )
        rewards = np.asarray(traj.rewards)
        finite = np.isfinite(rewards)
        metrics["reward"] = float(np.mean(rewards if finite.all() else rewards[finite]))
        traj, group_mask, metrics["nonfinite_reward_groups"] = self._mask_nonfinite(
            traj, group_mask
        )
        if group_mask.any():
            inputs, batch, fwd = self.prepare_inputs(
                traj, tasks, group_mask, sampled=self.reuse_logprobs
            )
            advantages, method_state, prep_metrics = self.prepare(inputs, self.state.method_state)
            # To host now: metrics may alias method-state buffers that the update donates.
            metrics.update(to_python(prep_metrics))
            self.state = self.state.replace(method_state=method_state)
            if fwd is not None:
                sampler_logprobs = parallel.place_batch(
                    np.asarray(traj.sampler_logprobs, np.float32), self.mesh
                )
                stats = self.rollout_stats(
                    fwd.entropy, fwd.logprobs, sampler_logprobs, batch.action_mask
                )
                metrics.update(to_python(stats))
                batch = batch.replace(old_logprobs=fwd.logprobs)
            metrics.update(self.update_batch(batch.replace(advantages=advantages)))
            if fwd is None:  # the same token-mean entropy, from the update's forward pass
                metrics["rollout_entropy"] = metrics["entropy"]
            metrics["update_skipped"] = 0.0
        else:
            log.warning(
                "dynamic sampling kept no group after %d rounds: update skipped",
                self.config.train.max_gen_rounds,
            )
            metrics["update_skipped"] = 1.0
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
        """Runs the experiment from its latest checkpoint (or from scratch) to `train.steps`.

        The run directory is locked first (a second process is refused, naming the holder);
        `train.steps` below the latest checkpoint and an incompatible checkpoint are refused before
        `config.json` is written; the logs are repaired (a torn last line dropped) or, on a start
        from step 0, earlier ones renamed aside.

        Raises:
            rundir.RunDirectoryLockedError, ckpt_lib.IncompatibleCheckpointError,
            ckpt_lib.NoReadableCheckpointError, faults.NonFiniteTrainingError,
            RewardFunctionError, ValueError (train.steps, token ids).
        """
        with rundir.RunLock(self.run_dir):
            return self._run()

    def _run(self) -> RunResult:
        cfg = self.config
        rundir.check_steps(cfg.train.steps, self._open_checkpoints().steps())
        start = self._restore()
        primary = multihost.is_primary()  # process 0 writes the config, metrics and evaluations
        if primary:
            rundir.write_config(self.run_dir, cfg.to_json())
            rundir.prepare_logs(self.run_dir, resume_step=start)
        if start == 0:
            self.load_warm_start()
        eval_log = heldout.EvalLog(self.run_dir / "eval.jsonl", resume_step=start, write=primary)
        if start == 0:
            eval_log.write(0, self.evaluate())
        if start < cfg.train.steps:
            log.info(
                "RL: steps %d..%d (the first compiles the sampler, forward, prepare and update)",
                start + 1,
                cfg.train.steps,
            )
        writer = (
            MetricWriter(self.run_dir, resume_step=start, progress_total=cfg.train.steps)
            if primary
            else None
        )
        try:
            with ckpt_lib.PreemptionGuard() as guard:
                for step in range(start + 1, cfg.train.steps + 1):
                    metrics = self.step()
                    if writer is not None:
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
                    # SIGTERM may reach one process only: all of them stop at the same step.
                    if multihost.global_max([guard.requested])[0]:
                        log.warning("SIGTERM: saving step %d and stopping", step)
                        self._save(step, force=True)
                        self.checkpointer.wait()
                        raise SystemExit(143)
                final = cfg.train.steps
                if start < final:
                    eval_log.write(final, self.evaluate())
                self._save(final, force=True)
        finally:
            if writer is not None:
                writer.close()
            self._open_checkpoints().close()
        export_hf = cfg.train.export_hf
        if export_hf is None:
            export_hf = cfg.model.hf_path is not None
        if export_hf and primary and (start < final or not (self.run_dir / "hf").exists()):
            self.export()
        multihost.sync("rljax_run_end")  # the others read what process 0 wrote
        return RunResult(self.run_dir, cfg.train.steps, read_metrics(self.run_dir), eval_log.read())

    def load_warm_start(self) -> None:
        """Puts the SFT warm start (`config.sft`; trained once, then read from the cache beside the
        run directory, `<run_dir>/../sft/<fingerprint>`) into the policy, a fresh optimiser state
        and the reference; a no-op when `sft.steps` is 0. `run()` calls it before step 0. With
        `sft.seed` set, the warm start is trained from that seed's initial parameters, so runs
        that differ only in `train.seed` share it.
        """
        cfg = self.config
        if cfg.sft.steps <= 0:
            return
        warm = sft.seeded(cfg)
        start = self.state.params
        if warm.train.seed != cfg.train.seed and cfg.model.hf_path is None:
            # A warm start shared across seeds (`sft.seed`) starts from its own seed's init.
            _, model = build_policy(
                cfg.model, seed=warm.train.seed, mesh=self.mesh, tokenizer=self.tokenizer
            )
            _, start, _ = split_model(model)
        params = sft.warm_start(
            self.graphdef,
            start,
            self.rest,
            self.family,
            self.tokenizer,
            warm,
            directory=self.run_dir.parent / "sft" / sft.fingerprint(cfg),
            vocab_size=self.vocab_size,
            mesh=self.mesh,
        )
        params = jax.device_put(params, self.state_sharding.params)
        self.state = self.state.replace(
            params=params,
            opt_state=jax.jit(self.optimizer.init)(params),
            ref_params=None if self.state.ref_params is None else jax.tree.map(jnp.copy, params),
        )
        self.state = jax.device_put(self.state, self.state_sharding)

    def evaluate(self) -> dict:
        """Held-out pass@k / maj@k of the current policy (`train.eval_prompts` x `eval_samples`)."""
        cfg = self.config.train
        if cfg.eval_prompts <= 0:
            return {}
        start = time.perf_counter()
        log.info(
            "evaluating at step %d: %d held-out prompts x %d samples",
            int(self.state.step),
            cfg.eval_prompts,
            cfg.eval_samples,
        )
        key = jax.random.fold_in(jax.random.key(cfg.seed + 1), int(self.state.step))
        metrics = heldout.evaluate(
            self.policy,
            self.family,
            self.tokenizer,
            self.config.task,
            key,
            num_prompts=cfg.eval_prompts,
            num_samples=cfg.eval_samples,
        )
        log.info("evaluation done in %.1f s: %s", time.perf_counter() - start, metrics)
        return metrics


def train(
    config: ExperimentConfig,
    run_dir: str | epath.Path,
    *,
    family: TaskFamily | None = None,
    reward_fn: RewardFn | None = None,
    method: methods_lib.Method | None = None,
    optimizer: optax.GradientTransformation | None = None,
) -> RunResult:
    """Runs (or resumes) the experiment described by `config` in `run_dir`.

    Args:
        config: the experiment.
        run_dir: the run directory.
        family, reward_fn, method, optimizer: objects replacing the config's registry entries
            (see `Trainer`).

    Returns:
        The run's result.
    """
    trainer = Trainer(
        config, run_dir, family=family, reward_fn=reward_fn, method=method, optimizer=optimizer
    )
    return trainer.run()
