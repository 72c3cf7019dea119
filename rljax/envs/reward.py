"""A task family from a plain reward function: prompts from any family, rewards from the function."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import numpy as np

from rljax.envs.base import Task, TaskFamily, Verdict

RewardFn = Callable[[Task, str], float]


class RewardFunctionError(RuntimeError):
    """A reward function (or verifier) raised; the message names the task."""


def call_reward(fn: Callable[..., Any], task: Any, *args: Any) -> Any:
    """Calls a reward function (`fn(task, *args)`); an exception is re-raised naming the task.

    A `RewardFunctionError` from a nested call passes through unchanged (it already names the
    innermost function).

    Raises:
        RewardFunctionError: "<fn> raised <ExceptionType>: <message> on task <uid>", chained to
            the original exception.
    """
    try:
        return fn(task, *args)
    except RewardFunctionError:
        raise
    except Exception as err:
        name = getattr(fn, "__qualname__", repr(fn))
        uid = getattr(task, "uid", task)
        raise RewardFunctionError(
            f"reward function {name} raised {type(err).__name__}: {err} on task {uid!r}; the run "
            "stops (a reward that cannot be computed is a bug, not a zero)"
        ) from err


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
        """`reward_fn`'s reward.

        A non-finite reward (NaN, inf) is returned as is: the trainer masks that group out of the
        update and counts it (`nonfinite_reward_groups`). A reward function that raises, or
        returns something that is not a real number, raises `RewardFunctionError` naming the task.
        """
        value = call_reward(self.reward_fn, task, response)
        if not isinstance(value, (int, float, np.number)) or np.iscomplexobj(value):
            raise RewardFunctionError(
                f"reward function {getattr(self.reward_fn, '__qualname__', self.reward_fn)!r} "
                f"returned {value!r} ({type(value).__name__}) for task {task.uid!r}; expected a "
                "real number"
            )
        return Verdict(float(value), {"reason": "reward_fn"})

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """`prompts`'s scripted demonstration."""
        return self.prompts.expert(task, rng, noise)


def from_reward_fn(prompts: TaskFamily, reward_fn: RewardFn, *, name: str = "") -> RewardFamily:
    """A `RewardFamily`: the tasks of `prompts`, rewarded by `reward_fn(task, response)`."""
    return RewardFamily(prompts, reward_fn, name)
