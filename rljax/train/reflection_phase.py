"""RubricEM's reflection meta-policy and windowed curriculum in the RL loop (rubric_em.md REM-10, REM-11).

One RL step t with the phase attached (the order of the spec's section 5 pseudo-code):

    tasks, m1 = phase.next_tasks(data, t)          # REM-11: window batch + retrieved bank entries
    m2 = phase.phase_a(update)                     # REM-10: deferred reflection update (Phase A)
    traj = sample_trajectories(model, ...)         # rollouts see the bank entries as prompt context
    m3 = phase.after_rollout(tasks, traj, model=model, key_data=state.key)  # reflect, write the bank
    ... the method's own prepare + update (Phase B) ...

Windowed curriculum (K_w = 3, a window of 2 K_w steps): steps 1..K_w of a window draw fresh batches
Q1..Q_Kw from the data stream with cross-episode retrieval (the top-k most similar OTHER questions'
bank entries), steps K_w+1..2 K_w replay Q1..Q_Kw in the same order with within-episode retrieval
(the question's own entry). Reflections on the step-t rollouts are sampled and judged at step t and
written to the bank at once; their policy update runs before the step t+1 rollout (deferred
Phase A), so entries written at steps 1..K_w exist by steps K_w+1..2 K_w. Evaluation never uses
the bank: the driver's evaluation rolls out plain held-out tasks.

Randomness (which rollout of a group is reflected on, and the reflection samples) derives from the
run's `TrainState.key` (passed to `after_rollout`), and `get_state()` / `set_state()` hold the rest (replay queue, seen
queries, deferred batch), so a resumed run continues exactly.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from rljax import losses
from rljax.envs.base import ReflectiveFamily, Task, Verdict
from rljax.methods import Method, TrainBatch
from rljax.rollout.types import Trajectories
from rljax.train import collect
from rljax.train.components import check_family
from rljax.train.config import TaskSection
from rljax.train.metrics import to_python

WINDOW = 3  # K_w (REM-11)
REFLECTION_GROUP = 8  # G_ref (REM-10)
REFLECTION_TEMPERATURE = 0.7  # REM-10
RETRIEVAL_FRESH, RETRIEVAL_REPLAY = "cross", "within"
# Folded into the trainer's key: the reflection stream is independent of the rollout's.
_KEY_STREAM = 0x5EF1EC7


class WindowedCurriculum:
    """REM-11's windowed batch order: K_w fresh batches, then the same K_w replayed in order."""

    def __init__(self, window: int = WINDOW):
        if not isinstance(window, int) or window < 1:
            raise ValueError(f"window (K_w) must be an int >= 1, got {window!r}")
        self.window = window
        self._replay: list[list[Task]] = []

    def batch(self, data_iter: Iterator[Sequence[Task]], step: int) -> tuple[list[Task], str]:
        """The tasks of RL step `step` and their retrieval mode.

        Args:
            data_iter: yields fresh batches (lists of tasks); read only on fresh steps.
            step: the RL step being run, 1-based (the trainer's `state.step + 1`).

        Returns:
            (tasks, mode): mode "cross" on the first K_w steps of a window (fresh batches), "within"
            on the last K_w (the window's fresh batches again, in order).
        """
        if not isinstance(step, (int, np.integer)) or step < 1:
            raise ValueError(f"step must be an int >= 1 (the RL step being run), got {step!r}")
        position = (int(step) - 1) % (2 * self.window)
        if position == 0:
            self._replay = []
        if position < self.window:
            if len(self._replay) != position:
                raise ValueError(
                    f"step {step} is fresh step {position + 1} of its window, but the replay "
                    f"queue holds {len(self._replay)} batches; steps must run in order"
                )
            tasks = list(next(data_iter))
            self._replay.append(tasks)
            return tasks, RETRIEVAL_FRESH
        if len(self._replay) != self.window:
            raise ValueError(
                f"step {step} replays batch {position - self.window + 1} of its window, but the "
                f"replay queue holds {len(self._replay)} of {self.window} batches"
            )
        return list(self._replay[position - self.window]), RETRIEVAL_REPLAY

    def get_state(self) -> dict:
        """The replay queue, for checkpoint metadata.

        Returns:
            JSON data {"replay": [[task fields, ...], ...]}: the current window's fresh batches.
        """
        return {"replay": [[dataclasses.asdict(task) for task in tasks] for tasks in self._replay]}

    def set_state(self, state: dict) -> None:
        """Restores the replay queue.

        Args:
            state: `get_state`'s data.
        """
        if len(state["replay"]) > self.window:
            raise ValueError(
                f"replay queue holds {len(state['replay'])} batches, more than K_w={self.window}"
            )
        self._replay = [[Task(**fields) for fields in tasks] for tasks in state["replay"]]


@dataclasses.dataclass(frozen=True)
class ReflectionBatch:
    """The deferred Phase-A batch: P_r groups of G_ref sampled reflections, as host data.

    Attributes:
        tokens: per row, the unpadded token ids (reflection prompt + generated reflection).
        action_mask: per row, 1 on the generated reflection tokens (the only loss tokens), else 0.
        utilities: [P_r * G_ref] judged utilities u (REM-10).
        valid: [P_r * G_ref] whether each reflection is well-formed.
        advantages: [P_r * G_ref] A_ref, normalised within each group of G_ref.
        seq_len: T of the padded batch (the rollout's padded length, kept so shapes repeat).
        num_rows: B of the update batch, the step's P * G_ref (fixed whatever P_r is, so the update
            compiles once): the P_r * G_ref real rows, then copies of them with no loss token.
    """

    tokens: tuple[tuple[int, ...], ...]
    action_mask: tuple[tuple[int, ...], ...]
    utilities: tuple[float, ...]
    valid: tuple[bool, ...]
    advantages: tuple[float, ...]
    seq_len: int
    num_rows: int

    def __post_init__(self):
        rows = len(self.tokens)
        sizes = {len(self.action_mask), len(self.utilities), len(self.valid), len(self.advantages)}
        if not 0 < rows <= self.num_rows or sizes != {rows}:
            raise ValueError(
                f"a reflection batch needs 0 < rows <= num_rows={self.num_rows} and one entry "
                f"per row in every field; got {rows} token rows and field sizes {sorted(sizes)}"
            )

    @classmethod
    def from_rollout(
        cls,
        traj: Trajectories,
        utilities: np.ndarray,
        valid: np.ndarray,
        advantages: np.ndarray,
        *,
        num_rows: int,
    ) -> ReflectionBatch:
        """Packs a reflection rollout and its judged values.

        Args:
            traj: the reflection rollout, B_r = P_r * G_ref rows.
            utilities, valid, advantages: [P_r, G_ref].
            num_rows: B of the update batch (>= B_r).

        Returns:
            The batch.
        """
        for name, x in (("utilities", utilities), ("valid", valid), ("advantages", advantages)):
            if np.size(x) != traj.batch_size:
                raise ValueError(
                    f"{name} has shape {np.shape(x)}; expected P_r x G_ref = {traj.batch_size} "
                    f"entries, one per reflection row"
                )
        lengths = np.asarray(traj.lengths)
        tokens, mask = np.asarray(traj.tokens), np.asarray(traj.action_mask)
        return cls(
            tokens=tuple(tuple(int(x) for x in row[:n]) for row, n in zip(tokens, lengths)),
            action_mask=tuple(tuple(int(x) for x in row[:n]) for row, n in zip(mask, lengths)),
            utilities=tuple(float(u) for u in np.ravel(utilities)),
            valid=tuple(bool(v) for v in np.ravel(valid)),
            advantages=tuple(float(a) for a in np.ravel(advantages)),
            seq_len=int(traj.seq_len),
            num_rows=num_rows,
        )

    def arrays(self, *, pad_id: int) -> dict[str, np.ndarray]:
        """The update batch as host arrays, keyed by `TrainBatch` field names.

        Args:
            pad_id: the tokenizer's pad id.

        Returns:
            B = `num_rows` rows: tokens, positions, segment_ids, stage_ids (-1) [B, T] int32;
            action_mask, env_mask, warning_mask (0) and advantages (A_ref of the row on its
            reflection tokens) [B, T] float32. Filler rows repeat real ones with zero action mask.
        """
        rows, num_rows = len(self.tokens), self.num_rows
        out = {
            "tokens": np.full((num_rows, self.seq_len), pad_id, np.int32),
            "positions": np.zeros((num_rows, self.seq_len), np.int32),
            "segment_ids": np.zeros((num_rows, self.seq_len), np.int32),
            "action_mask": np.zeros((num_rows, self.seq_len), np.float32),
            "advantages": np.zeros((num_rows, self.seq_len), np.float32),
        }
        for b in range(num_rows):
            source, n = b % rows, len(self.tokens[b % rows])
            out["tokens"][b, :n] = self.tokens[source]
            out["positions"][b, :n] = np.arange(n)
            out["segment_ids"][b, :n] = 1
            if b < rows:
                out["action_mask"][b, :n] = self.action_mask[b]
                out["advantages"][b] = self.advantages[b] * out["action_mask"][b]
        out["env_mask"] = np.zeros((num_rows, self.seq_len), np.float32)
        out["warning_mask"] = np.zeros((num_rows, self.seq_len), np.float32)
        out["stage_ids"] = np.full((num_rows, self.seq_len), -1, np.int32)
        return out

    def to_json(self) -> dict:
        """The batch as JSON data, for checkpoint metadata.

        Returns:
            The fields, tuples as lists (token ids, floats, bools, ints).
        """
        return {
            "tokens": [list(row) for row in self.tokens],
            "action_mask": [list(row) for row in self.action_mask],
            "utilities": list(self.utilities),
            "valid": list(self.valid),
            "advantages": list(self.advantages),
            "seq_len": self.seq_len,
            "num_rows": self.num_rows,
        }

    @classmethod
    def from_json(cls, data: dict) -> ReflectionBatch:
        """Rebuilds a batch saved by `to_json`.

        Args:
            data: `to_json`'s data.

        Returns:
            The batch.
        """
        return cls(
            tokens=tuple(tuple(row) for row in data["tokens"]),
            action_mask=tuple(tuple(row) for row in data["action_mask"]),
            utilities=tuple(float(u) for u in data["utilities"]),
            valid=tuple(bool(v) for v in data["valid"]),
            advantages=tuple(float(a) for a in data["advantages"]),
            seq_len=int(data["seq_len"]),
            num_rows=int(data["num_rows"]),
        )


@dataclasses.dataclass(frozen=True)
class _ReflectionResponses:
    """A single-turn family that records each sampled reflection; its group is judged afterwards."""

    name: str

    def verify(self, task: Task, response: str) -> Verdict:
        return Verdict(
            0.0, {"reason": "reflection recorded; judged with its group", "response": response}
        )


class ReflectionPhase:
    """REM-10 reflection meta-policy and REM-11 windowed curriculum of one run.

    Args:
        family: the run's task family, a `ReflectiveFamily` (e.g. `MiniResearchFamily`).
        method: the run's method (Phase A trains it on the reflections).
        task_cfg: the run's task settings (P, G, budgets).
        tokenizer: the policy's tokenizer.
        minibatches: optimiser steps per batch (must divide P * G_ref).
        group_size: G_ref reflections per reflected rollout (paper 8).
        temperature: reflection sampling temperature (paper 0.7); the loss uses the task's.
        max_new_tokens: reflection length budget (None: the task's `max_new_tokens`); the
            reflection context is the task's `max_len` plus this.
        window: K_w (paper 3).
        reflect_every_step: reflect on every encounter of a query (the paper's Algorithm 1)
            instead of the first only (its appendix; default).
    """

    def __init__(
        self,
        family: ReflectiveFamily,
        method: Method,
        task_cfg: TaskSection,
        tokenizer: Any,
        *,
        minibatches: int = 1,
        group_size: int = REFLECTION_GROUP,
        temperature: float = REFLECTION_TEMPERATURE,
        max_new_tokens: int | None = None,
        window: int = WINDOW,
        reflect_every_step: bool = False,
    ):
        check_family(family, method, reflection=True)
        if method.filter_groups or "teacher" in method.needs:
            raise ValueError(
                f"method {method.name!r} uses dynamic sampling or a teacher context; the "
                f"reflection phase fixes each step's batch and has no teacher context"
            )
        if not isinstance(group_size, int) or group_size < 2:
            raise ValueError(f"group_size (G_ref) must be an int >= 2, got {group_size!r}")
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}")
        max_new_tokens = task_cfg.max_new_tokens if max_new_tokens is None else max_new_tokens
        if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be an int >= 1 or None, got {max_new_tokens!r}")
        rows = task_cfg.prompts_per_step * group_size
        if rows % minibatches:
            raise ValueError(
                f"train.minibatches={minibatches} must divide the reflection batch of "
                f"{rows} rows (task.prompts_per_step * G_ref={group_size})"
            )
        self.family, self.method, self.tokenizer = family, method, tokenizer
        self.group_size = group_size
        self.reflect_every_step = reflect_every_step
        self.task_group_size = task_cfg.group_size
        self.sampling = dataclasses.replace(
            task_cfg,
            temperature=temperature,
            max_turns=1,
            max_new_tokens=max_new_tokens,
            max_len=task_cfg.max_len + max_new_tokens,
        )
        self.curriculum = WindowedCurriculum(window)
        self._seen: set[str] = set()
        self._deferred: ReflectionBatch | None = None

    @property
    def deferred(self) -> ReflectionBatch | None:
        """The reflection batch waiting for its Phase-A update (None: nothing to train).

        Returns:
            The batch `after_rollout` built, until `phase_a` consumes it.
        """
        return self._deferred

    def next_tasks(self, data_iter: Iterator[Sequence[Task]], step: int) -> tuple[list[Task], dict]:
        """REM-11: the tasks of RL step `step`, with retrieved bank entries in their prompts.

        Args:
            data_iter: the run's prompt stream (read on fresh steps only).
            step: the RL step being run, 1-based.

        Returns:
            (tasks, metrics): each task passed through `family.with_reference(task, mode)`;
            metrics "curriculum_replay" (1 on replay steps) and "bank_retrieved" (share of prompts
            that got a reference block).
        """
        tasks, mode = self.curriculum.batch(data_iter, step)
        family = self.family
        with_ref = [family.with_reference(task, mode) for task in tasks]
        retrieved = sum(new is not old for new, old in zip(with_ref, tasks))
        return with_ref, {
            "curriculum_replay": float(mode == RETRIEVAL_REPLAY),
            "bank_retrieved": retrieved / len(tasks),
        }

    def phase_a(self, update: Callable[[TrainBatch], Mapping[str, Any]]) -> dict:
        """REM-10 Phase A: one update of the run's method on the deferred reflection batch.

        Loss tokens are the reflection tokens only (the trajectory is fixed context); each row's
        advantage is its A_ref; clip, KL and aggregation are the method's (REM-6).

        Args:
            update: runs the method's update on a batch with advantages and returns its metrics;
                it fills old (and reference) log-probs at the current parameters, as for the
                run's own batches (the driver's `Trainer.update_batch`).

        Returns:
            {} without a deferred batch; else "reflection_utility_mean", "reflection_valid_frac",
            "reflection_groups" and the update's metrics prefixed "reflection_" (e.g.
            "reflection_loss", "reflection_kl", "reflection_grad_norm").
        """
        deferred = self._deferred
        if deferred is None:
            return {}
        batch = TrainBatch(**deferred.arrays(pad_id=self.tokenizer.pad_token_id))
        update_metrics = to_python(update(batch))
        self._deferred = None
        return {
            "reflection_utility_mean": float(np.mean(deferred.utilities)),
            "reflection_valid_frac": float(np.mean(deferred.valid)),
            "reflection_groups": len(deferred.utilities) / self.group_size,
            **{f"reflection_{k}": v for k, v in update_metrics.items()},
        }

    def after_rollout(
        self, tasks: Sequence[Task], traj: Trajectories, *, model: nnx.Module, key_data: jax.Array
    ) -> dict:
        """REM-10: reflect on one random rollout of each first-encountered query; fill the bank.

        For each such query, one of its G rollouts is picked uniformly at random, G_ref
        reflections are sampled from the current policy at the reflection temperature, judged,
        turned into A_ref = (u - mean u) / (std u + 1e-8) (population std, REM-4's), the best
        valid one is written to the bank, and the batch becomes the next step's Phase A.

        Args:
            tasks: the step's P tasks (as rolled out).
            traj: their rollouts, B = P * G rows (row p * G + g plays `tasks[p]`).
            model: the current policy (samples the reflections).
            key_data: the run's `TrainState.key`; the reflection stream is folded from it.

        Returns:
            "reflection_queries" (queries reflected on) and "reflection_bank_writes" (entries
            written); the deferred batch is replaced (None when no query was new).
        """
        group = self.task_group_size
        if traj.batch_size != len(tasks) * group:
            raise ValueError(
                f"traj has {traj.batch_size} rows; expected len(tasks)={len(tasks)} x "
                f"group_size={group}"
            )
        chosen = []
        for p, task in enumerate(tasks):
            if self.reflect_every_step or task.uid not in self._seen:
                chosen.append(p)
            self._seen.add(task.uid)
        self._deferred = None
        if not chosen:
            return {"reflection_queries": 0.0, "reflection_bank_writes": 0.0}
        key = jax.random.fold_in(jax.random.wrap_key_data(key_data), _KEY_STREAM)
        pick_key, sample_key = jax.random.split(key)
        picks = np.asarray(jax.random.randint(pick_key, (len(tasks),), 0, group))
        family = self.family
        prompts = [
            family.reflection_task(tasks[p], traj.info[p * group + int(picks[p])]) for p in chosen
        ]
        reflections = collect.sample_trajectories(
            model,
            _ReflectionResponses(family.name),
            prompts,
            self.tokenizer,
            self.sampling,
            sample_key,
            group_size=self.group_size,
        )
        texts = [info["response"] for info in reflections.info]
        utilities = np.zeros((len(prompts), self.group_size), np.float32)
        valid = np.zeros((len(prompts), self.group_size), bool)
        writes = 0
        for i, prompt in enumerate(prompts):
            candidates = texts[i * self.group_size : (i + 1) * self.group_size]
            scores = family.judge_reflections(prompt, candidates)
            utilities[i] = [score.utility for score in scores]
            valid[i] = [score.valid for score in scores]
            writes += bool(family.write_reflection(prompt, candidates, scores))
        advantages = np.asarray(losses.reflection_advantages(utilities))
        self._deferred = ReflectionBatch.from_rollout(
            reflections, utilities, valid, advantages, num_rows=len(tasks) * self.group_size
        )
        return {"reflection_queries": float(len(prompts)), "reflection_bank_writes": float(writes)}

    def get_state(self) -> dict:
        """What a checkpoint must keep (JSON): the replay queue, the seen queries, the deferred batch.

        Returns:
            {"curriculum": ..., "seen": [uid, ...], "deferred": ReflectionBatch.to_json() or None}.
        """
        return {
            "curriculum": self.curriculum.get_state(),
            "seen": sorted(self._seen),
            "deferred": None if self._deferred is None else self._deferred.to_json(),
        }

    def set_state(self, state: dict) -> None:
        """Restores `get_state`'s data.

        Args:
            state: `get_state`'s data (after a JSON round trip).
        """
        if set(state) != {"curriculum", "seen", "deferred"}:
            raise ValueError(
                f"state must have keys 'curriculum', 'seen' and 'deferred', got {sorted(state)}"
            )
        self.curriculum.set_state(state["curriculum"])
        self._seen = set(state["seen"])
        self._deferred = (
            None if state["deferred"] is None else ReflectionBatch.from_json(state["deferred"])
        )


__all__ = [
    "REFLECTION_GROUP",
    "REFLECTION_TEMPERATURE",
    "WINDOW",
    "ReflectionBatch",
    "ReflectionPhase",
    "WindowedCurriculum",
]
