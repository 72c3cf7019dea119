"""A hand-built MiniResearch world whose document ids and values the judge tests work out by hand."""

from rljax.envs.base import Task
from rljax.envs.research.corpus import ATTRIBUTES, Corpus, Document
from rljax.envs.research.episode import ResearchEpisode
from rljax.envs.research.queries import Query


def hand_corpus() -> Corpus:
    """Entities E00-E04; E00 founded V3 (reliable 100, rumor 102 says V7), E01 founded V5 (101).

    Every other fact is V0 with a reliable document 2xx; document 103 is a note about E00.
    """
    entities = tuple(f"E{i:02d}" for i in range(5))
    values = {(e, a): "V0" for e in entities for a in ATTRIBUTES}
    values[("E00", "founded")], values[("E01", "founded")] = "V3", "V5"
    docs = [
        Document("100", "journal", "E00", "founded", "V3"),
        Document("101", "journal", "E01", "founded", "V5"),
        Document("102", "blog", "E00", "founded", "V7"),
        Document("103", "journal", "E00"),
    ]
    reliable = {("E00", "founded"): "100", ("E01", "founded"): "101"}
    number = 200
    for fact in values:
        if fact not in reliable:
            reliable[fact] = str(number)
            docs.append(Document(str(number), "journal", *fact, "V0"))
            number += 1
    return Corpus(
        entities,
        values,
        {d.doc_id: d for d in sorted(docs, key=lambda d: d.doc_id)},
        reliable,
        {("E00", "founded"): "102"},
    )


def make_task(query: Query, split: str = "train", uid: str = "hand/train/0") -> Task:
    return Task(
        uid=uid,
        family="miniresearch",
        prompt=query.text(),
        answer=None,
        meta={"query": query.to_meta(), "question": query.text(), "split": split, "world_seed": 0},
    )


def play(
    corpus: Corpus, turns: list[str], *, max_calls: int = 8, max_turns: int = 12
) -> ResearchEpisode:
    """Plays `turns` in an episode whose verdict is not used; returns it (its transcript)."""
    episode = ResearchEpisode(corpus, lambda ep: None, max_calls=max_calls, max_turns=max_turns)
    for turn in turns:
        if episode.step(turn).done:
            break
    return episode


COMPARE = Query("compare", ("E00", "E01"), ("founded",))

# The flawed trajectory worked through in test_research_judge.py.
FLAWED = [
    "<plan> <rubric> [NEED E00 founded] [NEED E02 size] [NEED E03 city] </rubric> "
    "<rplan> [SEARCH E00 founded] </rplan> </plan> <call> search E00 founded </call>",
    "<state> CONT </state> <call> open 102 </call>",
    "<state> [HAVE E00 founded] CONT </state> <call> search E00 founded </call>",
    "<state> DONE </state> <review> [MAP E00 founded 102] [MAP E01 founded 101] </review> "
    "<answer> [FACT E00 founded V7 CITE 102] [FACT E01 founded V5 CITE 101] [CMP E00 E01 >] </answer>",
]

PERFECT = [
    "<plan> <rubric> [NEED E00 founded] [NEED E01 founded] [AVOID blog] </rubric> "
    "<rplan> [SEARCH E00 founded] [SEARCH E01 founded] </rplan> </plan> <call> search E00 founded </call>",
    "<state> CONT </state> <call> open 100 </call>",
    "<state> [HAVE E00 founded] CONT </state> <call> search E01 founded </call>",
    "<state> CONT </state> <call> open 101 </call>",
    "<state> [HAVE E01 founded] DONE </state> <review> [MAP E00 founded 100] [MAP E01 founded 101] </review> "
    "<answer> [FACT E00 founded V3 CITE 100] [FACT E01 founded V5 CITE 101] [CMP E01 E00 >] </answer>",
]
