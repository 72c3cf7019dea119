"""Stage rubrics and the rule-based MiniResearch judge (rubric_em.md REM-2, REM-9, section 8.1).

A `Rubric` is one criterion of one stage with a weight (1 minor, 2 important, 3 critical) and a
polarity; a judge scores it 0/1/2 on a transcript (negative rubrics: 2 = the flaw is fully
exhibited). `StageJudge` is the interface the rubric buffer talks to, so an LLM judge can replace
`ProgrammaticJudge` without touching the buffer, the episode or the family.

`ProgrammaticJudge` implements the predicates of section 8.1, instantiated per gold fact f where
marked. Persistent (the question's ground truth, Answer stage, never pruned): + FACT for f (2: right
value citing f's opened reliable document; 1: right value, other citation), + comparison/filter
result, - rumor value used, - excluded entity selected. Adaptive (proposed by across-rollout
variance, REM-9): the Plan, Research, Review predicates and the two adaptive Answer predicates.
The rollouts' own `[NEED e a]` items are inspected by the Plan predicates, never used as the standard.

Library choices where section 8.1 is silent: "- more than 6 calls" becomes "more than
max(6, 2 x facts)" (a 4-entity FILTER needs a search and an open per document, 8 calls, and the
spec's noiseless expert must not be penalised); "+ AVOID blog" is instantiated when any entity of
the question has a rumor about any attribute (as written); "- rumor value used" only when a gold
fact has a rumor; "- excluded entity selected" for FILTER questions; a CMP item may name the pair
in either order (with the symbol flipped); the first MAP/FACT item of a fact is the one judged.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from rljax.envs.base import Task
from rljax.envs.research.corpus import Corpus, Fact
from rljax.envs.research.grammar import Transcript
from rljax.envs.research.queries import Query, gold_result

NUM_STAGES = 4
STAGE_NAMES = ("plan", "research", "review", "answer")
_FLIP = {">": "<", "<": ">", "=": "="}


@dataclasses.dataclass(frozen=True)
class Rubric:
    """One stage criterion (rubric_em.md REM-2).

    Attributes:
        key: identifier, unique within a question (e.g. "research/opened/E03/size").
        stage: 0 Plan, 1 Research, 2 Review, 3 Answer.
        weight: 1 minor, 2 important, 3 critical.
        negative: True when a score of 2 means the flaw is fully exhibited.
        text: the criterion in words (what an LLM judge would read).
        persistent: ground truth shipped with the question (Answer stage only; never pruned).
    """

    key: str
    stage: int
    weight: int
    negative: bool
    text: str
    persistent: bool = False

    def __post_init__(self):
        if self.stage not in range(NUM_STAGES) or self.weight not in (1, 2, 3):
            raise ValueError(
                f"rubric {self.key!r}: stage must be in 0..3 and weight in (1, 2, 3), "
                f"got stage {self.stage!r}, weight {self.weight!r}"
            )
        if self.persistent and self.stage != NUM_STAGES - 1:
            raise ValueError(
                f"rubric {self.key!r}: persistent rubrics belong to the Answer stage (3), "
                f"got {self.stage}"
            )

    def to_json(self) -> dict:
        """A JSON-serialisable form of the rubric.

        Returns:
            The fields as a dict; `from_json` inverts it.
        """
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: dict) -> Rubric:
        """Rebuilds a rubric.

        Args:
            data: `to_json`'s dict.

        Returns:
            The rubric.
        """
        return cls(**data)


@runtime_checkable
class StageJudge(Protocol):
    """The judge interface of the rubric buffer (rubric_em.md REM-9): propose rubrics, score them."""

    def persistent_rubrics(self, task: Task) -> list[Rubric]:
        """The question's ground-truth Answer rubrics (they define the final answer reward).

        Args:
            task: the question's task.

        Returns:
            Persistent Answer-stage rubrics.
        """

    def propose(
        self,
        task: Task,
        transcripts: Sequence[Transcript],
        active: Sequence[Sequence[Rubric]],
        limits: Sequence[int],
    ) -> list[list[Rubric]] | None:
        """REM-9 step 1: new discriminative rubrics per stage from contrasting the rollouts.

        Args:
            task: the question's task.
            transcripts: the G rollouts.
            active: per stage, the rubrics already active.
            limits: per stage, the most rubrics to propose.

        Returns:
            Per stage, at most `limits[k]` new adaptive rubrics of that stage, none in `active`;
            None when the call failed (adds nothing).
        """

    def score(
        self, task: Task, transcript: Transcript, rubrics: Sequence[Rubric]
    ) -> list[int] | None:
        """REM-2's judge scores of one rollout.

        Args:
            task: the question's task.
            transcript: the rollout.
            rubrics: the rubrics to score.

        Returns:
            s_r in {0, 1, 2}, one per rubric (negative rubrics: 2 = flaw fully exhibited); None
            when the call failed.
        """


@dataclasses.dataclass(frozen=True)
class _Context:
    """What the programmatic judge knows about a question."""

    query: Query
    facts: list[Fact]
    values: dict[Fact, str]
    reliable: dict[Fact, str]
    rumors: dict[Fact, str]
    rumor_values: dict[Fact, str]
    result: str | list[str] | None


Predicate = Callable[[_Context, Transcript, "Fact | None"], int]


def _graded(fraction: float | None, *, half: bool = False) -> int:
    """2 if all, 1 if some (or >= half when `half`), 0 otherwise (None: nothing to grade)."""
    if fraction is None or fraction <= 0.0:
        return 0
    if fraction >= 1.0:
        return 2
    return 1 if (fraction >= 0.5 or not half) else 0


def _count(n: int) -> int:
    """2 if n >= 2, 1 if n == 1, 0 otherwise."""
    return min(n, 2)


def _retrieved(ctx: _Context, opened: set[str] | frozenset[str]) -> list[Fact]:
    return [f for f in ctx.facts if ctx.reliable[f] in opened]


def _first(items, fact: Fact):
    return next((item for item in items if tuple(item[:2]) == fact), None)


def _duplicate_calls(transcript: Transcript) -> int:
    """Calls that repeat an earlier identical call."""
    calls = [record.call for record in transcript.calls]
    return len(calls) - len(set(calls))


def _need(ctx, t, f):
    return 2 * (t.plan is not None and f in t.plan.needs)


def _avoid_blog(ctx, t, f):
    return 2 * (t.plan is not None and t.plan.avoid_blog)


def _rplan_covers(ctx, t, f):
    if t.plan is None:
        return 0
    needs = set(t.plan.needs)
    return _graded(len(needs & set(t.plan.searches)) / len(needs) if needs else None, half=True)


def _irrelevant_need(ctx, t, f):
    return _count(len(set(t.plan.needs) - set(ctx.facts))) if t.plan else 0


def _searched(ctx, t, f):
    return 2 * any(r.call.tool == "search" and r.call.args == f for r in t.calls)


def _opened(ctx, t, f):
    return 2 * (ctx.reliable[f] in t.opened)


def _rumor_opened(ctx, t, f):
    return 2 * (ctx.rumors[f] in t.opened and ctx.reliable[f] in t.shown)


def _duplicate(ctx, t, f):
    return _count(_duplicate_calls(t))


def _premature_done(ctx: _Context, t: Transcript) -> bool:
    """A `<state>` said DONE while a gold fact was not yet retrieved (its reliable document unopened)."""
    return any(
        s.state.status == "DONE" and len(_retrieved(ctx, s.opened)) < len(ctx.facts)
        for s in t.states
    )


def _premature(ctx, t, f):
    return 2 * _premature_done(ctx, t)


def _too_many_calls(ctx, t, f):
    return 2 * (len(t.calls) > max(6, 2 * len(ctx.facts)))


def _map(ctx, t, f):
    item = _first(t.review.maps, f) if t.review else None
    if item is None or item[2] not in t.opened:
        return 0
    return 2 if item[2] == ctx.reliable[f] else 1 if item[2] == ctx.rumors.get(f) else 0


def _map_unopened(ctx, t, f):
    return 2 * any(doc not in t.opened for _, _, doc in (t.review.maps if t.review else ()))


def _gap_missing(ctx, t, f):
    retrieved, gaps = set(_retrieved(ctx, t.opened)), set(t.review.gaps) if t.review else set()
    return 2 * any(fact not in retrieved and fact not in gaps for fact in ctx.facts)


def _cites_opened(ctx, t, f):
    facts = t.answer.facts if t.answer else ()
    return _graded(sum(doc in t.opened for *_, doc in facts) / len(facts) if facts else None)


def _map_consistent(ctx, t, f):
    facts, maps = (t.answer.facts if t.answer else ()), (t.review.maps if t.review else ())
    consistent = sum(any(m == (e, a, doc) for m in maps) for e, a, _, doc in facts)
    return _graded(consistent / len(facts) if facts else None)


def _fact(ctx, t, f):
    item = _first(t.answer.facts, f) if t.answer else None
    if item is None or item[2] != ctx.values[f]:
        return 0
    return 2 if item[3] == ctx.reliable[f] and item[3] in t.opened else 1


def _result(ctx, t, f):
    if t.answer is None:
        return 0
    if ctx.query.kind == "filter":
        return 2 * (set(t.answer.selected) == set(ctx.result))
    first, second = ctx.query.entities
    for x, y, op in t.answer.comparisons:
        if (x, y) in ((first, second), (second, first)):
            return 2 * ((op if (x, y) == (first, second) else _FLIP[op]) == ctx.result)
    return 0


def _rumor_used(ctx: _Context, t: Transcript) -> bool:
    """An answer FACT states a gold fact's rumor value."""
    facts = t.answer.facts if t.answer else ()
    return any(ctx.rumor_values.get((e, a)) == v for e, a, v, _ in facts)


def _rumor_value(ctx, t, f):
    return 2 * _rumor_used(ctx, t)


def _excluded(ctx, t, f):
    return 2 * any(e not in ctx.result for e in (t.answer.selected if t.answer else ()))


# name -> (stage, weight, negative, persistent, per-fact, predicate, text template)
_PREDICATES: dict[str, tuple[int, int, bool, bool, bool, Predicate, str]] = {
    "need": (0, 2, False, False, True, _need, "the plan's rubric lists the needed fact {f}"),
    "avoid_blog": (0, 2, False, False, False, _avoid_blog, "the plan says to avoid blog sources"),
    "rplan_covers": (
        0,
        1,
        False,
        False,
        False,
        _rplan_covers,
        "the research plan searches every NEED item",
    ),
    "irrelevant_need": (
        0,
        1,
        True,
        False,
        False,
        _irrelevant_need,
        "the plan lists facts the question does not need",
    ),
    "searched": (1, 2, False, False, True, _searched, "the agent searched for {f}"),
    "opened": (1, 2, False, False, True, _opened, "the agent opened the reliable document for {f}"),
    "rumor_opened": (
        1,
        1,
        True,
        False,
        True,
        _rumor_opened,
        "the agent opened the rumor for {f} although the reliable document was in its results",
    ),
    "duplicate_call": (1, 1, True, False, False, _duplicate, "the agent repeated a tool call"),
    "premature_done": (
        1,
        3,
        True,
        False,
        False,
        _premature,
        "the agent declared DONE before retrieving every fact",
    ),
    "too_many_calls": (
        1,
        1,
        True,
        False,
        False,
        _too_many_calls,
        "the agent used more calls than needed",
    ),
    "map": (2, 2, False, False, True, _map, "the review maps {f} to the opened reliable document"),
    "map_unopened": (
        2,
        3,
        True,
        False,
        False,
        _map_unopened,
        "the review cites a document that was never opened",
    ),
    "gap_missing": (
        2,
        1,
        True,
        False,
        False,
        _gap_missing,
        "the review hides an unretrieved fact (no GAP item)",
    ),
    "cites_opened": (
        3,
        1,
        False,
        False,
        False,
        _cites_opened,
        "the answer cites only opened documents",
    ),
    "map_consistent": (
        3,
        1,
        False,
        False,
        False,
        _map_consistent,
        "the answer agrees with the review's MAP items",
    ),
    "fact": (
        3,
        2,
        False,
        True,
        True,
        _fact,
        "the answer states the true value of {f} citing its reliable document",
    ),
    "result": (3, 2, False, True, False, _result, "the comparison or selection is correct"),
    "rumor_value": (3, 3, True, True, False, _rumor_value, "the answer uses a rumor's value"),
    "excluded": (
        3,
        2,
        True,
        True,
        False,
        _excluded,
        "the answer selects an entity that does not qualify",
    ),
}


class ProgrammaticJudge:
    """The rule-based stagewise judge of rubric_em.md section 8.1 (a `StageJudge`).

    Args:
        corpus: the world whose documents and values define the ground truth.
    """

    def __init__(self, corpus: Corpus):
        self.corpus = corpus

    def context(self, task: Task) -> _Context:
        """The ground truth of a question.

        Args:
            task: a MiniResearch task (its `meta["query"]`).

        Returns:
            The question, its gold facts, values, reliable and rumor documents and gold result.
        """
        query = Query.from_meta(task.meta["query"])
        facts = query.facts()
        rumors = {f: self.corpus.rumors[f] for f in facts if f in self.corpus.rumors}
        return _Context(
            query,
            facts,
            {f: self.corpus.values[f] for f in facts},
            {f: self.corpus.reliable[f] for f in facts},
            rumors,
            {f: self.corpus.rumor_value(f) for f in rumors},
            gold_result(query, self.corpus.values),
        )

    def rubrics(self, task: Task) -> list[Rubric]:
        """Every predicate of section 8.1 instantiated for a question.

        Args:
            task: a MiniResearch task.

        Returns:
            Persistent and adaptive rubrics, in predicate order (per-fact ones in question order).
        """
        ctx = self.context(task)
        entity_has_rumor = any(e in ctx.query.entities for e, _ in self.corpus.rumors)
        out = []
        for name, (stage, weight, negative, persistent, per_fact, _, text) in _PREDICATES.items():
            if (
                (name == "avoid_blog" and not entity_has_rumor)
                or (name == "rumor_value" and not ctx.rumors)
                or (name == "result" and ctx.query.kind == "lookup")
                or (name == "excluded" and ctx.query.kind != "filter")
            ):
                continue
            facts = (
                [f for f in ctx.facts if name != "rumor_opened" or f in ctx.rumors]
                if per_fact
                else [None]
            )
            for f in facts:
                key = f"{STAGE_NAMES[stage]}/{name}" + ("" if f is None else f"/{f[0]}/{f[1]}")
                label = "" if f is None else f"{f[0]} {f[1]}"
                out.append(Rubric(key, stage, weight, negative, text.format(f=label), persistent))
        return out

    def persistent_rubrics(self, task: Task) -> list[Rubric]:
        """The Answer-stage ground truth.

        Args:
            task: a MiniResearch task.

        Returns:
            The per-fact, result, rumor-value and excluded-entity rubrics that apply.
        """
        return [r for r in self.rubrics(task) if r.persistent]

    def propose(
        self,
        task: Task,
        transcripts: Sequence[Transcript],
        active: Sequence[Sequence[Rubric]],
        limits: Sequence[int],
    ) -> list[list[Rubric]]:
        """Section 8.1's generate step: the most discriminative predicates not yet active.

        Args:
            task: a MiniResearch task.
            transcripts: the G rollouts.
            active: per stage, the active rubrics.
            limits: per stage, the most rubrics to add.

        Returns:
            Per stage, up to `limits[k]` adaptive rubrics with the highest positive population
            variance of their scores across the rollouts (ties: predicate order).
        """
        taken = {r.key for stage in active for r in stage}
        candidates = [r for r in self.rubrics(task) if not r.persistent and r.key not in taken]
        out: list[list[Rubric]] = [[] for _ in range(NUM_STAGES)]
        if not candidates or not transcripts:
            return out
        ctx = self.context(task)
        scores = np.array([self._evaluate(ctx, t, candidates) for t in transcripts], float)
        variance = scores.var(axis=0)
        for i in sorted(range(len(candidates)), key=lambda i: -variance[i]):
            stage = candidates[i].stage
            if variance[i] > 0 and len(out[stage]) < limits[stage]:
                out[stage].append(candidates[i])
        return out

    def score(self, task: Task, transcript: Transcript, rubrics: Sequence[Rubric]) -> list[int]:
        """Scores each rubric 0/1/2 on the transcript (section 8.1's predicates).

        Args:
            task: a MiniResearch task.
            transcript: the rollout.
            rubrics: rubrics of this judge (keys from `rubrics`).

        Returns:
            One score per rubric.

        Raises:
            ValueError: a rubric key that is not one of this judge's predicates.
        """
        return self._evaluate(self.context(task), transcript, rubrics)

    def _evaluate(
        self, ctx: _Context, transcript: Transcript, rubrics: Sequence[Rubric]
    ) -> list[int]:
        out = []
        for rubric in rubrics:
            parts = rubric.key.split("/")
            if len(parts) not in (2, 4) or parts[1] not in _PREDICATES:
                raise ValueError(
                    f"rubric key {rubric.key!r} is not a ProgrammaticJudge predicate "
                    f"(expected 'stage/name' or 'stage/name/E/attr', name in {sorted(_PREDICATES)})"
                )
            fact = (parts[2], parts[3]) if len(parts) == 4 else None
            out.append(int(_PREDICATES[parts[1]][5](ctx, transcript, fact)))
        return out

    def failures(self, task: Task, transcript: Transcript) -> list[str]:
        """The true failure set a reflection should diagnose (section 8.1's reflection judge).

        Args:
            task: a MiniResearch task.
            transcript: the rollout.

        Returns:
            Sorted items: "REQ e a" for each gold fact not answered with its true value, "PITFALL
            blog" (a rumor value used or a rumor cited), "PITFALL dup" (a repeated call), "PITFALL
            premature" (DONE before every fact was retrieved), "PITFALL dishonest" (a MAP citing an
            unopened document).
        """
        ctx = self.context(task)
        answered = (
            {(e, a): v for e, a, v, _ in reversed(transcript.answer.facts)}
            if transcript.answer
            else {}
        )
        items = [f"REQ {e} {a}" for e, a in ctx.facts if answered.get((e, a)) != ctx.values[(e, a)]]
        cited = {doc for *_, doc in transcript.answer.facts} if transcript.answer else set()
        if _rumor_used(ctx, transcript) or cited & set(ctx.rumors.values()):
            items.append("PITFALL blog")
        if _duplicate_calls(transcript):
            items.append("PITFALL dup")
        if _premature_done(ctx, transcript):
            items.append("PITFALL premature")
        if _map_unopened(ctx, transcript, None):
            items.append("PITFALL dishonest")
        return sorted(items)

    def process_metrics(self, task: Task, transcript: Transcript) -> dict:
        """Section 8.3's process metrics of one episode.

        Args:
            task: a MiniResearch task.
            transcript: the rollout.

        Returns:
            {"fact_recall": share of gold facts retrieved, "rumor_used": bool, "duplicate_calls":
            int, "premature_done": bool, "dishonest_map": bool, "calls": int}.
        """
        ctx = self.context(task)
        return {
            "fact_recall": len(_retrieved(ctx, transcript.opened)) / len(ctx.facts),
            "rumor_used": _rumor_used(ctx, transcript),
            "duplicate_calls": _duplicate_calls(transcript),
            "premature_done": _premature_done(ctx, transcript),
            "dishonest_map": bool(_map_unopened(ctx, transcript, None)),
            "calls": len(transcript.calls),
        }
