"""Task and environment interfaces shared by every task family, verifier and rollout.

A *task family* generates deterministic task instances from (seed, split, index), verifies a
response, and scripts an expert demonstration. A *multi-turn environment* is a task family whose
episodes are played turn by turn through an `Episode`: the policy emits an action, the episode
answers with an `Observation`. Everything here is host-side Python; the rollout turns it into
token arrays.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Protocol, runtime_checkable

import numpy as np

SPLITS = ("train", "heldout")


@dataclasses.dataclass(frozen=True)
class Task:
    """One task instance.

    Attributes:
        uid: globally unique id, e.g. "arithmetic/train/17"; the held-out split shares no uid and no
            instance content with the train split.
        family: name of the task family that made it.
        prompt: the user-turn text shown to the policy.
        answer: the reference answer (any JSON-serialisable value) the verifier checks against.
        task_id: integer task type, used by GoLongRL's per-task statistics (0 for single-type families).
        system: optional system-turn text.
        meta: extra JSON-serialisable data the verifier, expert or judge needs.
    """

    uid: str
    family: str
    prompt: str
    answer: Any
    task_id: int = 0
    system: str | None = None
    meta: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Verdict:
    """A verifier's judgement: a scalar reward plus an explanation.

    `info` always holds "reason" (why the reward is what it is, e.g. "malformed: no <answer> tag")
    and may hold any metric the task reports (exact match, F1, ...).
    """

    reward: float
    info: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class Observation:
    """What the environment shows after one action.

    Attributes:
        text: the observation content (rendered inside an observation turn; tokens are env tokens).
        warning: harness warning text for a malformed action ("" if none); rendered as a separate
            prefix inside the observation so the rollout can mark its tokens with `warning_mask`.
        done: the episode ended (final answer given, or the environment closed it).
    """

    text: str
    warning: str = ""
    done: bool = False


@runtime_checkable
class TaskFamily(Protocol):
    """Deterministic task generator + verifier + scripted expert."""

    name: str

    def generate(self, split: str, index: int) -> Task:
        """Returns task `index` of `split` ("train" or "heldout"); same inputs, same task."""

    def verify(self, task: Task, response: str) -> Verdict:
        """Scores a full response (for multi-turn tasks: the final answer / final state)."""

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """A scripted demonstration; with probability ~`noise` it makes a mistake."""


@runtime_checkable
class Episode(Protocol):
    """One running multi-turn episode (a terminal session, a research session...)."""

    def step(self, action: str) -> Observation:
        """Applies one policy action (the text of one assistant turn) and returns the observation."""

    def verdict(self) -> Verdict:
        """Final reward of the episode so far (call after `done` or at the turn limit)."""


@runtime_checkable
class MultiTurnFamily(TaskFamily, Protocol):
    """A task family played over several turns."""

    def start(self, task: Task) -> Episode:
        """Starts an episode of `task`."""

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """Scripted expert actions, one per assistant turn, ending with the final answer."""


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
