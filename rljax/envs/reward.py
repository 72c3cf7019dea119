"""A task family from a plain reward function: prompts from any family, rewards from the function."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from rljax.envs.base import Task, TaskFamily, Verdict

RewardFn = Callable[[Task, str], float]


@dataclasses.dataclass(frozen=True)
class RewardFamily:
    """`prompts`'s tasks, scored by `reward_fn(task, response) -> float` instead of its verifier.

    Attributes:
        prompts: generates the tasks and scripts the expert demonstrations (SFT warm start).
        reward_fn: the reward of a full response to a task.
        name: the family's name in logs and task uids (default: "<prompts.name>+reward").
    """

    prompts: TaskFamily
    reward_fn: RewardFn
    name: str = ""

    def __post_init__(self):
        if not isinstance(self.prompts, TaskFamily):
            raise ValueError(f"prompts must be a TaskFamily, got {type(self.prompts).__name__}")
        if not callable(self.reward_fn):
            raise ValueError(
                f"reward_fn must be callable (task, response) -> float, got {self.reward_fn!r}"
            )
        if not self.name:
            object.__setattr__(self, "name", f"{self.prompts.name}+reward")

    def generate(self, split: str, index: int) -> Task:
        """Task `index` of `split`, from `prompts`."""
        return self.prompts.generate(split, index)

    def verify(self, task: Task, response: str) -> Verdict:
        """`reward_fn`'s reward; a non-finite or non-numeric reward raises ValueError."""
        reward = float(self.reward_fn(task, response))
        if not np.isfinite(reward):
            raise ValueError(
                f"reward_fn returned {reward} for task {task.uid}; expected a finite float"
            )
        return Verdict(reward, {"reason": "reward_fn"})

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """`prompts`'s scripted demonstration."""
        return self.prompts.expert(task, rng, noise)


def from_reward_fn(prompts: TaskFamily, reward_fn: RewardFn, *, name: str = "") -> RewardFamily:
    """A `RewardFamily`: the tasks of `prompts`, rewarded by `reward_fn(task, response)`."""
    return RewardFamily(prompts, reward_fn, name)
