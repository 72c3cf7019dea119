"""MiniResearch world, tools, questions and action grammar (rubric_em.md section 8.1)."""

import collections
import re

import numpy as np
import pytest
from research_world import hand_corpus

from rljax.envs.research.corpus import ATTRIBUTES, make_corpus
from rljax.envs.research.grammar import (
    Answer,
    Plan,
    Review,
    State,
    format_answer,
    format_plan,
    format_review,
    format_state,
    parse_turn,
)
from rljax.envs.research.queries import Query, compare_symbol, gold_result

# ---- corpus


def test_corpus_matches_the_spec_layout():
    corpus = make_corpus(3)
    docs = list(corpus.documents.values())
    assert sorted(corpus.documents) == [f"{i:03d}" for i in range(500)]
    assert corpus.entities == tuple(f"E{i:02d}" for i in range(40))
    kinds = collections.Counter(("note" if d.attribute is None else d.source) for d in docs)
    assert kinds == {"journal": 200, "blog": 60, "note": 240}
    for (e, a), value in corpus.values.items():
        assert re.fullmatch(r"V\d", value) and a in ATTRIBUTES
        doc = corpus.documents[corpus.reliable[(e, a)]]
        assert (doc.source, doc.entity, doc.attribute, doc.value) == ("journal", e, a, value)
    assert len(corpus.values) == 200 and len(corpus.rumors) == 60
    for fact, doc_id in corpus.rumors.items():
        rumor = corpus.documents[doc_id]
        assert (rumor.source, (rumor.entity, rumor.attribute)) == ("blog", fact)
        assert rumor.value != corpus.values[fact]  # a rumor is always wrong
    assert {d.source for d in docs if d.attribute is None} == {"journal", "blog"}


def test_corpus_is_a_function_of_the_seed():
    assert make_corpus(5) == make_corpus(5)
    assert make_corpus(5).values != make_corpus(6).values


def test_document_texts():
    corpus = hand_corpus()
    assert corpus.documents["102"].snippet() == "[DOC 102] [SRC blog] [ENT E00] [ATTR founded]"
    assert (
        corpus.documents["102"].full_text()
        == "[DOC 102] [SRC blog] [ENT E00] [ATTR founded] [VAL V7]"
    )
    assert corpus.documents["103"].full_text() == "[DOC 103] [SRC journal] [ENT E00] [NOTE]"


def test_search_ranks_by_overlap_then_id():
    corpus = hand_corpus()
    # 100 and 102 match entity and attribute (2); 101 (E01 founded) and 103 (E00 note) score 1.
    assert [d.doc_id for d in corpus.search("E00", "founded")] == ["100", "102", "101"]
    assert [d.doc_id for d in corpus.search("E01", "founded")] == ["101", "100", "102"]
    assert corpus.open("102").value == "V7" and corpus.open("999") is None
    assert (
        corpus.rumor_value(("E00", "founded")) == "V7"
        and corpus.rumor_value(("E01", "founded")) is None
    )


def test_search_agrees_with_brute_force_on_a_generated_corpus():
    corpus = make_corpus(1)
    rng = np.random.default_rng(0)
    for _ in range(20):
        e, a = corpus.entities[int(rng.integers(40))], ATTRIBUTES[int(rng.integers(5))]
        best = sorted(
            corpus.documents,
            key=lambda i: (
                -((corpus.documents[i].entity == e) + (corpus.documents[i].attribute == a)),
                i,
            ),
        )[:3]
        assert [d.doc_id for d in corpus.search(e, a)] == best
        assert corpus.reliable[(e, a)] in best  # at most two documents score 2


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(seed=-1), "seed must be a non-negative int"),
        (dict(seed=0, num_entities=1), "num_entities must be in"),
        (dict(seed=0, rumor_fraction=1.5), "rumor_fraction must be in"),
        (dict(seed=0, num_documents=100), "num_documents must be in"),
    ],
)
def test_corpus_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        make_corpus(**kwargs)


# ---- questions


def test_query_texts_facts_and_results():
    values = hand_corpus().values
    lookup = Query("lookup", ("E00",), ("founded", "size"))
    assert lookup.text() == "<query> LOOKUP E00 founded size </query>"
    assert (
        lookup.facts() == [("E00", "founded"), ("E00", "size")]
        and gold_result(lookup, values) is None
    )
    compare = Query("compare", ("E00", "E01"), ("founded",))
    assert compare.text() == "<query> COMPARE E00 E01 founded </query>"
    assert gold_result(compare, values) == "<"  # V3 < V5
    filt = Query("filter", ("E01", "E00", "E02", "E03"), ("founded",), "V0")
    assert filt.text() == "<query> FILTER founded V0 E01 E00 E02 E03 </query>"
    assert gold_result(filt, values) == ["E02", "E03"]
    assert Query.from_meta(filt.to_meta()) == filt
    assert (compare_symbol("V9", "V10"), compare_symbol("V3", "V3")) == (
        "<",
        "=",
    )  # by index, not text


# ---- grammar


def test_parse_a_well_formed_first_turn():
    turn = parse_turn(
        "<plan> <rubric> [NEED E03 size] [AVOID blog] </rubric> <rplan> [SEARCH E03 size] "
        "</rplan> </plan> <call> search E03 size </call>"
    )
    assert turn.errors == ()
    assert turn.plan == Plan((("E03", "size"),), True, (("E03", "size"),))
    assert (turn.call.tool, turn.call.args, turn.num_calls) == ("search", ("E03", "size"), 1)


def test_parse_the_final_turn():
    turn = parse_turn(
        "<state> [HAVE E03 size] [MISSING E04 city] DONE </state> <review> [MAP E03 size 042] "
        "[GAP E04 city] </review> "
        "<answer> [FACT E03 size V4 CITE 042] [CMP E03 E04 >] [SEL E03] </answer>"
    )
    assert turn.errors == () and turn.call is None
    assert turn.state == State((("E03", "size"),), (("E04", "city"),), "DONE")
    assert turn.review == Review((("E03", "size", "042"),), (("E04", "city"),))
    assert turn.answer == Answer((("E03", "size", "V4", "042"),), (("E03", "E04", ">"),), ("E03",))


@pytest.mark.parametrize(
    "text, error",
    [
        ("<call> search E03 </call>", "malformed call 'search E03'"),
        ("<call> open 12 </call>", "malformed call 'open 12'"),
        ("<call> fetch 123 </call>", "malformed call 'fetch 123'"),
        ("<call> open 123 </call> <call> open 124 </call>", "2 <call> blocks in one turn"),
        (
            "<state> [HAVE E03 size] </state> <call> open 123 </call>",
            "<state> must end with CONT or DONE",
        ),
        (
            "<plan> [NEED E03 weight] </plan> <call> open 123 </call>",
            "malformed item [NEED E03 weight] in <plan>",
        ),
        ("<answer> [FACT E03 size V4 042] </answer>", "malformed item [FACT E03 size V4 042]"),
        ("hello <call> open 123 </call>", "text outside the tags is ignored: 'hello'"),
        ("<call> open 123 </call> <state> CONT </state>", "blocks out of order"),
    ],
)
def test_parse_errors_name_the_problem(text, error):
    turn = parse_turn(text)
    assert any(error in message for message in turn.errors), turn.errors


def test_malformed_calls_do_not_run_and_bad_items_are_dropped():
    assert parse_turn("<call> open 123 </call> <call> open 124 </call>").call is None
    assert parse_turn("<call> search E03 </call>").call is None
    turn = parse_turn("<plan> [NEED E03 weight] [NEED E03 size] </plan> <call> open 123 </call>")
    assert turn.plan.needs == (("E03", "size"),) and turn.call.args == ("123",)


def test_formatters_write_what_the_parser_reads():
    plan = Plan((("E01", "city"), ("E02", "size")), True, (("E01", "city"),))
    state, review = (
        State((), (("E02", "size"),), "DONE"),
        Review((("E01", "city", "007"),), (("E02", "size"),)),
    )
    answer = Answer((("E01", "city", "V2", "007"),), (("E01", "E02", "="),), ("E01",))
    assert format_plan(plan) == (
        "<plan> <rubric> [NEED E01 city] [NEED E02 size] [AVOID blog] </rubric> "
        "<rplan> [SEARCH E01 city] </rplan> </plan>"
    )
    turn = parse_turn(" ".join([format_state(state), format_review(review), format_answer(answer)]))
    assert (turn.state, turn.review, turn.answer, turn.errors) == (state, review, answer, ())
    assert parse_turn(format_plan(plan) + " <call> open 007 </call>").plan == plan
