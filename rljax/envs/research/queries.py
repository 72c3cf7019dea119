"""MiniResearch questions and their gold answers (rubric_em.md section 8.1).

Three templates, each needing 2-4 documents:

    <query> LOOKUP e a1 a2 </query>              the values of two attributes of one entity
    <query> COMPARE e1 e2 a </query>             a in {founded, size}: ">", "<" or "=" by value index
    <query> FILTER a v e1 e2 e3 e4 </query>      which listed entities have a = v

Train questions use entities E00-E31, held-out questions E32-E39, so the splits share no question.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from rljax.envs.research.corpus import ATTRIBUTES, ORDERED_ATTRIBUTES, Corpus, Fact, value_index

KINDS = ("lookup", "compare", "filter")
FILTER_SIZE = 4


@dataclasses.dataclass(frozen=True)
class Query:
    """One question.

    Attributes:
        kind: "lookup", "compare" or "filter" (`KINDS`).
        entities: the entities named, in order (1 for lookup, 2 for compare, 4 for filter).
        attributes: (a1, a2) for lookup, (a,) otherwise.
        value: the value a filter asks for (None otherwise).
    """

    kind: str
    entities: tuple[str, ...]
    attributes: tuple[str, ...]
    value: str | None = None

    def text(self) -> str:
        """The question as shown to the policy.

        Returns:
            e.g. "<query> COMPARE E03 E11 size </query>".
        """
        if self.kind == "lookup":
            body = f"LOOKUP {self.entities[0]} {self.attributes[0]} {self.attributes[1]}"
        elif self.kind == "compare":
            body = f"COMPARE {self.entities[0]} {self.entities[1]} {self.attributes[0]}"
        else:
            body = f"FILTER {self.attributes[0]} {self.value} {' '.join(self.entities)}"
        return f"<query> {body} </query>"

    def facts(self) -> list[Fact]:
        """The gold facts the answer needs.

        Returns:
            (entity, attribute) pairs in question order.
        """
        if self.kind == "lookup":
            return [(self.entities[0], a) for a in self.attributes]
        return [(e, self.attributes[0]) for e in self.entities]

    def to_meta(self) -> dict:
        """A JSON-serialisable form of the question.

        Returns:
            {"kind", "entities", "attributes", "value"}; `from_meta` inverts it.
        """
        return {
            "kind": self.kind,
            "entities": list(self.entities),
            "attributes": list(self.attributes),
            "value": self.value,
        }

    @classmethod
    def from_meta(cls, meta: dict) -> Query:
        """Rebuilds a question.

        Args:
            meta: `to_meta`'s dict.

        Returns:
            The question.
        """
        return cls(meta["kind"], tuple(meta["entities"]), tuple(meta["attributes"]), meta["value"])


def compare_symbol(left: str, right: str) -> str:
    """Compares two values by index (V7 > V3, V9 < V10).

    Args:
        left: a value name.
        right: a value name.

    Returns:
        ">", "<" or "=".
    """
    a, b = value_index(left), value_index(right)
    return ">" if a > b else "<" if a < b else "="


def gold_result(query: Query, values: dict[Fact, str]) -> str | list[str] | None:
    """The gold result of a question.

    Args:
        query: the question.
        values: (entity, attribute) -> value, e.g. `Corpus.values`.

    Returns:
        The comparison symbol (compare), the qualifying entities in question order (filter), or
        None (lookup).
    """
    if query.kind == "compare":
        left, right = (values[fact] for fact in query.facts())
        return compare_symbol(left, right)
    if query.kind == "filter":
        return [e for e, a in query.facts() if values[(e, a)] == query.value]
    return None


def draw_query(
    rng: np.random.Generator, corpus: Corpus, entities: tuple[str, ...], kinds: tuple[str, ...]
) -> Query:
    """Draws a question over `entities` (a split's entity pool).

    A filter's value is the true value of one of its listed entities, so at least one qualifies.

    Args:
        rng: the instance's random generator.
        corpus: the world (filter values come from its true values).
        entities: the entity pool, at least `FILTER_SIZE` of them.
        kinds: the templates to draw from.

    Returns:
        The question.
    """
    kind = kinds[int(rng.integers(len(kinds)))]
    if kind == "lookup":
        attributes = rng.choice(len(ATTRIBUTES), size=2, replace=False)
        return Query(
            kind,
            (entities[int(rng.integers(len(entities)))],),
            tuple(ATTRIBUTES[i] for i in attributes),
        )
    if kind == "compare":
        pair = rng.choice(len(entities), size=2, replace=False)
        attribute = ORDERED_ATTRIBUTES[int(rng.integers(len(ORDERED_ATTRIBUTES)))]
        return Query(kind, tuple(entities[i] for i in pair), (attribute,))
    chosen = tuple(entities[i] for i in rng.choice(len(entities), size=FILTER_SIZE, replace=False))
    attribute = ATTRIBUTES[int(rng.integers(len(ATTRIBUTES)))]
    value = corpus.values[(chosen[int(rng.integers(FILTER_SIZE))], attribute)]
    return Query(kind, chosen, (attribute,), value)
