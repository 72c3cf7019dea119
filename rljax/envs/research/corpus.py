"""The MiniResearch world and its document corpus (rubric_em.md section 8.1).

40 entities E00-E39 x 5 attributes (founded, city, leader, product, size), each value one of the
10 tokens V0-V9. Every fact has one reliable document `[DOC ddd] [SRC journal] [ENT e] [ATTR a]
[VAL v]`; 30% of the facts also have a rumor `[SRC blog]` carrying a wrong value; distractor notes
`[DOC ddd] [SRC journal|blog] [ENT e] [NOTE]` fill the corpus to 500 documents. Document ids are a
random permutation of 000-499. Everything is a function of the seed.

The two tools: `search(e, a)` ranks documents by the overlap score [ENT = e] + [ATTR = a] (ties:
ascending id) and returns the top 3 as value-free snippets; `open(ddd)` returns a full document.
"""

from __future__ import annotations

import dataclasses

import numpy as np

ATTRIBUTES = ("founded", "city", "leader", "product", "size")
ORDERED_ATTRIBUTES = ("founded", "size")  # compared numerically by value index (COMPARE queries)
NUM_VALUES = 10
SOURCES = ("journal", "blog")
SEARCH_TOP_K = 3

Fact = tuple[str, str]  # (entity, attribute)


def entity_name(index: int) -> str:
    """The name of entity `index`.

    Args:
        index: entity index in [0, 100).

    Returns:
        e.g. 3 -> "E03".
    """
    return f"E{index:02d}"


def value_name(index: int) -> str:
    """The name of value `index`.

    Args:
        index: value index in [0, NUM_VALUES).

    Returns:
        e.g. 7 -> "V7".
    """
    return f"V{index}"


def value_index(value: str) -> int:
    """The index of a value name (the order COMPARE uses).

    Args:
        value: a value name, e.g. "V7".

    Returns:
        e.g. 7.
    """
    return int(value[1:])


@dataclasses.dataclass(frozen=True)
class Document:
    """One corpus document.

    Attributes:
        doc_id: three digits, e.g. "042".
        source: "journal" (reliable facts and notes) or "blog" (rumors and notes).
        entity: the entity it is about.
        attribute: the attribute it states, or None for a distractor note.
        value: the stated value (wrong for a rumor), or None for a note.
    """

    doc_id: str
    source: str
    entity: str
    attribute: str | None = None
    value: str | None = None

    def snippet(self) -> str:
        """What `search` shows of the document (no value).

        Returns:
            "[DOC ddd] [SRC s] [ENT e] [ATTR a]", or "[DOC ddd] [SRC s] [ENT e] [NOTE]" for a note.
        """
        head = f"[DOC {self.doc_id}] [SRC {self.source}] [ENT {self.entity}]"
        return f"{head} [NOTE]" if self.attribute is None else f"{head} [ATTR {self.attribute}]"

    def full_text(self) -> str:
        """What `open` shows of the document.

        Returns:
            The snippet plus " [VAL v]" for a fact document (a note shows its snippet).
        """
        return self.snippet() if self.value is None else f"{self.snippet()} [VAL {self.value}]"


@dataclasses.dataclass(frozen=True)
class Corpus:
    """The world's true values and its documents.

    Attributes:
        entities: entity names, "E00" first.
        values: (entity, attribute) -> true value.
        documents: doc id -> document, in ascending id order.
        reliable: (entity, attribute) -> id of the journal document stating the true value.
        rumors: (entity, attribute) -> id of the blog document stating a wrong value (30% of facts).
    """

    entities: tuple[str, ...]
    values: dict[Fact, str]
    documents: dict[str, Document]
    reliable: dict[Fact, str]
    rumors: dict[Fact, str]

    def search(self, entity: str, attribute: str) -> list[Document]:
        """The top `SEARCH_TOP_K` documents by [ENT = entity] + [ATTR = attribute] (score > 0).

        Args:
            entity: an entity name (any string; an unknown entity matches no ENT).
            attribute: an attribute name.

        Returns:
            Up to 3 documents, best score first, ties in ascending id order.
        """
        scored = [
            ((doc.entity == entity) + (doc.attribute == attribute), doc)
            for doc in self.documents.values()
        ]
        ranked = sorted(
            (item for item in scored if item[0] > 0), key=lambda item: (-item[0], item[1].doc_id)
        )
        return [doc for _, doc in ranked[:SEARCH_TOP_K]]

    def open(self, doc_id: str) -> Document | None:
        """The `open` tool.

        Args:
            doc_id: a three-digit id.

        Returns:
            The document, or None if there is none with that id.
        """
        return self.documents.get(doc_id)

    def rumor_value(self, fact: Fact) -> str | None:
        """The wrong value a rumor states about a fact.

        Args:
            fact: (entity, attribute).

        Returns:
            The rumor's value, or None if the fact has no rumor.
        """
        doc_id = self.rumors.get(fact)
        return None if doc_id is None else self.documents[doc_id].value


def make_corpus(
    seed: int, *, num_entities: int = 40, rumor_fraction: float = 0.3, num_documents: int = 500
) -> Corpus:
    """Generates the world and corpus of `seed` (rubric_em.md section 8.1).

    Args:
        seed: world seed (>= 0).
        num_entities: entities E00...; the paper-scale default is 40.
        rumor_fraction: share of facts that also get a blog rumor with a wrong value, in [0, 1].
        num_documents: corpus size; documents beyond the facts and rumors are distractor notes.

    Returns:
        The corpus; same arguments, same corpus.
    """
    if not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}")
    if not 2 <= num_entities <= 100:
        raise ValueError(
            f"num_entities must be in [2, 100] (two-digit names), got {num_entities!r}"
        )
    if not 0.0 <= rumor_fraction <= 1.0:
        raise ValueError(f"rumor_fraction must be in [0, 1], got {rumor_fraction!r}")
    num_facts = num_entities * len(ATTRIBUTES)
    num_rumors = int(round(rumor_fraction * num_facts))
    if not num_facts + num_rumors <= num_documents <= 1000:
        raise ValueError(
            f"num_documents must be in [{num_facts + num_rumors}, 1000] (facts + rumors fit, three-digit ids), "
            f"got {num_documents!r}"
        )
    rng = np.random.default_rng([int(seed), 0x5EA6C4])
    entities = tuple(entity_name(i) for i in range(num_entities))
    facts = [(e, a) for e in entities for a in ATTRIBUTES]
    values = {fact: value_name(int(rng.integers(NUM_VALUES))) for fact in facts}
    ids = [f"{i:03d}" for i in rng.permutation(num_documents)]
    documents, reliable, rumors = [], {}, {}
    for fact in facts:
        reliable[fact] = ids[len(documents)]
        documents.append(Document(ids[len(documents)], "journal", *fact, values[fact]))
    for i in sorted(rng.choice(num_facts, size=num_rumors, replace=False)):
        fact = facts[i]
        wrong = [value_name(v) for v in range(NUM_VALUES) if value_name(v) != values[fact]]
        rumors[fact] = ids[len(documents)]
        documents.append(
            Document(ids[len(documents)], "blog", *fact, wrong[int(rng.integers(len(wrong)))])
        )
    while len(documents) < num_documents:
        source = SOURCES[int(rng.integers(len(SOURCES)))]
        documents.append(
            Document(ids[len(documents)], source, entities[int(rng.integers(num_entities))])
        )
    by_id = {doc.doc_id: doc for doc in sorted(documents, key=lambda doc: doc.doc_id)}
    return Corpus(entities, values, by_id, reliable, rumors)
