"""Plumbing shared by the rljax notebooks: cached training runs, rollout credit and plots.

The notebooks call the library directly for everything they teach (configs, `Trainer`, losses,
`Method.prepare`); this module holds only what would otherwise be copied into each of them:

* `train(config)` runs an experiment in a run directory under the system temp dir whose name
  hashes the config and the library's source code, so re-running a notebook resumes its
  finished runs (the method's and its GRPO baseline's) instead of training again, and any code
  change starts fresh ones.
* `rollout_batch`, `prepare_inputs` and `loss_batch` turn a trained policy into one rollout
  batch, the `PrepareInputs` that `Method.prepare` reads and the `TrainBatch` `Method.loss` reads,
  exactly as the trainer builds them each step; `loss_credit` reads the per-token credit off
  the loss gradient.
* `plot_token_credit`, `plot_response_credit` and `plot_curves` draw the figures every method
  notebook shows.
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import pathlib
import tempfile
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import matplotlib.pyplot as plt
import numpy as np

import rljax
from rljax import experiments, kernels, methods
from rljax.envs.base import Task
from rljax.methods import TrainBatch
from rljax.rollout.types import Trajectories
from rljax.train import RunResult, Trainer, collect
from rljax.train.config import ExperimentConfig, MethodSection

RUNS_DIR = pathlib.Path(tempfile.gettempdir()) / "rljax-notebooks"
_PACKAGES = (rljax, kernels, experiments)


def source_fingerprint() -> str:
    """SHA-256 prefix (16 hex digits) of the `.py` sources of rljax, kernels and experiments."""
    digest = hashlib.sha256()
    for package in _PACKAGES:
        root = pathlib.Path(package.__file__).parent
        for path in sorted(root.rglob("*.py")):
            digest.update(str(path.relative_to(root.parent)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:16]


def run_dir(config: ExperimentConfig, *, root: pathlib.Path = RUNS_DIR) -> pathlib.Path:
    """The cache directory of a run: `<root>/<name>-<method>-<hash of config and source>`.

    Args:
        config: the experiment config.
        root: the folder holding all notebook runs (default: `<tempdir>/rljax-notebooks`).

    Returns:
        The run directory (not created).
    """
    key = hashlib.sha256((config.to_json() + source_fingerprint()).encode()).hexdigest()[:12]
    return root / f"{config.name}-{config.method.name}-{key}"


def train(config: ExperimentConfig, *, root: pathlib.Path = RUNS_DIR) -> tuple[Trainer, RunResult]:
    """Runs `config` in its cache directory (see `run_dir`), or resumes it if it is finished.

    Args:
        config: the experiment config.
        root: the folder holding all notebook runs.

    Returns:
        (trainer, result): the trainer holds the final policy (`trainer.state`), the method and
        the task family; the result holds the per-step metrics and the evaluations.
    """
    for noisy in ("absl", "jax._src.xla_bridge", "rljax"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    trainer = Trainer(config, run_dir(config, root=root))
    return trainer, trainer.run()


def with_method(config: ExperimentConfig, name: str, **kwargs) -> ExperimentConfig:
    """`config` with its method replaced by the registered method `name` (e.g. GRPO)."""
    return dataclasses.replace(config, method=MethodSection(name=name, kwargs=kwargs))


def rollout_batch(
    trainer: Trainer,
    *,
    num_prompts: int,
    seed: int = 0,
    split: str = "heldout",
    max_rounds: int = 4,
) -> tuple[Trajectories, list[Task], np.ndarray]:
    """Samples `task.group_size` responses to each of `num_prompts` tasks with the trained policy.

    Methods with DAPO dynamic sampling (`method.filter_groups`) get it as in training
    (`rljax.train.collect.filter_groups`): groups whose rewards are all equal are replaced by
    groups of the next tasks, for up to `max_rounds` batches.

    Args:
        trainer: a trainer (usually after `run()`).
        num_prompts: P, the groups in the batch (tasks 0, 1, ... of `split`).
        seed: the sampling key.
        split: "heldout" (default) or "train".
        max_rounds: batches drawn at most by dynamic sampling.

    Returns:
        (trajectories of B = P * G rows, their P tasks, group_mask [P]: False for a group that
        dynamic sampling could not replace; its action mask is zero).
    """
    group = trainer.config.task.group_size
    key = jax.random.key(seed)

    def sample(round_: int) -> tuple[Trajectories, list[Task]]:
        tasks = [
            trainer.family.generate(split, round_ * num_prompts + index)
            for index in range(num_prompts)
        ]
        traj = collect.sample_trajectories(
            trainer.policy,
            trainer.family,
            tasks,
            trainer.tokenizer,
            trainer.config.task,
            jax.random.fold_in(key, round_),
            group_size=group,
        )
        return traj, tasks

    if not trainer.method.filter_groups:
        traj, tasks = sample(0)
        return traj, tasks, np.ones(num_prompts, bool)
    traj, tasks, group_mask, _ = collect.filter_groups(
        sample,
        num_prompts=num_prompts,
        group_size=group,
        max_rounds=max_rounds,
        pad_id=trainer.tokenizer.pad_token_id,
    )
    return traj, tasks, group_mask


def prepare_inputs(
    trainer: Trainer,
    traj: Trajectories,
    tasks: Sequence[Task],
    group_mask: np.ndarray,
    *,
    group_size: int | None = None,
) -> tuple[methods.PrepareInputs, TrainBatch]:
    """The `PrepareInputs` of a rollout batch under the trainer's current policy.

    Runs the trainer's no-grad forward pass (log-probs and entropies through
    `kernels.token_stats`, plus hidden states and teacher statistics when the trainer's method
    needs them) and collects rewards, masks, stages and clusters as the RL loop does before
    `method.prepare`.

    Args:
        trainer: the trainer whose policy and method define the forward pass.
        traj: a rollout batch (e.g. from `rollout_batch`).
        tasks: its tasks, one per group.
        group_mask: [P] groups that count (from `rollout_batch`).
        group_size: G of the batch (default: the trainer's `task.group_size`).

    Returns:
        (inputs, batch): the inputs any method whose needs the forward pass covers can
        `prepare`, and the batch's token arrays (tokens, positions, masks, stage ids).
    """
    inputs, batch, _ = trainer.prepare_inputs(traj, list(tasks), group_mask, group_size=group_size)
    return inputs, batch


def loss_batch(
    method: methods.Method,
    inputs: methods.PrepareInputs,
    arrays: TrainBatch,
    state=None,
) -> tuple[TrainBatch, dict]:
    """What `method.loss` reads for one rollout batch: the arrays plus `method.prepare`'s output.

    Args:
        method: any method whose needs `inputs` cover (the GRPO baseline needs nothing extra).
        inputs: from `prepare_inputs`.
        arrays: the batch's token arrays (a `TrainBatch`), from `prepare_inputs`.
        state: the method state to prepare with (e.g. a trained Anti-SD gate); None starts from
            `method.init_state()`.

    Returns:
        (batch, metrics): the loss batch (with `old_logprobs`, and `ref_logprobs` equal to them
        when the method has a KL term, i.e. the reference is the current policy) and the
        diagnostics `prepare` reported.
    """
    advantages, _, metrics = method.prepare(inputs, method.init_state() if state is None else state)
    batch = jax.tree.map(jnp.asarray, arrays).replace(
        old_logprobs=inputs.old_logprobs,
        advantages=advantages,
        ref_logprobs=inputs.old_logprobs if "reference" in method.needs else None,
    )
    return batch, {k: float(v) for k, v in metrics.items()}


def loss_credit(method: methods.Method, batch: TrainBatch | Mapping[str, jax.Array]) -> np.ndarray:
    """Per-token credit [B, T] of a method's loss: -N dL/dlogp at the rollout policy (ratio 1).

    On-policy, the gradient of a token-mean clipped surrogate with respect to a token's log-prob
    is -A_tok / N (N = action tokens in the batch), so this returns the token advantages for
    token-mean methods and the gradient weight in the same units for any other loss (ECHO's
    environment term, Dr.GRPO's normalisation). A mapping is turned into a `TrainBatch` with
    `TrainBatch.create` (masks it lacks are zero).
    """
    if isinstance(batch, Mapping):  # a hand-made batch: the other fields take their defaults
        batch = TrainBatch.create(**batch)
    old = jnp.asarray(batch.old_logprobs)
    grad = jax.grad(lambda logprobs: method.loss(logprobs, batch)[0])(old)
    return -np.asarray(grad) * float(np.asarray(batch.action_mask).sum())


def token_credit(advantages: jax.Array, action_mask: jax.Array) -> np.ndarray:
    """Per-token credit [B, T]: a [B] or [B, T] advantage broadcast onto the action tokens."""
    advantages = np.asarray(advantages, np.float32)
    mask = np.asarray(action_mask, np.float32)
    if advantages.ndim == 1:
        advantages = advantages[:, None]
    return advantages * mask


def response_credit(credit: np.ndarray, action_mask: np.ndarray) -> np.ndarray:
    """Mean credit over each response's action tokens [B] (0 for a response without any)."""
    mask = np.asarray(action_mask, np.float32)
    return (np.asarray(credit) * mask).sum(-1) / np.maximum(mask.sum(-1), 1)


def plot_token_credit(
    credits: Mapping[str, np.ndarray],
    mask: np.ndarray,
    *,
    group_size: int,
    columns: slice | None = None,
    dots: np.ndarray | None = None,
    title: str = "",
    ncols: int = 2,
) -> plt.Figure:
    """Heat maps of per-token credit, one panel per method, each on its own diverging scale.

    Args:
        credits: method label -> [B, T] credit (advantage on each token, 0 off the loss tokens).
        mask: [B, T] tokens to colour (the others, prompt and padding, are drawn grey).
        group_size: G; thin lines separate the prompts' groups.
        columns: the token columns to show (default: all).
        dots: optional [B, T] tokens to mark with a dot (e.g. environment tokens).
        title: figure title.
        ncols: panels per row.

    Returns:
        The figure.
    """
    columns = columns or slice(None)
    mask = np.asarray(mask, bool)[:, columns]
    rows = mask.shape[0]
    nrows = -(-len(credits) // ncols)
    height = max(2.2, 0.16 * rows + 0.9)
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(4.6 * ncols, height * nrows), squeeze=False, layout="constrained"
    )
    cmap = plt.get_cmap("RdBu_r").with_extremes(bad="0.7")
    for ax, (label, credit) in zip(axes.flat, credits.items()):
        shown = np.asarray(credit)[:, columns]
        limit = float(np.abs(shown[mask]).max(initial=0.0)) or 1.0
        image = ax.imshow(
            np.ma.masked_where(~mask, shown),
            cmap=cmap,
            vmin=-limit,
            vmax=limit,
            aspect="auto",
            interpolation="nearest",
        )
        if dots is not None:
            b, t = np.nonzero(np.asarray(dots, bool)[:, columns])
            ax.plot(t, b, "k.", markersize=2)
        for boundary in range(group_size, rows, group_size):
            ax.axhline(boundary - 0.5, color="k", linewidth=0.6)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("token position", fontsize=8)
        ax.set_ylabel("response b", fontsize=8)
        ax.tick_params(labelsize=7)
        fig.colorbar(image, ax=ax, shrink=0.9).ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(credits) :]:
        ax.axis("off")
    if title:
        fig.suptitle(title)
    return fig


def plot_response_credit(
    values: Mapping[str, np.ndarray],
    *,
    group_size: int,
    title: str = "",
    ylabel: str = "mean credit over the response",
) -> plt.Figure:
    """Grouped bars of one value per response and method (e.g. `response_credit`).

    Args:
        values: method label -> [B] values.
        group_size: G; responses of one prompt are drawn next to each other with gaps between
            prompts.
        title: figure title.
        ylabel: y-axis label.

    Returns:
        The figure.
    """
    labels = list(values)
    num_rows = len(np.asarray(values[labels[0]]))
    positions = np.arange(num_rows) + np.arange(num_rows) // group_size
    width = 0.8 / len(labels)
    fig, ax = plt.subplots(figsize=(min(14.0, max(6.0, 0.6 * num_rows)), 3.2))
    for index, label in enumerate(labels):
        ax.bar(
            positions + (index - (len(labels) - 1) / 2) * width,
            np.asarray(values[label]),
            width=width,
            label=label,
        )
    ax.axhline(0.0, color="k", linewidth=0.6)
    if num_rows <= 24:
        ax.set_xticks(
            positions, [f"{b // group_size}.{b % group_size}" for b in range(num_rows)], fontsize=7
        )
        ax.set_xlabel("response (prompt.sample)")
    else:
        centres = positions.reshape(-1, group_size).mean(1)
        ax.set_xticks(centres, [str(p) for p in range(len(centres))], fontsize=7)
        ax.set_xlabel(f"prompt (its {group_size} responses side by side)")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8, ncols=min(len(labels), 4))
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig


def plot_curves(
    runs: Mapping[str, Sequence[Mapping[str, float]]], keys: Sequence[str], *, title: str = ""
) -> plt.Figure:
    """Per-step curves of `keys` from several runs' metric records (one panel per key).

    Args:
        runs: run label -> its records (`RunResult.metrics` or `.evals`: dicts with "step").
        keys: the metrics to plot; a run without a key is left out of that panel.
        title: figure title.

    Returns:
        The figure.
    """
    fig, axes = plt.subplots(1, len(keys), figsize=(4.0 * len(keys), 3.0), squeeze=False)
    for ax, key in zip(axes.flat, keys):
        for label, records in runs.items():
            points = [(r["step"], r[key]) for r in records if key in r]
            if points:
                steps, values = zip(*points)
                ax.plot(steps, values, marker="o", markersize=3, label=label)
        ax.set_title(key, fontsize=10)
        ax.set_xlabel("step", fontsize=8)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
