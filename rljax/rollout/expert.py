"""Expert demonstrations as `Trajectories`, for SFT warm starts."""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
import transformers

from rljax.data.chat import ChatFormat
from rljax.envs.base import MultiTurnFamily, Task, TaskFamily
from rljax.envs.stages import StageScheme
from rljax.rollout.agent import rollout
from rljax.rollout.session import ScriptedSession
from rljax.rollout.types import Trajectories


def expert_actions(
    family: TaskFamily, task: Task, rng: np.random.Generator, noise: float = 0.0
) -> list[str]:
    """The family's scripted expert as one action text per assistant turn.

    Args:
        family: a task family; multi-turn families give `expert_actions`, others one `expert` response.
        task: the task to demonstrate.
        rng: the expert's randomness.
        noise: probability-like rate of scripted mistakes.

    Returns:
        The action texts, in turn order.
    """
    if isinstance(family, MultiTurnFamily):
        return list(family.expert_actions(task, rng, noise))
    return [family.expert(task, rng, noise)]


def expert_trajectories(
    family: TaskFamily,
    tasks: Sequence[Task],
    tokenizer: transformers.PreTrainedTokenizerFast,
    rng: np.random.Generator,
    noise: float = 0.0,
    *,
    max_tokens: int | None = None,
    fmt: ChatFormat | None = None,
    stage_scheme: StageScheme | None = None,
    pad_multiple: int = 64,
) -> Trajectories:
    """Plays the family's scripted expert on every task and returns the demonstrations.

    The expert's actions are replayed by a `ScriptedSession` through `rollout`, so a demonstration
    is token for token what a policy emitting the same actions would produce: `action_mask` marks the
    SFT loss tokens (action texts and their end tokens), observations come from the real episodes,
    `sampler_logprobs` are 0 and `rewards` are the verifier's. Row p demonstrates `tasks[p]`
    (G = 1); a row's turn limit is its number of expert actions.

    Args:
        family: the task family.
        tasks: the P tasks to demonstrate.
        tokenizer: the tokenizer of the model to train.
        rng: the expert's randomness (consumed task by task, in order).
        noise: the expert's mistake rate.
        max_tokens: context budget of each row (None: unlimited).
        fmt: chat format (None: the tokenizer's).
        stage_scheme: stage tags for `stage_ids` (None: -1 everywhere).
        pad_multiple: the padded length T is a multiple of this.

    Returns:
        `Trajectories` with B = P rows.
    """
    actions = [expert_actions(family, task, rng, noise) for task in tasks]
    budget = sys.maxsize if max_tokens is None else max_tokens
    session = ScriptedSession(tokenizer, actions, max_len=budget, fmt=fmt)
    return rollout(
        session,
        family,
        tasks,
        tokenizer,
        max_tokens=budget,
        max_turns=[len(a) for a in actions],
        fmt=fmt,
        stage_scheme=stage_scheme,
        pad_multiple=pad_multiple,
    )
