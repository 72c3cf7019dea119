"""The rollout: P tasks x G samples through a decode session, turn by turn, into `Trajectories`.

One loop serves single-turn and multi-turn families. Each row renders its task's prompt; then, while
any row is active, the session generates one assistant turn per active row (up to the `<|end|>`
token), the row's episode steps on the decoded action, and the rendered observation turn plus the
next generation prompt is appended. A single-turn `TaskFamily` is played as a one-step episode whose
verdict is `family.verify(task, response)`.

A row ends when its episode is done, when it reaches its turn limit, or when it runs out of token
budget (the turn's `max_new_tokens`, or the context budget `max_tokens`, is exhausted before the
end token, or the next observation plus one generated token would not fit). The observation of a
row's last turn is kept in the sequence (without a generation prompt) when it fits and has content
(env text, or any observation at the rollout's turn limit): as in echo.md section 5, its env tokens
still train ECHO's env loss; a done observation with empty text (a final answer) adds nothing.
Rewards:

- done: the episode's verdict;
- turn limit: the episode's verdict so far (`Episode.verdict`); `truncated` is set;
- token budget: `truncation_reward` (default 0, echo.md section 2: "0 if the trajectory hit the
  token budget"); the verifier's reward is kept in `info["verifier_reward"]` and its info (stage
  rewards included) in `info`; `truncated` is set. A cut action is never sent to the environment.

Episodes with a `close()` method (terminal episodes own a sandbox) are closed once judged.

`info[b]` is the verdict's info plus "uid" (the task) and "stop" ("done", "turn_limit" or
"token_budget"); `stage_rewards` stacks `info[b]["stage_rewards"]` when the verdicts carry it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
import transformers

from rljax.data.chat import (
    ChatFormat,
    Rendered,
    Role,
    render_observation,
    render_prompt,
    resolve_format,
    stop_token_ids,
)
from rljax.envs.base import (
    ClosableEpisode,
    Episode,
    MultiTurnFamily,
    Observation,
    Task,
    TaskFamily,
    Verdict,
)
from rljax.envs.reward import call_reward
from rljax.envs.stages import StageScheme
from rljax.rollout.batch import RowRecord, pack_rows
from rljax.rollout.session import DecodeSessionProtocol
from rljax.rollout.types import Trajectories
from rljax.sampling.session import Generation


class SingleTurnEpisode:
    """A single-turn task played as an episode: one action, then `family.verify`."""

    def __init__(self, family: TaskFamily, task: Task):
        self._family, self._task, self._response = family, task, ""

    def step(self, action: str) -> Observation:
        self._response = action
        return Observation(text="", done=True)

    def verdict(self) -> Verdict:
        return call_reward(self._family.verify, self._task, self._response)


def _episode_verdict(task: Task, episode: Episode) -> Verdict:
    """The episode's verdict (for `call_reward`, which names `task` if it raises)."""
    del task
    return episode.verdict()


def start_episode(family: TaskFamily, task: Task) -> Episode:
    """Starts `task` as an episode: `family.start` for multi-turn families, else a `SingleTurnEpisode`."""
    return (
        family.start(task)
        if isinstance(family, MultiTurnFamily)
        else SingleTurnEpisode(family, task)
    )


@dataclasses.dataclass
class _Row:
    """A row being rolled out: its growing token record and its episode."""

    task: Task
    episode: Episode
    turn_limit: int
    tokens: list[int]
    roles: list[int]
    logprobs: list[float]
    turns: int = 0
    stop: str | None = None

    @property
    def active(self) -> bool:
        return self.stop is None

    def add(self, rendered: Rendered) -> None:
        self.tokens.extend(rendered.tokens.tolist())
        self.roles.extend(rendered.roles.tolist())
        self.logprobs.extend([0.0] * len(rendered))

    def add_generation(self, generation: Generation) -> None:
        self.tokens.extend(generation.tokens)
        self.roles.extend([int(Role.ACTION)] * len(generation.tokens))
        self.logprobs.extend(generation.logprobs)


def _per_row(value: int | Sequence[int], batch: int, name: str) -> list[int]:
    values = [value] * batch if isinstance(value, (int, np.integer)) else list(value)
    if len(values) != batch:
        raise ValueError(
            f"{name} must be an int or have one entry per row ({batch}), got {len(values)} entries"
        )
    if min(values) < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")
    return [int(v) for v in values]


def rollout(
    session: DecodeSessionProtocol,
    family: TaskFamily,
    tasks: Sequence[Task],
    tokenizer: transformers.PreTrainedTokenizerFast,
    *,
    max_tokens: int,
    group_size: int = 1,
    max_turns: int | Sequence[int] = 1,
    max_new_tokens: int | None = None,
    fmt: ChatFormat | None = None,
    stage_scheme: StageScheme | None = None,
    truncation_reward: float = 0.0,
    pad_multiple: int = 64,
) -> Trajectories:
    """Rolls out `group_size` samples of every task through `session` (see the module docstring).

    Args:
        session: the policy; `max_tokens` must not exceed its context capacity.
        family: the task family (multi-turn when it implements `MultiTurnFamily`).
        tasks: the P tasks; row b = p * group_size + g plays `tasks[p]`.
        tokenizer: the tokenizer the session's model uses.
        max_tokens: context budget of each row (prompt + actions + observations).
        group_size: G samples per task.
        max_turns: assistant turns per row, an int or one per row [B].
        max_new_tokens: generated tokens per turn (None: only the context budget limits a turn).
        fmt: chat format (None: the tokenizer's chat template, or the built-in glue without one;
            `rljax.data.chat.resolve_format`). A turn stops at its end marker or the tokenizer's eos.
        stage_scheme: stage tags for `stage_ids` (None: -1 everywhere).
        truncation_reward: reward of a row that ran out of token budget.
        pad_multiple: the padded length T is a power of two or a multiple of this
            (`batch.rollout_width`).

    Returns:
        `Trajectories` with B = P * G rows.

    Raises:
        ValueError: bad sizes, or a prompt that leaves no room to generate under `max_tokens`.
        RuntimeError: the session's contexts disagree with the rollout's record of them.
    """
    if not tasks:
        raise ValueError("tasks must be non-empty")
    if group_size < 1:
        raise ValueError(f"group_size must be >= 1, got {group_size}")
    if max_tokens < 2:
        raise ValueError(f"max_tokens must be >= 2, got {max_tokens}")
    if max_new_tokens is not None and max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be >= 1 or None, got {max_new_tokens}")
    if tokenizer.pad_token_id is None:
        raise ValueError("tokenizer has no pad token; set tokenizer.pad_token before rolling out")
    row_tasks = [task for task in tasks for _ in range(group_size)]
    limits = _per_row(max_turns, len(row_tasks), "max_turns")
    fmt = resolve_format(tokenizer, fmt)
    stop_ids = stop_token_ids(tokenizer, fmt)
    rows = [
        _Row(task, start_episode(family, task), limit, [], [], [])
        for task, limit in zip(row_tasks, limits)
    ]
    for row in rows:
        row.add(render_prompt(tokenizer, row.task.prompt, row.task.system, fmt=fmt))
        if not 0 < len(row.tokens) < max_tokens:
            raise ValueError(
                f"prompt of task {row.task.uid!r} renders to {len(row.tokens)} tokens; it must be non-empty "
                f"and leave room to generate under max_tokens={max_tokens}"
            )
    session.prefill([list(row.tokens) for row in rows])
    per_turn = max_tokens if max_new_tokens is None else max_new_tokens
    while session.any_active([row.active for row in rows]):
        generations = session.generate(
            max_new_tokens=[
                min(per_turn, max_tokens - len(row.tokens)) if row.active else 0 for row in rows
            ],
            stop_tokens=[stop_ids] * len(rows),
            active=[row.active for row in rows],
        )
        chunks = [
            _advance(row, generation, tokenizer, stop_ids, max_tokens, fmt) if row.active else []
            for row, generation in zip(rows, generations)
        ]
        session.append(chunks)
        _check_lengths(rows, session.lengths)
    records = [_finish(row, b // group_size, truncation_reward) for b, row in enumerate(rows)]
    return pack_rows(
        records,
        tokenizer,
        pad_id=tokenizer.pad_token_id,
        pad_multiple=pad_multiple,
        stage_scheme=stage_scheme,
    )


def _advance(
    row: _Row,
    generation: Generation,
    tokenizer: transformers.PreTrainedTokenizerFast,
    stop_ids: frozenset[int],
    max_tokens: int,
    fmt: ChatFormat,
) -> list[int]:
    """Records one generated turn, steps the episode, and returns the tokens to append to the session."""
    if len(generation.tokens) != len(generation.logprobs):
        raise RuntimeError(
            f"session returned {len(generation.tokens)} tokens but {len(generation.logprobs)} logprobs"
        )
    if generation.stopped and (not generation.tokens or generation.tokens[-1] not in stop_ids):
        raise RuntimeError(
            f"session reported a stop but the turn does not end with a stop token: {generation.tokens}"
        )
    row.add_generation(generation)
    row.turns += 1
    if not generation.stopped:
        row.stop = "token_budget"
        return []
    observation = row.episode.step(
        tokenizer.decode(
            generation.tokens[:-1], skip_special_tokens=False, clean_up_tokenization_spaces=False
        )
    )
    if observation.done or row.turns >= row.turn_limit:
        row.stop = "done" if observation.done else "turn_limit"
        if observation.text or not observation.done:
            rendered = render_observation(
                tokenizer, observation.text, observation.warning, fmt=fmt, generation_prompt=False
            )
            if len(row.tokens) + len(rendered) <= max_tokens:
                row.add(rendered)
        return []
    rendered = render_observation(tokenizer, observation.text, observation.warning, fmt=fmt)
    if len(row.tokens) + len(rendered) + 1 > max_tokens:
        row.stop = "token_budget"
        return []
    row.add(rendered)
    return rendered.tokens.tolist()


def _check_lengths(rows: Sequence[_Row], lengths: Sequence[int]) -> None:
    for b, row in enumerate(rows):
        if row.active and lengths[b] != len(row.tokens):
            raise RuntimeError(
                f"session row {b} holds {lengths[b]} tokens, the rollout recorded {len(row.tokens)}"
            )


def _finish(row: _Row, group_id: int, truncation_reward: float) -> RowRecord:
    verdict = call_reward(_episode_verdict, row.task, row.episode)
    if isinstance(row.episode, ClosableEpisode):  # e.g. a terminal episode's sandbox
        row.episode.close()
    info = {**verdict.info, "uid": row.task.uid, "stop": row.stop}
    reward = verdict.reward
    if row.stop == "token_budget":
        info["verifier_reward"] = verdict.reward
        reward = truncation_reward
    stage_rewards = verdict.info.get("stage_rewards")
    return RowRecord(
        tokens=np.asarray(row.tokens, np.int32),
        roles=np.asarray(row.roles, np.int8),
        logprobs=np.asarray(row.logprobs, np.float32),
        reward=float(reward),
        group_id=group_id,
        task_id=row.task.task_id,
        num_turns=row.turns,
        truncated=row.stop != "done",
        stage_rewards=None
        if stage_rewards is None
        else np.asarray(stage_rewards, np.float32).reshape(-1),
        info=info,
    )
