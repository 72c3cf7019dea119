"""Reflection parsing, the reflection judge and the bank (rubric_em.md REM-10, REM-11, section 8.1)."""

import json

import pytest

from rljax.envs.research.reflection import (
    ReflectionBank,
    ReflectionScore,
    parse_reflection,
    reference_block,
    score_reflections,
)


def reflection(rubrics: str, lessons: str) -> str:
    return (
        f"<reflection_rubrics> {rubrics} </reflection_rubrics> "
        f"<reflection_takeaways> {lessons} </reflection_takeaways>"
    )


def test_parse_a_valid_reflection():
    parsed = parse_reflection(
        reflection("[REQ E03 size] [PITFALL blog]", "[LESSON CHECK E03 size] [LESSON CAREFUL]")
    )
    assert parsed.valid and parsed.errors == ()
    assert parsed.rubric_items == ("REQ E03 size", "PITFALL blog")
    assert parsed.lessons == ("LESSON CHECK E03 size", "LESSON CAREFUL")


@pytest.mark.parametrize(
    "text, error",
    [
        ("<reflection_rubrics> </reflection_rubrics>", "exactly one <reflection_rubrics> and one"),
        (
            reflection("", "[LESSON CAREFUL]") + " " + reflection("", "[LESSON CAREFUL]"),
            "exactly one",
        ),
        (
            "<reflection_takeaways> [LESSON CAREFUL] </reflection_takeaways> <reflection_rubrics> </reflection_rubrics>",
            "must come before",
        ),
        (reflection("", ""), "expected 1 to 4 LESSON items, got 0"),
        (reflection("", " ".join(["[LESSON CAREFUL]"] * 5)), "expected 1 to 4 LESSON items, got 5"),
        (
            reflection("[PITFALL rain]", "[LESSON CAREFUL]"),
            "malformed content in <reflection_rubrics>",
        ),
        (reflection("", "[LESSON TRY harder]"), "malformed content in <reflection_takeaways>"),
        ("ok " + reflection("", "[LESSON CAREFUL]"), "text outside the two reflection blocks"),
    ],
)
def test_malformed_reflections_are_invalid(text, error):
    parsed = parse_reflection(text)
    assert not parsed.valid and any(error in e for e in parsed.errors), parsed.errors


def test_reflection_scores_by_hand():
    # Failures {PITFALL blog, PITFALL premature, REQ E00 founded}; the reflection says {REQ E00 founded,
    # PITFALL blog, PITFALL dup}: P = R = 2/3, diag = 2/3. Items: 3 rubric items + CHECK + CAREFUL x2:
    # spec = 4/6. Scope: 3 categories / 3 - 0.1 for the repeated CAREFUL = 0.9.
    # u = 0.4 * 2/3 + 0.3 * 2/3 + 0.3 * 0.9 = 0.736667.
    text = reflection(
        "[REQ E00 founded] [PITFALL blog] [PITFALL dup]",
        "[LESSON CHECK E00 founded] [LESSON CAREFUL] [LESSON CAREFUL]",
    )
    [score] = score_reflections([text], ["PITFALL blog", "PITFALL premature", "REQ E00 founded"])
    assert (score.diagnostic, score.specificity, score.scope) == pytest.approx((2 / 3, 2 / 3, 0.9))
    assert score.valid and score.utility == pytest.approx(
        0.4 * 2 / 3 + 0.3 * 2 / 3 + 0.3 * 0.9, abs=1e-6
    )


def test_reflection_of_a_flawless_trajectory():
    # No failures and no diagnosed items: diag 1; one specific lesson: spec 1; one category: scope 1/3.
    [score] = score_reflections([reflection("", "[LESSON SEARCH E00 founded]")], [])
    assert (score.diagnostic, score.specificity, score.scope) == pytest.approx((1.0, 1.0, 1 / 3))
    assert score.utility == pytest.approx(0.4 + 0.3 + 0.1, abs=1e-6)
    # Diagnosing a failure that did not happen: F1 = 0.
    [wrong] = score_reflections([reflection("[PITFALL dup]", "[LESSON CAREFUL]")], [])
    assert wrong.diagnostic == 0.0 and wrong.specificity == 0.5


def test_invalid_reflections_get_zero_utility():
    scores = score_reflections(
        ["no blocks", reflection("[REQ E00 founded]", "[LESSON CAREFUL]")], ["REQ E00 founded"]
    )
    assert not scores[0].valid and scores[0].utility == 0.0
    assert scores[1].valid and scores[1].utility == pytest.approx(
        0.4 * 1 + 0.3 * 0.5 + 0.3 * 2 / 3, abs=1e-6
    )


def score(utility, valid=True):
    return ReflectionScore(0.0, 0.0, 0.0, valid, utility)


Q1 = "<query> LOOKUP E00 founded city </query>"
Q2 = "<query> LOOKUP E00 size city </query>"  # Jaccard with Q1: 3/5
Q3 = "<query> COMPARE E00 E01 founded </query>"  # 2/6
Q4 = "<query> FILTER size V3 E05 E06 E07 E08 </query>"  # 0
Q5 = "<query> LOOKUP E09 leader product </query>"  # 1/7


def test_bank_keeps_the_best_valid_candidate_and_overwrites():
    bank = ReflectionBank()
    entry = bank.write(
        Q1, ["r0", "r1", "r2", "r3"], [score(0.9, valid=False), score(0.5), score(0.7), score(0.7)]
    )
    assert (entry.reflection, entry.utility) == ("r2", 0.7) and bank.exact(
        Q1
    ) == entry  # ties: the first
    assert bank.write(Q1, ["bad"], [score(0.0, valid=False)]) is None and bank.exact(Q1) == entry
    assert bank.write(Q1, ["r4"], [score(0.1)]).reflection == "r4"  # the latest round overwrites
    assert bank.exact(Q2) is None and len(bank) == 1
    with pytest.raises(ValueError, match="must pair up"):
        bank.write(Q1, ["a", "b"], [score(0.1)])


def test_bank_similarity_retrieval():
    bank = ReflectionBank()
    for q in (Q1, Q2, Q3, Q4, Q5):
        bank.write(q, [f"r-{q}"], [score(0.5)])
    assert [e.question for e in bank.similar(Q1)] == [Q2, Q3]  # top-2, never Q1 itself
    assert [e.question for e in bank.similar(Q1, top_k=5)] == [Q2, Q3, Q5]  # zero similarity: never
    assert (
        reference_block(bank.similar(Q1)) == f"<ref> r-{Q2} r-{Q3} </ref>"
        and reference_block([]) == ""
    )


def test_bank_state_round_trip():
    bank = ReflectionBank()
    bank.write(Q1, ["r1"], [score(0.25)])
    bank.write(Q3, ["r3"], [score(0.75)])
    restored = ReflectionBank()
    restored.set_state(json.loads(json.dumps(bank.get_state())))
    assert restored.exact(Q3) == bank.exact(Q3) and restored.get_state() == bank.get_state()
