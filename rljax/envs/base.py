"""Task and environment interfaces shared by every task family, verifier and rollout.

A *task family* generates deterministic task instances from (seed, split, index), verifies a
response, and scripts an expert demonstration. A *multi-turn environment* is a task family whose
episodes are played turn by turn through an `Episode`: the policy emits an action, the episode
answers with an `Observation`. Everything here is host-side Python; the rollout turns it into
token arrays.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import numpy as np

if TYPE_CHECKING:
    from rljax.envs.stages import StageScheme

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


# -------------------------------------------------------------------------------------------------
# Optional capabilities. A family implements the ones it supports; the trainer checks once, at
# start-up, that the family has every capability the method and the run's settings need
# (`rljax.train.components.check_family`), and reads them through these protocols only.


@runtime_checkable
class ClosableEpisode(Protocol):
    """An episode that owns a resource (a terminal sandbox); the rollout closes it once judged."""

    def close(self) -> None:
        """Releases the episode's resources."""


@runtime_checkable
class SizedFamily(Protocol):
    """A finite dataset: its split sizes set the training epoch."""

    def num_examples(self, split: str) -> int:
        """Number of tasks in `split`."""


@runtime_checkable
class StagedFamily(Protocol):
    """A family whose responses split into RubricEM stages (`stage_ids`, `stage_rewards`)."""

    stage_scheme: StageScheme


@runtime_checkable
class TeacherContextFamily(Protocol):
    """A family that can show a self-teacher a privileged context (Anti-SD)."""

    def teacher_context(self, task: Task, peer: str | None, correct: bool) -> str:
        """The teacher's user turn for a row: the task plus a verified solution and feedback."""


@runtime_checkable
class ClusteredFamily(Protocol):
    """A family whose verdicts carry a strategy cluster in `info["cluster"]` (Poly-EPO)."""

    cluster_fn: Callable[[Task, str], int]


@runtime_checkable
class StatefulFamily(Protocol):
    """A family with state that a checkpoint must keep (e.g. RubricEM's rubric buffer and bank)."""

    def get_state(self) -> dict:
        """JSON data of the family's state."""

    def set_state(self, state: dict) -> None:
        """Restores `get_state`'s data."""


@runtime_checkable
class WarmStartFamily(Protocol):
    """A family with its own mixture of warm-start (SFT) tasks (e.g. Anti-SD's teacher mode)."""

    def warm_start_tasks(self, num_tasks: int) -> list[Task]:
        """The tasks of `num_tasks` demonstrations."""


@runtime_checkable
class ReflectiveFamily(Protocol):
    """A family with RubricEM's reflection bank (rubric_em.md REM-10, REM-11)."""

    def with_reference(self, task: Task, mode: str) -> Task:
        """`task` with retrieved bank entries in its prompt (mode "cross" or "within")."""

    def reflection_task(self, task: Task, info: dict) -> Task:
        """The reflection prompt on one rollout of `task` (its verdict info)."""

    def judge_reflections(self, prompt: Task, reflections: Sequence[str]) -> list[Any]:
        """One score (`utility`, `valid`) per sampled reflection."""

    def write_reflection(self, prompt: Task, reflections: Sequence[str], scores: Sequence) -> bool:
        """Writes the best valid reflection to the bank; whether one was written."""


@runtime_checkable
class TokenCountingFamily(Protocol):
    """A family that sizes its prompts in tokens (the long-context families).

    `count_tokens` (text -> number of tokens) is left None where the family is declared and set by
    whoever builds it for a run, to the policy tokenizer's counter (`rljax.data.token_counter`,
    which the trainer passes through `with_token_counter`); `generate` raises without one.
    """

    count_tokens: Callable[[str], int] | None


def with_token_counter(family: TaskFamily, count_tokens: Callable[[str], int]) -> TaskFamily:
    """`family` counting tokens with `count_tokens` if it is a `TokenCountingFamily` without one.

    Args:
        family: any task family; a `TokenCountingFamily` must be a dataclass (it is copied).
        count_tokens: text -> number of tokens, e.g. `rljax.data.token_counter(tokenizer)`.

    Returns:
        A copy of `family` with `count_tokens` set (`dataclasses.replace`) when it counts tokens and
        has no counter yet; otherwise `family` itself (a counter already given is kept).
    """
    if isinstance(family, TokenCountingFamily) and family.count_tokens is None:
        return dataclasses.replace(family, count_tokens=count_tokens)
    return family


def check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
