"""The scripted MiniResearch expert (rubric_em.md section 8.1, SFT warm start).

The expert plans (NEED and SEARCH every gold fact, AVOID blog), then for each fact searches and
opens its reliable document, writing a `<state>` before every later call (naming the fact the
previous call completed), and finishes with a DONE state (naming any fact still missing), a
review mapping each fact to its document and the answer citing them. At noise 0 it earns
answer reward 1 and full marks on every stage predicate.

Controlled imperfections (section 8.1), each drawn independently with probability
`min(1, noise * rate / SFT_NOISE)`, so that `noise = SFT_NOISE = 0.3` gives the spec's warm-start
rates: omit a required NEED from the plan (rate 0.3; the research still covers it), a redundant
repeated search (0.2; only within the call budget), open and cite a rumor (0.2; on a fact that has
one), MAP a fact without opening a document and guess its value (0.15), premature DONE (0.15; the
last fact is never researched, the review lists it as GAP and the answer leaves it out).
With `scaffold=False` the same research is written without its scaffold (rubric_em.md 8.3 arm e,
"unstructured SFT"): one bare `<call>` per turn and the final `<answer>`, no plan, state or review.

`expert_reflection` scripts the reflection meta-policy's demonstration (section 8.1's reflection
grammar) on one judged trajectory: REQ and PITFALL items naming exactly the trajectory's true
failure set, and lessons that name what to do (SEARCH the facts answered wrongly, AVOID blog after
a rumor; CHECK a gold fact when nothing else applies). Its controlled imperfections, at the same
`noise` scale: drop one diagnosed item (rate 0.2) and write the generic `LESSON CAREFUL` in place of
the first lesson (0.2), so the judged utility leaves the meta-policy room to improve.
"""

from __future__ import annotations

import numpy as np

from rljax.envs.research.corpus import NUM_VALUES, Corpus, Fact, value_name
from rljax.envs.research.grammar import (
    Answer,
    Call,
    Plan,
    Review,
    State,
    format_answer,
    format_plan,
    format_review,
    format_state,
)
from rljax.envs.research.queries import Query, compare_symbol
from rljax.envs.research.reflection import MAX_LESSONS

SFT_NOISE = 0.3
IMPERFECTION_RATES = {
    "omit_need": 0.3,
    "redundant_search": 0.2,
    "rumor": 0.2,
    "unopened_map": 0.15,
    "premature_done": 0.15,
}
REFLECTION_IMPERFECTION_RATES = {"drop_item": 0.2, "generic_lesson": 0.2}


def _draw(rng: np.random.Generator, noise: float, rates: dict[str, float]) -> dict[str, bool]:
    """One independent draw per imperfection, each with probability min(1, noise * rate / SFT_NOISE)."""
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")
    return {
        name: bool(rng.random() < min(1.0, noise * rate / SFT_NOISE))
        for name, rate in rates.items()
    }


def expert_actions(
    corpus: Corpus,
    query: Query,
    rng: np.random.Generator,
    noise: float,
    *,
    max_calls: int,
    scaffold: bool = True,
) -> list[str]:
    """The expert's turns for one question (see the module docstring).

    Args:
        corpus: the world.
        query: the question.
        rng: the expert's randomness (five imperfection draws, then their targets).
        noise: imperfection scale in [0, 1]; 0 gives a flawless trajectory.
        max_calls: the episode's call budget (>= 2 calls per gold fact).
        scaffold: write the plan, states and review (False: bare calls and the answer; the same
            random draws, so the research and answer are those of the scaffolded trajectory).

    Returns:
        The assistant turns: plan + first call, state + call for each further call, and the final
        state + review + answer (without the scaffold: one call per turn, then the answer).
    """
    facts = query.facts()
    if max_calls < 2 * len(facts):
        raise ValueError(
            f"max_calls={max_calls} leaves no room for a search and an open per fact ({len(facts)} facts)"
        )
    flags = _draw(rng, noise, IMPERFECTION_RATES)
    researched = facts[:-1] if flags["premature_done"] else list(facts)
    with_rumor = [f for f in researched if f in corpus.rumors]
    rumor = (
        with_rumor[int(rng.integers(len(with_rumor)))] if flags["rumor"] and with_rumor else None
    )
    honest = [f for f in researched if f != rumor]
    unopened = honest[int(rng.integers(len(honest)))] if flags["unopened_map"] and honest else None
    needs = list(facts)
    if flags["omit_need"]:
        needs.pop(int(rng.integers(len(needs))))
    calls, beliefs = _research(corpus, researched, rumor, unopened, rng)
    if flags["redundant_search"] and len(calls) < max_calls:
        searches = [i for i, (call, _) in enumerate(calls) if call.tool == "search"]
        at = searches[int(rng.integers(len(searches)))]
        calls.insert(at + 1, (calls[at][0], None))
    answer = _answer(query, researched, beliefs, rng)
    if not scaffold:
        return [call.text() for call, _ in calls] + [format_answer(answer)]
    turns = []
    for i, (call, done_fact) in enumerate(calls):
        if i == 0:
            turns.append(f"{format_plan(Plan(tuple(needs), True, tuple(needs)))} {call.text()}")
        else:
            turns.append(f"{format_state(_state(facts, calls[:i], 'CONT'))} {call.text()}")
    review = Review(
        tuple((e, a, beliefs[(e, a)][1]) for e, a in researched),
        tuple(f for f in facts if f not in researched),
    )
    turns.append(
        f"{format_state(_state(facts, calls, 'DONE'))} {format_review(review)} {format_answer(answer)}"
    )
    return turns


def _research(
    corpus: Corpus,
    researched: list[Fact],
    rumor: Fact | None,
    unopened: Fact | None,
    rng: np.random.Generator,
) -> tuple[list[tuple[Call, Fact | None]], dict[Fact, tuple[str, str]]]:
    """The calls (each tagged with the fact it completes) and the believed (value, cited doc) per fact."""
    calls, beliefs = [], {}
    for fact in researched:
        search = Call("search", fact)
        if fact == unopened:
            calls.append((search, fact))
            beliefs[fact] = (value_name(int(rng.integers(NUM_VALUES))), corpus.reliable[fact])
            continue
        doc_id = corpus.rumors[fact] if fact == rumor else corpus.reliable[fact]
        calls += [(search, None), (Call("open", (doc_id,)), fact)]
        beliefs[fact] = (corpus.documents[doc_id].value, doc_id)
    return calls, beliefs


def _state(facts: list[Fact], done_calls: list[tuple[Call, Fact | None]], status: str) -> State:
    """A compact state: CONT states name the fact the last call completed (if any); the DONE state
    names the facts still missing."""
    have = [fact for _, fact in done_calls if fact is not None]
    if status == "CONT":
        return State(tuple(fact for _, fact in done_calls[-1:] if fact is not None), (), status)
    return State((), tuple(f for f in facts if f not in have), status)


def _answer(
    query: Query,
    researched: list[Fact],
    beliefs: dict[Fact, tuple[str, str]],
    rng: np.random.Generator,
) -> Answer:
    facts = tuple((e, a, *beliefs[(e, a)]) for e, a in researched)
    if query.kind == "compare":
        known = [beliefs[f][0] for f in query.facts() if f in beliefs]
        op = compare_symbol(*known) if len(known) == 2 else "><="[int(rng.integers(3))]
        return Answer(facts, ((*query.entities, op),))
    if query.kind == "filter":
        return Answer(
            facts, selected=tuple(e for e, a in researched if beliefs[(e, a)][0] == query.value)
        )
    return Answer(facts)


def expert_reflection(
    query: Query, failures: list[str], rng: np.random.Generator, noise: float
) -> str:
    """The scripted reflection on one judged trajectory (see the module docstring).

    Args:
        query: the trajectory's question.
        failures: its true failure set (`ProgrammaticJudge.failures`), e.g.
            ["PITFALL blog", "REQ E03 size"].
        rng: the expert's randomness (two imperfection draws, then their targets).
        noise: imperfection scale in [0, 1]; 0 gives diagnostic accuracy 1 and specificity 1.

    Returns:
        `<reflection_rubrics> ... </reflection_rubrics> <reflection_takeaways> ...
        </reflection_takeaways>`, valid under `reflection.parse_reflection`.
    """
    flags = _draw(rng, noise, REFLECTION_IMPERFECTION_RATES)
    items = list(failures)
    lessons = [f"LESSON SEARCH {item[len('REQ ') :]}" for item in items if item.startswith("REQ ")]
    if "PITFALL blog" in items:
        lessons.append("LESSON AVOID blog")
    if not lessons:
        e, a = query.facts()[0]
        lessons.append(f"LESSON CHECK {e} {a}")
    lessons = lessons[:MAX_LESSONS]
    if flags["drop_item"] and items:
        items.pop(int(rng.integers(len(items))))
    if flags["generic_lesson"]:
        lessons[0] = "LESSON CAREFUL"
    return " ".join(
        ["<reflection_rubrics>", *(f"[{item}]" for item in items), "</reflection_rubrics>"]
        + ["<reflection_takeaways>", *(f"[{lesson}]" for lesson in lessons)]
        + ["</reflection_takeaways>"]
    )
