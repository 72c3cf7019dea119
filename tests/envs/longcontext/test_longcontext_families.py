"""The nine long-context families: gold answers vs an independent solver, determinism, splits, experts."""

import hashlib
import re

import numpy as np
import pytest

from rljax.data import load_tokenizer, token_counter
from rljax.envs.base import TaskFamily
from rljax.envs.longcontext import CAPABILITY_FAMILIES, CAPABILITY_NAMES

SHORT = (150, 400)  # short contexts keep these tests fast; one test checks the length knob
TOKENIZER = load_tokenizer()
COUNT = token_counter(TOKENIZER)


def _context_lines(task):
    context, question = task.prompt.rsplit("\n<q> ", 1)
    return context.split("\n"), question


def _records(lines):
    """Entity records parsed with a regex of the documented line format (not the library's parser)."""
    pattern = re.compile(
        r"(E\d+) color = (\w+)( !)? city = (\w+)( !)? year = (\d+)( !)? score = (\d+)( !)? ;"
    )
    found = []
    for line in lines:
        match = pattern.fullmatch(line)
        if match:
            entity, color, f1, city, f2, year, f3, score, f4 = match.groups()
            flags = [
                name for name, f in zip(("color", "city", "year", "score"), (f1, f2, f3, f4)) if f
            ]
            found.append(
                {
                    "entity": entity,
                    "color": color,
                    "city": city,
                    "year": year,
                    "score": score,
                    "flags": flags,
                }
            )
    return found


def _solve(task):
    """Reference solver: reads the prompt as a reader would and computes the gold answer."""
    lines, question = _context_lines(task)
    rows = _records(lines)
    by_id = {r["entity"]: r for r in rows}
    assert len(by_id) == len(rows), "entity ids must be unique within a context"
    if task.task_id == 0:
        attribute, entity = re.fullmatch(r"value of (\w+) for (E\d+) \?", question).groups()
        return by_id[entity][attribute]
    if task.task_id == 1:
        item, listing = re.fullmatch(r"who holds (I\d+) at the end \? (.*)", question).groups()
        holder = None
        for line in lines:
            if m := re.fullmatch(rf"(E\d+) has {item} ;", line):
                holder = m.group(1)
            elif m := re.fullmatch(rf"(E\d+) gives {item} to (E\d+) ;", line):
                assert m.group(1) == holder, "a transfer must come from the current holder"
                holder = m.group(2)
        options = dict(zip(listing.split()[::2], listing.split()[1::2]))
        return [letter for letter, entity in options.items() if entity == holder][0]
    if task.task_id == 2:
        color = re.fullmatch(r"all entities with color = (\w+)", question).group(1)
        return sorted(r["entity"] for r in rows if r["color"] == color)
    if task.task_id == 3:
        if m := re.fullmatch(r"total score of entities with city = (\w+)", question):
            return sum(int(r["score"]) for r in rows if r["city"] == m.group(1))
        a, b = re.fullmatch(r"year of (E\d+) minus year of (E\d+)", question).groups()
        return int(by_id[a]["year"]) - int(by_id[b]["year"])
    if task.task_id == 4:
        city = re.fullmatch(
            r"rows \( entity , year \) for entities with city = (\w+)", question
        ).group(1)
        return sorted(f"{r['entity']} , {r['year']}" for r in rows if r["city"] == city)
    if task.task_id == 5:
        sources = {"A": {}, "B": {}}
        for line in lines:
            if m := re.fullmatch(r"SRC_([AB]) (E\d+) year = (\d+) ;", line):
                sources[m.group(1)][m.group(2)] = m.group(3)
        assert sources["A"].keys() == sources["B"].keys()
        return sorted(e for e in sources["A"] if sources["A"][e] != sources["B"][e])
    if task.task_id == 6:
        k = int(re.fullmatch(r"top (\d) entities by score", question).group(1))
        ranked = sorted(rows, key=lambda r: -int(r["score"]))
        assert int(ranked[k - 1]["score"]) > int(ranked[k]["score"]), (
            "the top k must be unambiguous"
        )
        return [r["entity"] for r in ranked[:k]]
    if task.task_id == 7:
        events = [re.fullmatch(r"(V\d+) day = (\d\d) ;", line) for line in lines]
        events = [m.groups() for m in events if m]
        assert len({day for _, day in events}) == len(events)
        return [event for event, _ in sorted(events, key=lambda e: int(e[1]))]
    assert task.task_id == 8
    return "\n".join(f"{r['entity']} {f} {r[f]} ;" for r in rows for f in r["flags"])


def _unordered(task_id, answer):
    return sorted(answer) if task_id in (2, 4, 5) else answer


@pytest.fixture(params=CAPABILITY_FAMILIES, ids=CAPABILITY_NAMES)
def family(request):
    return request.param(context_tokens=SHORT, seed=5, count_tokens=COUNT)


def test_task_ids_and_names_follow_the_documented_order():
    assert [f.task_id for f in CAPABILITY_FAMILIES] == list(range(9))
    assert [f().name for f in CAPABILITY_FAMILIES] == [f"longcontext/{n}" for n in CAPABILITY_NAMES]
    assert [f.metric for f in CAPABILITY_FAMILIES] == [
        "exact_match",
        "accuracy",
        "set_f1",
        "numeric_exact_match",
        "iou",
        "sub_em",
        "ndcg",
        "pairwise_accuracy",
        "rouge_l",
    ]


def test_gold_answer_matches_an_independent_solver(family):
    assert isinstance(family, TaskFamily)
    for index in range(25):
        task = family.generate("train", index)
        assert task.task_id == family.task_id and task.uid == f"{family.name}/train/{index}"
        assert _unordered(task.task_id, task.answer) == _solve(task)


def test_deterministic_and_seed_dependent(family):
    again = type(family)(context_tokens=SHORT, seed=5, count_tokens=COUNT)
    other = type(family)(context_tokens=SHORT, seed=6, count_tokens=COUNT)
    tasks = [family.generate("heldout", i) for i in range(6)]
    assert tasks == [again.generate("heldout", i) for i in range(6)]
    assert tasks != [other.generate("heldout", i) for i in range(6)]


def test_splits_are_disjoint_by_the_documented_content_hash(family):
    def content(task):
        return "\n".join(task.meta["evidence"]) + "\n<q> " + _context_lines(task)[1]

    def hashed_split(text):
        unit = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
        return "heldout" if unit < 0.2 else "train"

    train = {content(family.generate("train", i)) for i in range(30)}
    heldout = {content(family.generate("heldout", i)) for i in range(15)}
    assert len(train) == 30 and len(heldout) == 15 and not train & heldout
    assert {hashed_split(c) for c in train} == {"train"}
    assert {hashed_split(c) for c in heldout} == {"heldout"}


def test_expert_noise_zero_solves_and_noise_one_always_costs(family):
    rng = np.random.default_rng(0)
    for index in range(30):
        task = family.generate("train", index)
        clean = family.verify(task, family.expert(task, rng, noise=0.0))
        assert clean.reward == pytest.approx(1.0, abs=1e-9) and clean.info["reason"].startswith(
            "correct"
        )
        noisy = family.verify(task, family.expert(task, rng, noise=1.0))
        assert noisy.reward < 1.0 - 1e-6, (
            task.answer,
            family.expert(task, np.random.default_rng(0), 1.0),
        )


def test_expert_format_and_bad_noise(family):
    task = family.generate("train", 0)
    response = family.expert(task, np.random.default_rng(0))
    assert response.startswith("<think> ") and response.count("</think>") == 1
    assert response.endswith("\n</answer>")
    with pytest.raises(ValueError, match="noise must be in"):
        family.expert(task, np.random.default_rng(0), noise=1.5)


def test_context_respects_the_length_target(family):
    for index in range(10):
        task = family.generate("train", index)
        lines, _ = _context_lines(task)
        own = len(task.meta["evidence"]) + len(task.meta["distractors"])
        assert SHORT[0] <= task.meta["target_tokens"] <= SHORT[1]
        tokens, target = task.meta["context_tokens"], task.meta["target_tokens"]
        assert tokens <= SHORT[1]
        # Filler is added only while the context is below its target, and stops before a line
        # that would pass the range's top.
        longest = max(COUNT(line) for line in lines) + 1
        assert tokens - longest < target or len(lines) == own
        assert tokens >= target or SHORT[1] - tokens < longest
        assert set(task.meta["evidence"]) | set(task.meta["distractors"]) <= set(lines)


def test_every_context_lies_in_the_range_and_every_response_in_its_budget(family):
    # The GoLongRL cpu preset's sizes. Before the generators sized their structures to the range,
    # structured matching's 8-15 listed entities made 300-570-token contexts, comprehension's
    # stories up to 360, and the expert's thinking (every evidence line) 50-540-token responses.
    sized = type(family)(context_tokens=(150, 300), response_tokens=47, count_tokens=COUNT)
    for index in range(40):
        task = sized.generate("train", index)
        context = "\n".join(_context_lines(task)[0])
        measured = len(TOKENIZER(context, add_special_tokens=False)["input_ids"])
        assert measured == task.meta["context_tokens"] and 150 <= measured <= 300, task.uid
        for noise in (0.0, 1.0):
            response = sized.expert(task, np.random.default_rng(index), noise=noise)
            assert COUNT(response) <= 47, (noise, response)


def test_budgets_that_no_draft_fits_are_refused_naming_the_smallest_draw():
    # Structured matching lists at least 8 entities in two sources: 16 lines of ~16 tokens.
    tight = CAPABILITY_FAMILIES[5](context_tokens=(100, 200), count_tokens=COUNT)
    with pytest.raises(
        ValueError, match=r"structured_matching: no draft in 200 fits .*\(100, 200\)"
    ):
        tight.generate("train", 0)
    # Sequence ordering answers at least 5 event ids (3 tokens each, one line each).
    terse = CAPABILITY_FAMILIES[7](context_tokens=SHORT, response_tokens=20, count_tokens=COUNT)
    with pytest.raises(ValueError, match=r"response_tokens=20 .* a 3[0-9]-token response"):
        terse.generate("train", 0)


def test_drafts_shrink_to_the_budgets():
    # Sequence ordering's 5-10 events: a 47-token response holds at most 8 ids.
    family = CAPABILITY_FAMILIES[7](
        context_tokens=SHORT, response_tokens=47, seed=3, count_tokens=COUNT
    )
    sizes = {len(family.generate("train", i).answer) for i in range(40)}
    assert max(sizes) == 8 and min(sizes) == 5
    unbounded = CAPABILITY_FAMILIES[7](context_tokens=SHORT, seed=3, count_tokens=COUNT)
    assert max(len(unbounded.generate("train", i).answer) for i in range(40)) > 8


def _near(a, b):
    x, y = a[1:], b[1:]
    if len(x) != len(y) or x == y:
        return False
    diff = [i for i in range(len(x)) if x[i] != y[i]]
    swapped = (
        len(diff) == 2
        and diff[1] == diff[0] + 1
        and x[diff[0]] == y[diff[1]]
        and x[diff[1]] == y[diff[0]]
    )
    one_off = len(diff) == 1 and (int(x[diff[0]]) - int(y[diff[0]])) % 10 in (1, 9)
    return swapped or one_off


def test_near_duplicate_distractors():
    family = CAPABILITY_FAMILIES[0](context_tokens=SHORT, near_duplicates=3, count_tokens=COUNT)
    for index in range(10):
        task = family.generate("train", index)
        ids = [line.split()[0] for line in task.meta["distractors"]]
        assert len(ids) == 3 and all(_near(i, task.meta["entity"]) for i in ids)
    none = CAPABILITY_FAMILIES[0](
        context_tokens=SHORT, near_duplicates=0, count_tokens=COUNT
    ).generate("train", 0)
    assert none.meta["distractors"] == []


def test_comprehension_options_hold_the_final_and_previous_holders():
    family = CAPABILITY_FAMILIES[1](context_tokens=SHORT, count_tokens=COUNT)
    for index in range(10):
        task = family.generate("train", index)
        item = task.meta["item"]
        transfers = [line for line in task.meta["evidence"] if f" gives {item} to " in line]
        assert 6 <= len(transfers) <= 12
        options = task.meta["options"]
        assert options[task.answer] == transfers[-1].split()[-2]
        assert options[task.meta["previous"]] == transfers[-1].split()[0]
        assert len(set(options.values())) == 4


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"context_tokens": 0}, "context_tokens must be"),
        ({"context_tokens": (500, 100)}, "context_tokens must be"),
        ({"near_duplicates": -1}, "near_duplicates must be"),
        ({"response_tokens": 0}, "response_tokens must be an int >= 1 or None, got 0"),
        ({"response_tokens": 4.5}, "response_tokens must be an int >= 1 or None, got 4.5"),
        ({"heldout_fraction": 0.0}, "heldout_fraction must be"),
    ],
)
def test_bad_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        CAPABILITY_FAMILIES[0](**kwargs)
    with pytest.raises(ValueError, match="rouge_f must be one of"):
        CAPABILITY_FAMILIES[8](rouge_f="lcs")
