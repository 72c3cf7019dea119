"""Records, id pools and context assembly of the long-context tasks."""

import numpy as np
import pytest

from rljax.data import load_tokenizer, token_counter
from rljax.envs.base import TokenCountingFamily, with_token_counter
from rljax.envs.longcontext import LongContextFamily, PreciseRetrievalFamily
from rljax.envs.longcontext.context import Unit, build_context, interleave
from rljax.envs.longcontext.records import IdPool, Record, id_width, parse_record, random_record

COUNT = token_counter(load_tokenizer())


def count_tokens(lines):
    return [COUNT(line) for line in lines]


def test_record_render_and_parse():
    record = Record("E17", "red", "oslo", "1987", "42")
    assert record.render() == "E17 color = red city = oslo year = 1987 score = 42 ;"
    flagged = Record("E05", "blue", "lima", "1901", "99", flag="year")
    assert flagged.render() == "E05 color = blue city = lima year = 1901 ! score = 99 ;"
    assert parse_record(flagged.render()) == flagged and parse_record(record.render()) == record
    assert parse_record("E17 gives I42 to E55 ;") is None
    with pytest.raises(ValueError, match="attribute must be one of"):
        record.value("age")


def test_random_record_fixed_and_avoid():
    rng = np.random.default_rng(0)
    drawn = [
        random_record(rng, "E01", fixed={"city": "rome"}, avoid={"color": {"red", "blue"}})
        for _ in range(200)
    ]
    assert {r.city for r in drawn} == {"rome"}
    assert not {r.color for r in drawn} & {"red", "blue"} and len({r.color for r in drawn}) == 6
    with pytest.raises(ValueError, match="avoid leaves no value for attribute 'color'"):
        random_record(
            rng,
            "E01",
            avoid={"color": {"red", "blue", "green", "black", "white", "gold", "pink", "gray"}},
        )


@pytest.mark.parametrize(
    "target, width", [(1, 2), (900, 2), (1000, 2), (1001, 3), (10_000, 3), (30_000, 4)]
)
def test_id_width(target, width):
    assert id_width(target) == width


def test_id_pool_draws_distinct_ids_and_near_duplicates():
    pool = IdPool("E", 2, np.random.default_rng(1))
    ids = [pool.take() for _ in range(100)]
    assert sorted(ids) == [f"E{i:02d}" for i in range(100)]
    with pytest.raises(ValueError, match="all 100 ids Edd are used"):
        pool.take()
    pool = IdPool("E", 2, np.random.default_rng(2))
    pool._used.add(17)
    # E17: swap -> E71; +-1 per digit -> E07, E27, E16, E18.
    assert {pool.near("E17") for _ in range(5)} == {"E71", "E07", "E27", "E16", "E18"}
    assert pool.near("E17") is None
    with pytest.raises(ValueError, match="ident must look like Edd"):
        pool.near("V17")


def test_count_tokens_adds_up_to_the_joined_context():
    tokenizer = load_tokenizer()
    lines = [
        "E17 color = red city = oslo year = 1987 score = 42 ;",
        "E17 gives I42 to E55 ;",
        "V03 day = 07 ;",
        "SRC_A E17 year = 1987 ;",
    ]
    counts = count_tokens(lines)
    assert counts == [len(tokenizer(line, add_special_tokens=False)["input_ids"]) for line in lines]
    joined = len(tokenizer("\n".join(lines), add_special_tokens=False)["input_ids"])
    assert joined == sum(counts) + len(lines) - 1
    assert count_tokens([]) == []


def test_interleave_keeps_the_order_of_ordered_lines():
    rng = np.random.default_rng(3)
    ordered, free = [f"o{i}" for i in range(6)], [f"f{i}" for i in range(20)]
    mixed = interleave(rng, ordered, free)
    assert sorted(mixed) == sorted(ordered + free)
    assert [line for line in mixed if line.startswith("o")] == ordered
    assert [line for line in mixed if line.startswith("f")] != free  # shuffled


def test_build_context_stops_at_the_target():
    rng = np.random.default_rng(4)
    units = [Unit("V01 day = 03 ;", ordered=True), Unit("V02 day = 09 ;", ordered=True)]
    filler = iter(f"E{i:02d} color = red city = oslo year = 1987 score = 42 ;" for i in range(100))
    lines, total = build_context(rng, units, lambda: next(filler), 300, count_tokens=COUNT)
    tokenizer = load_tokenizer()
    exact = len(tokenizer("\n".join(lines), add_special_tokens=False)["input_ids"])
    assert exact == total
    last_line = max(count_tokens(lines)) + 1
    assert 300 <= total < 300 + last_line  # one more filler line was needed, not two
    assert [line for line in lines if line.startswith("V")] == ["V01 day = 03 ;", "V02 day = 09 ;"]
    short, total = build_context(
        rng, units, lambda: pytest.fail("no filler needed"), 5, count_tokens=COUNT
    )
    assert sorted(short) == sorted(u.text for u in units) and total == sum(count_tokens(short)) + 1
    with pytest.raises(ValueError, match="target_tokens must be an int >= 1"):
        build_context(rng, units, lambda: "", 0, count_tokens=COUNT)


def test_build_context_never_passes_max_tokens():
    units = [Unit("V01 day = 03 ;"), Unit("V02 day = 09 ;")]  # 9 tokens each, 19 with the newline
    record = "E17 color = red city = oslo year = 1987 score = 42 ;"  # 29 tokens, 30 with a newline
    # Target 120 would take 4 records (139 tokens); 130 holds only 3 (109 tokens).
    lines, total = build_context(
        np.random.default_rng(5), units, lambda: record, 120, count_tokens=COUNT, max_tokens=130
    )
    assert total == 109 and len(lines) == 5
    lines, total = build_context(
        np.random.default_rng(5), units, lambda: record, 120, count_tokens=COUNT, max_tokens=139
    )
    assert total == 139 and len(lines) == 6
    with pytest.raises(ValueError, match="the units alone hold 19 tokens, more than max_tokens=18"):
        build_context(
            np.random.default_rng(5), units, lambda: record, 20, count_tokens=COUNT, max_tokens=18
        )


def test_length_knob_scales_to_tens_of_thousands_of_tokens():
    task = PreciseRetrievalFamily(context_tokens=20_000, count_tokens=COUNT).generate("train", 0)
    context = task.prompt.rsplit("\n<q> ", 1)[0]
    tokens = len(load_tokenizer()(context, add_special_tokens=False)["input_ids"])
    assert tokens == task.meta["context_tokens"] and 20_000 <= tokens < 20_040
    lines = context.split("\n")
    assert len(lines) > 600 and len({line.split()[0] for line in lines}) == len(lines)
    assert all(len(line.split()[0]) == 5 for line in lines)  # E + 4 digits past 10,000 tokens
    entity, attribute = task.meta["entity"], task.meta["attribute"]
    record = parse_record(next(line for line in lines if line.startswith(entity + " ")))
    assert record.value(attribute) == task.answer


def test_contexts_count_the_given_tokenizer():
    # A counter of whole words: same draw, different lengths; the measured length is its count.
    def words(text):
        return len(text.split())

    task = PreciseRetrievalFamily(context_tokens=200, count_tokens=words).generate("train", 0)
    context = task.prompt.rsplit("\n<q> ", 1)[0]
    lines = context.split("\n")
    assert task.meta["context_tokens"] == sum(words(line) for line in lines) + len(lines) - 1
    assert 200 <= task.meta["context_tokens"] < 200 + max(words(line) for line in lines) + 1
    builtin = PreciseRetrievalFamily(context_tokens=200, count_tokens=COUNT).generate("train", 0)
    assert builtin.answer == task.answer and builtin.prompt != task.prompt


@pytest.mark.parametrize(
    "family, name",
    [
        (PreciseRetrievalFamily(), "longcontext/precise_retrieval"),
        (LongContextFamily(), "longcontext"),
    ],
)
def test_a_family_without_a_counter_names_itself(family, name):
    with pytest.raises(ValueError, match=rf"task family '{name}' .* has no count_tokens"):
        family.generate("train", 0)


def test_the_counter_is_not_part_of_equality_and_is_set_once():
    bare = LongContextFamily(context_tokens=(150, 300), seed=1)
    counted = with_token_counter(bare, COUNT)
    assert isinstance(bare, TokenCountingFamily) and bare.count_tokens is None
    assert counted == bare and hash(counted) == hash(bare) and counted is not bare
    assert all(f.count_tokens is COUNT for f in counted.families)
    assert counted.generate("train", 0).family == "longcontext"  # bare.generate raises
    assert with_token_counter(counted, len) is counted  # a counter already given is kept
    assert PreciseRetrievalFamily(count_tokens=len) == PreciseRetrievalFamily()
