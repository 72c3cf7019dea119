"""Retrieval-type long-context families: precise, exhaustive, extraction and matching.

golongrl.md section 8.2 rows 1, 3, 5 and 6 (task ids 0, 2, 4, 5); metrics from section 8.1 via
`rljax.envs.metrics`. Filler and distractor records never take a value that would change the gold
answer (`Draft.avoid`).
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


def _pick(rng: np.random.Generator, items: list) -> Any:
    return items[int(rng.integers(len(items)))]


def _distractor_records(task: Task) -> list[records.Record]:
    return [records.parse_record(line) for line in task.meta["distractors"]]


@dataclasses.dataclass(frozen=True)
class PreciseRetrievalFamily(CapabilityFamily):
    """Precise retrieval (task id 0, EM): "value of ATTR for Exx ?" -> the value.

    Distractors are records of near-duplicate ids (E71 for E17) with their own values.
    """

    name: str = "longcontext/precise_retrieval"
    task_id: ClassVar[int] = 0
    metric: ClassVar[str] = "exact_match"

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        entity = pool.take()
        record = records.random_record(rng, entity)
        attribute = _pick(rng, list(records.ATTRIBUTES))
        return Draft(
            units=(Unit(record.render()),),
            question=f"value of {attribute} for {entity} ?",
            answer=record.value(attribute),
            entities=(entity,),
            meta={"entity": entity, "attribute": attribute},
        )

    def score(self, content: str, answer: Any) -> float:
        """EM of the answer text against the gold value (golongrl.md 8.1)."""
        return metrics.exact_match(content, answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """The value of a near-duplicate entity's record when one differs, else another value."""
        attribute = task.meta["attribute"]
        confusions = [
            r.value(attribute)
            for r in _distractor_records(task)
            if r.value(attribute) != task.answer
        ]
        if confusions and rng.random() < 0.5:
            return _pick(rng, confusions)
        return other_value(rng, attribute, task.answer)


@dataclasses.dataclass(frozen=True)
class ExhaustiveRetrievalFamily(CapabilityFamily):
    """Exhaustive retrieval (task id 2, set F1): "all entities with color = v" -> 2-8 ids."""

    name: str = "longcontext/exhaustive_retrieval"
    task_id: ClassVar[int] = 2
    metric: ClassVar[str] = "set_f1"
    matches: ClassVar[tuple[int, int]] = (2, 8)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        color = _pick(rng, list(records.COLORS))
        found = [
            records.random_record(rng, pool.take(), fixed={"color": color})
            for _ in range(draw_count(rng, *self.matches))
        ]
        return Draft(
            units=tuple(Unit(r.render()) for r in found),
            question=f"all entities with color = {color}",
            answer=[r.entity for r in found],
            entities=tuple(r.entity for r in found),
            avoid={"color": {color}},
            meta={"color": color},
        )

    def score(self, content: str, answer: Any) -> float:
        """Set F1 of the answer lines against the gold ids (golongrl.md 8.1)."""
        return metrics.set_f1(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """Drops one match, or adds a near-duplicate entity of another color."""
        extras = [r.entity for r in _distractor_records(task)]
        if extras and rng.random() < 0.5:
            return answer_text(task.answer + [_pick(rng, extras)])
        return answer_text(_drop_one(rng, task.answer))


@dataclasses.dataclass(frozen=True)
class StructuredExtractionFamily(CapabilityFamily):
    """Structured extraction (task id 4, IoU): rows `Exx , yyyy` of the entities with city = c."""

    name: str = "longcontext/structured_extraction"
    task_id: ClassVar[int] = 4
    metric: ClassVar[str] = "iou"
    rows: ClassVar[tuple[int, int]] = (2, 6)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        city = _pick(rng, list(records.CITIES))
        found = [
            records.random_record(rng, pool.take(), fixed={"city": city})
            for _ in range(draw_count(rng, *self.rows))
        ]
        return Draft(
            units=tuple(Unit(r.render()) for r in found),
            question=f"rows ( entity , year ) for entities with city = {city}",
            answer=[f"{r.entity} , {r.year}" for r in found],
            entities=tuple(r.entity for r in found),
            avoid={"city": {city}},
            meta={"city": city},
        )

    def score(self, content: str, answer: Any) -> float:
        """Multiset IoU of the answer rows against the gold rows (golongrl.md 8.1)."""
        return metrics.iou(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """Drops a row, or misreads the year of one row."""
        rows = list(task.answer)
        if rng.random() < 0.5:
            return answer_text(_drop_one(rng, rows))
        i = int(rng.integers(len(rows)))
        entity, year = rows[i].split(" , ")
        rows[i] = f"{entity} , {other_value(rng, 'year', year)}"
        return answer_text(rows)


@dataclasses.dataclass(frozen=True)
class StructuredMatchingFamily(CapabilityFamily):
    """Structured matching (task id 5, SubEM): ids whose year differs between two sources.

    `SRC_A` and `SRC_B` each list the years of the same 8-15 entities (`SRC_A E17 year = 1987 ;`);
    1-4 of them differ.
    """

    name: str = "longcontext/structured_matching"
    task_id: ClassVar[int] = 5
    metric: ClassVar[str] = "sub_em"
    listed: ClassVar[tuple[int, int]] = (8, 15)
    differing: ClassVar[tuple[int, int]] = (1, 4)

    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        entities = [pool.take() for _ in range(draw_count(rng, *self.listed))]
        differ = set(
            rng.choice(len(entities), size=draw_count(rng, *self.differing), replace=False).tolist()
        )
        units, answer = [], []
        for i, entity in enumerate(entities):
            year_a = _pick(rng, list(records.YEARS))
            year_b = other_value(rng, "year", year_a) if i in differ else year_a
            units += [
                Unit(f"SRC_A {entity} year = {year_a} ;"),
                Unit(f"SRC_B {entity} year = {year_b} ;"),
            ]
            if i in differ:
                answer.append(entity)
        return Draft(
            units=tuple(units),
            question="entities whose year differs between SRC_A and SRC_B",
            answer=answer,
            entities=tuple(entities),
            meta={"listed": entities},
        )

    def score(self, content: str, answer: Any) -> float:
        """SubEM: the share of gold ids among the answer lines (golongrl.md 8.1)."""
        return metrics.sub_em(metrics.answer_items(content), answer)

    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """Misses one differing entity (SubEM ignores extras, so a miss is the mistake that costs).

        With a single differing entity it is replaced by one whose years agree.
        """
        if len(task.answer) >= 2:
            return answer_text(_drop_one(rng, task.answer))
        agreeing = [e for e in task.meta["listed"] if e not in task.answer]
        return _pick(rng, agreeing)


def _drop_one(rng: np.random.Generator, items: list[str]) -> list[str]:
    i = int(rng.integers(len(items)))
    return items[:i] + items[i + 1 :]
