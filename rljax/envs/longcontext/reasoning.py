"""Reasoning-type long-context families: comprehension, numbers, ranking, ordering, summaries.

golongrl.md section 8.2 rows 2, 4, 7, 8 and 9 (task ids 1, 3, 6, 7, 8); metrics from section 8.1
via `rljax.envs.metrics`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np

from rljax.envs import metrics
from rljax.envs.base import Task
from rljax.envs.longcontext import records
from rljax.envs.longcontext.base import (
    CapabilityFamily,
    Draft,
    answer_text,
    draw_count,
    other_value,
)
from rljax.envs.longcontext.context import Unit

LETTERS = ("A", "B", "C", "D")


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def _swap_adjacent(rng: np.random.Generator, items: list[str]) -> list[str]:
    i = int(rng.integers(len(items) - 1))
    return items[:i] + [items[i + 1], items[i]] + items[i + 2 :]


@dataclasses.dataclass(frozen=True)
class ComprehensionFamily(CapabilityFamily):
    """Comprehension (task id 1, accuracy): who holds item Ix after a story of transfers?

    The story opens with `Ea has Ix ;` for the asked item and 1-2 other items, then 6-12 transfers
    `Ea gives Ix to Eb ;` of the asked item (and 2-4 of each other item) among a cast of four
    entities, interleaved; the story keeps its order in the context. The four options are the
    final holder and three entities that held Ix before (always the one before last). The expert
    thinks the last transfer of Ix, then answers its letter.
    """

    name: str = "longcontext/comprehension"
    task_id: ClassVar[int] = 1
    metric: ClassVar[str] = "accuracy"
    cast_size: ClassVar[int] = 4
    transfers: ClassVar[tuple[int, int]] = (6, 12)
    other_transfers: ClassVar[tuple[int, int]] = (2, 4)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        cast = [pool.take() for _ in range(self.cast_size)]
        items = records.IdPool("I", 2, rng)
        asked = items.take()
        stories = {
            asked: self._holders(rng, cast, draw_count(rng, *self.transfers), visit_all=True)
        }
        for _ in range(draw_count(rng, 1, 2)):
            stories[items.take()] = self._holders(rng, cast, draw_count(rng, *self.other_transfers))
        lines = [f"{holders[0]} has {item} ;" for item, holders in stories.items()]
        step = {item: 1 for item in stories}
        while any(step[item] < len(holders) for item, holders in stories.items()):
            item = _pick(rng, [i for i, h in stories.items() if step[i] < len(h)])
            holders = stories[item]
            lines.append(f"{holders[step[item] - 1]} gives {item} to {holders[step[item]]} ;")
            step[item] += 1
        holders = stories[asked]
        final, previous = holders[-1], holders[-2]
        others = [e for e in cast if e not in (final, previous)]
        chosen = [final, previous] + [
            others[int(i)] for i in rng.choice(len(others), 2, replace=False)
        ]
        options = [chosen[int(i)] for i in rng.permutation(4)]
        listing = " ".join(f"{letter} {entity}" for letter, entity in zip(LETTERS, options))
        return Draft(
            units=tuple(Unit(line, ordered=True) for line in lines),
            question=f"who holds {asked} at the end ? {listing}",
            answer=LETTERS[options.index(final)],
            thinking=f"{previous} gives {asked} to {final} ;",
            entities=tuple(cast),
            meta={
                "item": asked,
                "options": dict(zip(LETTERS, options)),
                "previous": LETTERS[options.index(previous)],
            },
        )

    @staticmethod
    def _holders(
        rng: np.random.Generator, cast: list[str], transfers: int, *, visit_all: bool = False
    ) -> list[str]:
        while True:
            holders = [_pick(rng, cast)]
            for _ in range(transfers):
                holders.append(_pick(rng, [e for e in cast if e != holders[-1]]))
            if not visit_all or len(set(holders)) == len(cast):
                return holders

    def score(self, content: str, answer: Any) -> float:
        """Accuracy: the first answer line is the gold letter (golongrl.md 8.1)."""
        return metrics.mcq_accuracy(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """The holder before the last transfer (a missed transfer), or another option."""
        if rng.random() < 0.5:
            return task.meta["previous"]
        return _pick(rng, [letter for letter in LETTERS if letter != task.answer])


@dataclasses.dataclass(frozen=True)
class NumericalReasoningFamily(CapabilityFamily):
    """Numerical reasoning (task id 3, numeric EM): a total score or a year difference.

    Half the tasks ask "total score of entities with city = c" (2-5 entities), half "year of Ea
    minus year of Eb" (may be negative). The expert thinks the terms (`42 + 17 + 55`,
    `1987 - 1950`), then answers the result.
    """

    name: str = "longcontext/numerical_reasoning"
    task_id: ClassVar[int] = 3
    metric: ClassVar[str] = "numeric_exact_match"
    terms: ClassVar[tuple[int, int]] = (2, 5)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        if rng.random() < 0.5:
            city = _pick(rng, list(records.CITIES))
            found = [
                records.random_record(rng, pool.take(), fixed={"city": city})
                for _ in range(draw_count(rng, *self.terms))
            ]
            terms = [int(r.score) for r in found]
            question, answer, avoid = (
                f"total score of entities with city = {city}",
                sum(terms),
                {"city": {city}},
            )
            kind = "total_score"
        else:
            found = [records.random_record(rng, pool.take()) for _ in range(2)]
            terms = [int(r.year) for r in found]
            question = f"year of {found[0].entity} minus year of {found[1].entity}"
            answer, avoid, kind = terms[0] - terms[1], {}, "year_difference"
        return Draft(
            units=tuple(Unit(r.render()) for r in found),
            question=question,
            answer=answer,
            thinking=(" + " if kind == "total_score" else " - ").join(str(t) for t in terms),
            entities=tuple(r.entity for r in found),
            avoid=avoid,
            meta={"kind": kind, "terms": terms},
        )

    def score(self, content: str, answer: Any) -> float:
        """Numeric EM of the first answer line against the gold integer (golongrl.md 8.1)."""
        return metrics.numeric_exact_match(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """A total without one term, or a difference taken the wrong way round / off by one."""
        answer = task.answer
        if task.meta["kind"] == "total_score":
            return str(answer - _pick(rng, task.meta["terms"]))
        return str(_pick(rng, ([-answer] if answer else []) + [answer + 1, answer - 1]))


@dataclasses.dataclass(frozen=True)
class GradedRankingFamily(CapabilityFamily):
    """Graded ranking (task id 6, NDCG@k): "top k entities by score", k = 3-5, distinct scores.

    The k top scores are distinct and above every other record's score.
    """

    name: str = "longcontext/graded_ranking"
    task_id: ClassVar[int] = 6
    metric: ClassVar[str] = "ndcg"
    top: ClassVar[tuple[int, int]] = (3, 5)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        k = draw_count(rng, *self.top)
        threshold = draw_count(rng, 30, 100 - k)
        scores = sorted(
            rng.choice(np.arange(threshold, 100), size=k, replace=False).tolist(), reverse=True
        )
        found = [records.random_record(rng, pool.take(), fixed={"score": str(s)}) for s in scores]
        return Draft(
            units=tuple(Unit(r.render()) for r in found),
            question=f"top {k} entities by score",
            answer=[r.entity for r in found],
            entities=tuple(r.entity for r in found),
            avoid={"score": {str(s) for s in range(threshold, 100)}},
            meta={"k": k},
        )

    def score(self, content: str, answer: Any) -> float:
        """NDCG@k of the answer lines against the gold ranking (golongrl.md 8.1)."""
        return metrics.ndcg(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """Two neighbouring ranks swapped."""
        return answer_text(_swap_adjacent(rng, task.answer))


@dataclasses.dataclass(frozen=True)
class SequenceOrderingFamily(CapabilityFamily):
    """Sequence ordering (task id 7, pairwise accuracy): 5-10 events `Vxx day = dd ;` in day order."""

    name: str = "longcontext/sequence_ordering"
    task_id: ClassVar[int] = 7
    metric: ClassVar[str] = "pairwise_accuracy"
    events: ClassVar[tuple[int, int]] = (5, 10)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        del pool  # events have their own ids; the context's entities are filler only
        ids = records.IdPool("V", 2, rng)
        count = draw_count(rng, *self.events)
        days = sorted(rng.choice(np.arange(1, 32), size=count, replace=False).tolist())
        events = [ids.take() for _ in days]
        return Draft(
            units=tuple(Unit(f"{event} day = {day:02d} ;") for event, day in zip(events, days)),
            question="events in chronological order",
            answer=events,
        )

    def score(self, content: str, answer: Any) -> float:
        """Pairwise ordering accuracy of the answer lines (golongrl.md 8.1)."""
        return metrics.pairwise_accuracy(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """Two neighbouring events swapped."""
        return answer_text(_swap_adjacent(rng, task.answer))


@dataclasses.dataclass(frozen=True)
class SummarizationFamily(CapabilityFamily):
    """Summarisation (task id 8, ROUGE-L): one `Exx ATTR v ;` line per flagged record, in order.

    2-5 records flag one attribute with `!` after its value; the reference lists them in order of
    appearance (the flagged records keep their order in the context).

    Attributes:
        rouge_f: ROUGE-L F-measure variant, "package" (golongrl.md 8.1 default) or "f1".
    """

    name: str = "longcontext/summarization"
    rouge_f: str = "package"
    task_id: ClassVar[int] = 8
    metric: ClassVar[str] = "rouge_l"
    flagged: ClassVar[tuple[int, int]] = (2, 5)

    def __post_init__(self):
        super().__post_init__()
        if self.rouge_f not in metrics.ROUGE_F_VARIANTS:
            raise ValueError(
                f"rouge_f must be one of {metrics.ROUGE_F_VARIANTS}, got {self.rouge_f!r}"
            )

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        found = [
            records.random_record(rng, pool.take(), flag=_pick(rng, list(records.ATTRIBUTES)))
            for _ in range(draw_count(rng, *self.flagged))
        ]
        return Draft(
            units=tuple(Unit(r.render(), ordered=True) for r in found),
            question="summarize the flagged records",
            answer="\n".join(f"{r.entity} {r.flag} {r.value(r.flag)} ;" for r in found),
            entities=tuple(r.entity for r in found),
        )

    def score(self, content: str, answer: Any) -> float:
        """ROUGE-L F of the whole answer against the reference (golongrl.md 8.1)."""
        return metrics.rouge_l(content, answer, rouge_f=self.rouge_f)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """A flagged record left out, or one value misreported."""
        lines = task.answer.split("\n")
        i = int(rng.integers(len(lines)))
        if rng.random() < 0.5:
            return "\n".join(lines[:i] + lines[i + 1 :])
        entity, attribute, value, end = lines[i].split(" ")
        lines[i] = f"{entity} {attribute} {other_value(rng, attribute, value)} {end}"
        return "\n".join(lines)
