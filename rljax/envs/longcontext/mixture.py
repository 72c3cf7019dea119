"""The mixed long-context family (GoLongRL's nine capabilities) and per-task evaluation.

`LongContextFamily` draws a capability per task (uniform by default, or `PAPER_WEIGHTS`, the
imbalance of golongrl.md 8.2) and delegates to that capability's family; `Task.task_id` is the
capability index (`CAPABILITY_NAMES` order), which `losses.tmn_advantages` groups by with
`num_tasks=NUM_TASKS`.
"""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import math
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from rljax.envs import registry
from rljax.envs.base import Task, Verdict, check_split
from rljax.envs.longcontext.base import CAPABILITY_NAMES, CapabilityFamily, require_counter
from rljax.envs.longcontext.reasoning import (
    ComprehensionFamily,
    GradedRankingFamily,
    NumericalReasoningFamily,
    SequenceOrderingFamily,
    SummarizationFamily,
)
from rljax.envs.longcontext.retrieval import (
    ExhaustiveRetrievalFamily,
    PreciseRetrievalFamily,
    StructuredExtractionFamily,
    StructuredMatchingFamily,
)

CAPABILITY_FAMILIES: tuple[type[CapabilityFamily], ...] = (
    PreciseRetrievalFamily,
    ComprehensionFamily,
    ExhaustiveRetrievalFamily,
    NumericalReasoningFamily,
    StructuredExtractionFamily,
    StructuredMatchingFamily,
    GradedRankingFamily,
    SequenceOrderingFamily,
    SummarizationFamily,
)
"""The nine families, indexed by task id."""

NUM_TASKS = len(CAPABILITY_FAMILIES)
PAPER_WEIGHTS = (0.225, 0.225, 0.225, 0.225, 0.05, 0.0125, 0.0125, 0.0125, 0.0125)
"""golongrl.md 8.2 mixture: tasks 1-4 ~90%, task 5 ~5%, tasks 6-9 ~5% together."""


@dataclasses.dataclass(frozen=True)
class LongContextFamily:
    """The nine long-context capabilities as one family, one capability drawn per task.

    Attributes:
        weights: sampling weights of the nine capabilities in task-id order (non-negative, not all
            zero; normalised), e.g. `PAPER_WEIGHTS`; None: uniform.
        warm_start_weights: the same for the SFT demonstrations (`warm_start_tasks`); None: as
            `weights`. A capability with warm-start weight but RL weight 0 is learnt in the warm
            start and never trained by RL (a no-degradation probe).
        context_tokens: see `CapabilityFamily`.
        context_tokens_by_capability: per-capability context ranges that replace `context_tokens`,
            keyed by capability name (`CAPABILITY_NAMES`), e.g. `{"structured_matching": (271,
            300)}` beside shorter contexts for the others (None: none).
        response_tokens: see `CapabilityFamily` (a run sets `task.max_new_tokens - 1`).
        near_duplicates: see `CapabilityFamily`.
        rouge_f: ROUGE-L variant of the summarisation task, "package" or "f1".
        seed: family seed; each capability family gets its own seed derived from it.
        heldout_fraction: share of each capability's instance space reserved for "heldout".
        system: system-turn text of every task (None: no system turn).
        name: family name, the first field of every uid.
        count_tokens: see `CapabilityFamily` (given to every capability family).
    """

    weights: Sequence[float] | None = None
    warm_start_weights: Sequence[float] | None = None
    context_tokens: int | tuple[int, int] = (300, 900)
    context_tokens_by_capability: Mapping[str, int | tuple[int, int]] | None = None
    response_tokens: int | None = None
    near_duplicates: int = 2
    rouge_f: str = "package"
    seed: int = 0
    heldout_fraction: float = 0.2
    system: str | None = None
    name: str = "longcontext"
    count_tokens: Callable[[str], int] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )
    families: tuple[CapabilityFamily, ...] = dataclasses.field(
        init=False, repr=False, compare=False
    )

    def __post_init__(self):
        object.__setattr__(self, "weights", _normalised("weights", self.weights))
        if self.warm_start_weights is not None:
            weights = _normalised("warm_start_weights", self.warm_start_weights)
            object.__setattr__(self, "warm_start_weights", weights)
        if not isinstance(self.seed, int) or self.seed < 0:
            raise ValueError(f"seed must be a non-negative int, got {self.seed!r}")
        by_capability = dict(self.context_tokens_by_capability or {})
        unknown = sorted(set(by_capability) - set(CAPABILITY_NAMES))
        if unknown:
            raise ValueError(
                f"context_tokens_by_capability names {unknown}; expected capability names from "
                f"{CAPABILITY_NAMES}"
            )
        families = []
        for family in CAPABILITY_FAMILIES:
            extra = {"rouge_f": self.rouge_f} if family is SummarizationFamily else {}
            context = by_capability.get(CAPABILITY_NAMES[family.task_id], self.context_tokens)
            families.append(
                family(
                    context_tokens=context,
                    response_tokens=self.response_tokens,
                    near_duplicates=self.near_duplicates,
                    seed=_derived_seed(self.seed, family.task_id),
                    heldout_fraction=self.heldout_fraction,
                    system=self.system,
                    count_tokens=self.count_tokens,
                    **extra,
                )
            )
        object.__setattr__(self, "families", tuple(families))

    def generate(self, split: str, index: int) -> Task:
        """Returns task `index` of `split`: a capability drawn by weight, then its instance.

        Args:
            split: "train" or "heldout" (disjoint: each capability splits by content hash).
            index: any non-negative int.

        Returns:
            The task, with `task_id` = the capability index and this family's name and uid.

        Raises:
            ValueError: the family has no `count_tokens`.
        """
        check_split(split)
        return self._draw(split, index, self.weights)

    def warm_start_tasks(self, num_tasks: int) -> list[Task]:
        """Training tasks 0 .. num_tasks - 1 of the warm-start mixture (the SFT demonstrations).

        Task i draws its capability as `generate("train", i)` does, with `warm_start_weights`
        (None: `weights`, and then the tasks are `generate`'s).

        Args:
            num_tasks: how many tasks.

        Returns:
            The tasks, uids `<name>/train/<i>`.
        """
        weights = self.weights if self.warm_start_weights is None else self.warm_start_weights
        return [self._draw("train", i, weights) for i in range(num_tasks)]

    def _draw(self, split: str, index: int, weights: tuple[float, ...]) -> Task:
        require_counter(self.name, self.count_tokens)
        rng = registry.instance_rng(self.seed, split, index)
        task_id = int(rng.choice(NUM_TASKS, p=weights))
        task = self.families[task_id].generate(split, index)
        return dataclasses.replace(task, uid=f"{self.name}/{split}/{index}", family=self.name)

    def verify(self, task: Task, response: str) -> Verdict:
        """Scores a response with the native metric of the task's capability.

        Args:
            task: a task of this family (its `task_id` picks the capability).
            response: the full response.

        Returns:
            The capability family's verdict (`CapabilityFamily.verify`).
        """
        return self._family(task).verify(task, response)

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """The capability's scripted response.

        Args:
            task: a task of this family.
            rng: randomness for the mistake.
            noise: probability of a mistake, in [0, 1].

        Returns:
            The response of `CapabilityFamily.expert`.
        """
        return self._family(task).expert(task, rng, noise)

    def _family(self, task: Task) -> CapabilityFamily:
        if not isinstance(task.task_id, int) or not 0 <= task.task_id < NUM_TASKS:
            raise ValueError(
                f"task.task_id must be a capability index in [0, {NUM_TASKS}), got {task.task_id!r}"
            )
        return self.families[task.task_id]


def _normalised(field: str, weights: Sequence[float] | None) -> tuple[float, ...]:
    """`weights` checked and normalised to sum 1 (None: uniform); ValueError naming `field`."""
    values = (1.0,) * NUM_TASKS if weights is None else tuple(float(w) for w in weights)
    if (
        len(values) != NUM_TASKS
        or not all(math.isfinite(w) and w >= 0 for w in values)
        or not sum(values)
    ):
        raise ValueError(
            f"{field} must be {NUM_TASKS} finite non-negative numbers, not all zero, in "
            f"the order {CAPABILITY_NAMES}; got {weights!r}"
        )
    # Weights that already sum to 1 are kept: `dataclasses.replace` (e.g. setting `count_tokens`)
    # reruns `__post_init__` on normalised weights, and dividing again shifts them.
    if not math.isclose(sum(values), 1.0, rel_tol=0.0, abs_tol=1e-9):
        values = tuple(w / sum(values) for w in values)
    return values


def per_task_mean_reward(results: Iterable[tuple[Task, Verdict]]) -> dict[int, float]:
    """Mean reward per task id (the per-capability held-out score of golongrl.md 8.3).

    Args:
        results: (task, verdict) pairs.

    Returns:
        task id -> mean reward, for the task ids present, in increasing id order.
    """
    rewards = collections.defaultdict(list)
    for task, verdict in results:
        rewards[task.task_id].append(verdict.reward)
    return {task_id: float(np.mean(rewards[task_id])) for task_id in sorted(rewards)}


def _derived_seed(seed: int, task_id: int) -> int:
    digest = hashlib.sha256(f"longcontext/{seed}/{task_id}".encode()).digest()
    return int.from_bytes(digest[:4], "big")
