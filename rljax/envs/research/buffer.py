"""The evolving judge-side rubric buffer and group scoring (rubric_em.md REM-2 and REM-9).

Per question and stage the buffer holds the active adaptive rubrics, oldest first. Judging the G
rollouts of a question (`judge_group`) runs one REM-9 step:

1. generate: the judge proposes up to `additions[k]` (2, 2, 2, 3) new discriminative rubrics per
   stage, which join the active set (a failed call adds nothing);
2. score: every rollout's stage score R[i, k] = `rubric_stage_score` over persistent (Answer stage)
   plus active rubrics (REM-2); a stage absent from the transcript scores 0 (REM-1); a failed
   scoring call falls back to the answer score, R[i, k] := R[i, 3] (`answer_score_fallback`) with
   R[i, 3] the persistent-only answer score;
3. prune: while a stage holds more than `caps[k]` (3, 2, 2, 3) rubrics, drop the one whose scores
   have the lowest population variance across the rollouts (ties: the oldest).

`update=False` scores against the current buffer without steps 1 and 3 (held-out questions,
single-response `verify`). The final answer reward of a rollout is the persistent-only Answer score.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import jax.numpy as jnp
import numpy as np

from rljax.envs.base import Task
from rljax.envs.research.grammar import Transcript
from rljax.envs.research.judge import NUM_STAGES, Rubric, StageJudge
from rljax.losses.rubric_em import answer_score_fallback, rubric_stage_score

DEFAULT_CAPS = (3, 2, 2, 3)
DEFAULT_ADDITIONS = (2, 2, 2, 3)


@dataclasses.dataclass(frozen=True)
class StageScores:
    """The judgement of one rollout.

    Attributes:
        stage_rewards: K = 4 stage scores in [0, 1] (Plan, Research, Review, Answer).
        reward: the final answer reward: the Answer score over the persistent rubrics only.
        judge_failed: the adaptive scoring call failed and the answer-score fallback was used.
    """

    stage_rewards: tuple[float, ...]
    reward: float
    judge_failed: bool


class RubricBuffer:
    """Active adaptive rubrics per question and stage, with the caps of REM-9.

    Args:
        caps: per-stage cap on active adaptive rubrics (paper (3, 2, 2, 3)).
        additions: per-stage number of rubrics a generate step may add (section 8.1: (2, 2, 2, 3)).
    """

    def __init__(
        self, caps: Sequence[int] = DEFAULT_CAPS, additions: Sequence[int] = DEFAULT_ADDITIONS
    ):
        for name, values in (("caps", caps), ("additions", additions)):
            if len(values) != NUM_STAGES or any(not isinstance(v, int) or v < 0 for v in values):
                raise ValueError(f"{name} must be {NUM_STAGES} non-negative ints, got {values!r}")
        self.caps, self.additions = tuple(caps), tuple(additions)
        self._active: dict[str, list[list[Rubric]]] = {}

    def active(self, question: str) -> list[list[Rubric]]:
        """The active adaptive rubrics of a question.

        Args:
            question: the question text.

        Returns:
            Per stage, the rubrics oldest first (a copy).
        """
        return [
            list(stage) for stage in self._active.get(question, [[] for _ in range(NUM_STAGES)])
        ]

    def judge_group(
        self,
        judge: StageJudge,
        task: Task,
        transcripts: Sequence[Transcript],
        *,
        question: str,
        update: bool,
    ) -> list[StageScores]:
        """Scores the rollouts of one question (see the module docstring), updating the buffer if asked.

        Args:
            judge: the stage judge.
            task: the question's task.
            transcripts: the G rollouts' transcripts.
            question: the buffer key (the question text).
            update: run the generate and prune steps (training questions).

        Returns:
            One `StageScores` per transcript.

        Raises:
            RuntimeError: the judge failed to score the persistent rubrics (no reward exists).
            ValueError: the judge proposed a rubric of the wrong stage, a persistent or an active one.
        """
        active = self.active(question)
        if update:
            proposals = judge.propose(task, transcripts, active, self.additions)
            for stage, new in enumerate(proposals or ()):
                self._check_proposals(stage, new, active)
                active[stage].extend(new)
        persistent = judge.persistent_rubrics(task)
        adaptive = [r for stage in active for r in stage]
        persistent_scores = [judge.score(task, t, persistent) for t in transcripts]
        if any(scores is None for scores in persistent_scores):
            raise RuntimeError(
                f"the judge failed to score the persistent rubrics of {question!r}; "
                "the answer reward cannot be computed"
            )
        adaptive_scores = [judge.score(task, t, adaptive) if adaptive else [] for t in transcripts]
        stage_rewards, rewards = _stage_scores(
            persistent, adaptive, persistent_scores, adaptive_scores, transcripts
        )
        if update:
            self._prune(active, adaptive, adaptive_scores)
            if any(active):
                self._active[question] = active
            else:  # keep the state small: questions without active rubrics are not stored
                self._active.pop(question, None)
        failed = [scores is None for scores in adaptive_scores]
        return [
            StageScores(tuple(float(x) for x in row), float(reward), fail)
            for row, reward, fail in zip(stage_rewards, rewards, failed)
        ]

    def _check_proposals(
        self, stage: int, new: Sequence[Rubric], active: list[list[Rubric]]
    ) -> None:
        keys = {r.key for rubrics in active for r in rubrics}
        for rubric in new:
            if rubric.stage != stage or rubric.persistent or rubric.key in keys:
                raise ValueError(
                    f"proposed rubric {rubric.key!r} for stage {stage} must be a new adaptive "
                    f"rubric of that stage (got stage {rubric.stage}, persistent {rubric.persistent})"
                )
            keys.add(rubric.key)

    def _prune(
        self,
        active: list[list[Rubric]],
        adaptive: list[Rubric],
        adaptive_scores: list[list[int] | None],
    ) -> None:
        if not adaptive:
            return
        scored = np.array([s for s in adaptive_scores if s is not None], float).reshape(
            -1, len(adaptive)
        )
        variance = dict(
            zip(
                (r.key for r in adaptive),
                scored.var(axis=0) if len(scored) else np.zeros(len(adaptive)),
            )
        )
        for stage, rubrics in enumerate(active):
            while len(rubrics) > self.caps[stage]:
                rubrics.pop(
                    int(np.argmin([variance[r.key] for r in rubrics]))
                )  # argmin: first = oldest

    def get_state(self) -> dict:
        """The buffer as JSON-serialisable data.

        Returns:
            {question: [[rubric dict, ...] per stage]}, oldest first.
        """
        return {
            q: [[r.to_json() for r in stage] for stage in stages]
            for q, stages in self._active.items()
        }

    def set_state(self, state: dict) -> None:
        """Replaces the contents with saved data.

        Args:
            state: `get_state`'s data.
        """
        restored = {}
        for question, stages in state.items():
            if len(stages) != NUM_STAGES:
                raise ValueError(
                    f"buffer state of {question!r} must hold {NUM_STAGES} stages, got {len(stages)}"
                )
            restored[question] = [[Rubric.from_json(r) for r in stage] for stage in stages]
        self._active = restored


def _stage_scores(
    persistent: list[Rubric],
    adaptive: list[Rubric],
    persistent_scores: list[list[int]],
    adaptive_scores: list[list[int] | None],
    transcripts: Sequence[Transcript],
) -> tuple[np.ndarray, np.ndarray]:
    """[G, K] stage scores and [G] answer rewards via `rubric_stage_score`, one batched call.

    Row k < K of each rollout's [K + 1, N] rubric table holds stage k's rubrics (the Answer row adds
    the persistent ones); row K holds the persistent rubrics alone (the answer reward).
    """
    rows = [[r for r in adaptive if r.stage == k] for k in range(NUM_STAGES)]
    rows[-1] = persistent + rows[-1]
    rows.append(persistent)
    width = max(1, max(len(row) for row in rows))
    shape = (len(transcripts), NUM_STAGES + 1, width)
    scores, weights = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    negative, mask = np.zeros(shape, bool), np.zeros(shape, bool)
    for i, (p_scores, a_scores) in enumerate(zip(persistent_scores, adaptive_scores)):
        value = {r.key: s for r, s in zip(persistent, p_scores)}
        value.update({r.key: s for r, s in zip(adaptive, a_scores or [0] * len(adaptive))})
        for k, row in enumerate(rows):
            for n, rubric in enumerate(row):
                scores[i, k, n], weights[i, k, n] = value[rubric.key], rubric.weight
                negative[i, k, n], mask[i, k, n] = rubric.negative, True
    table = np.asarray(rubric_stage_score(scores, weights, negative, mask))
    present = np.array(
        [[t.has_stage(k) for k in range(NUM_STAGES)] for t in transcripts], np.float32
    )
    rewards = table[:, NUM_STAGES] * present[:, -1]
    stage = table[:, :NUM_STAGES] * present
    failed = np.array([s is None for s in adaptive_scores])
    stage[failed, -1] = rewards[failed]
    stage = np.asarray(answer_score_fallback(jnp.asarray(stage), jnp.asarray(failed)))
    return stage, rewards
