"""The rule-based stage judge on hand-worked transcripts (rubric_em.md REM-2 and section 8.1)."""

import pytest
from research_world import COMPARE, FLAWED, PERFECT, hand_corpus, make_task, play

from rljax.envs.research.buffer import RubricBuffer
from rljax.envs.research.judge import ProgrammaticJudge, Rubric, StageJudge
from rljax.envs.research.queries import Query

# The question COMPARE E00 E01 founded: E00 founded V3 (reliable 100; rumor 102 says V7), E01 V5 (101).
# search E00 founded shows [100, 102, 101].
KEYS_AND_FLAWED_SCORES = {
    # Plan: NEED E00 yes, NEED E01 no, no AVOID blog, rplan covers 1 of 3 NEEDs (< half), 2 irrelevant NEEDs.
    "plan/need/E00/founded": 2,
    "plan/need/E01/founded": 0,
    "plan/avoid_blog": 0,
    "plan/rplan_covers": 0,
    "plan/irrelevant_need": 2,
    # Research: searched E00 only; opened no reliable doc; opened the rumor while 100 was shown; one
    # duplicate search; DONE before retrieval; 3 calls.
    "research/searched/E00/founded": 2,
    "research/searched/E01/founded": 0,
    "research/opened/E00/founded": 0,
    "research/opened/E01/founded": 0,
    "research/rumor_opened/E00/founded": 2,
    "research/duplicate_call": 1,
    "research/premature_done": 2,
    "research/too_many_calls": 0,
    # Review: E00 mapped to the opened rumor (1), E01 to the unopened 101 (0, and dishonest); no GAP.
    "review/map/E00/founded": 1,
    "review/map/E01/founded": 0,
    "review/map_unopened": 2,
    "review/gap_missing": 2,
    # Answer (adaptive): cites 102 (opened) and 101 (not): some; both FACTs agree with their MAPs.
    "answer/cites_opened": 1,
    "answer/map_consistent": 2,
    # Answer (persistent): E00 wrong (the rumor's V7), E01 right value with an unopened citation,
    # CMP says > (truth <), the rumor value is used.
    "answer/fact/E00/founded": 0,
    "answer/fact/E01/founded": 1,
    "answer/result": 0,
    "answer/rumor_value": 2,
}


def test_rubrics_instantiated_for_a_compare_question():
    judge = ProgrammaticJudge(hand_corpus())
    rubrics = judge.rubrics(make_task(COMPARE))
    assert [r.key for r in rubrics] == list(KEYS_AND_FLAWED_SCORES)
    by_key = {r.key: r for r in rubrics}
    assert (
        by_key["research/premature_done"].weight,
        by_key["research/premature_done"].negative,
    ) == (3, True)
    assert [r.key for r in judge.persistent_rubrics(make_task(COMPARE))] == [
        "answer/fact/E00/founded",
        "answer/fact/E01/founded",
        "answer/result",
        "answer/rumor_value",
    ]
    assert all(
        r.persistent == r.key.startswith(("answer/fact", "answer/result", "answer/rumor"))
        for r in rubrics
    )
    assert isinstance(judge, StageJudge)


def test_rubrics_depend_on_the_template():
    judge = ProgrammaticJudge(hand_corpus())
    lookup = [
        r.key for r in judge.rubrics(make_task(Query("lookup", ("E01",), ("founded", "size"))))
    ]
    assert "answer/result" not in lookup and "answer/excluded" not in lookup
    assert (
        "answer/rumor_value" not in lookup and "plan/avoid_blog" not in lookup
    )  # no rumor about E01
    filt = [
        r.key
        for r in judge.persistent_rubrics(
            make_task(Query("filter", ("E00", "E01", "E02", "E03"), ("founded",), "V0"))
        )
    ]
    assert filt == [f"answer/fact/E0{i}/founded" for i in range(4)] + [
        "answer/result",
        "answer/rumor_value",
        "answer/excluded",
    ]


def test_flawed_transcript_scores_by_hand():
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    transcript = play(hand_corpus(), FLAWED).transcript
    rubrics = judge.rubrics(task)
    assert (
        dict(zip((r.key for r in rubrics), judge.score(task, transcript, rubrics)))
        == KEYS_AND_FLAWED_SCORES
    )
    assert judge.failures(task, transcript) == [
        "PITFALL blog",
        "PITFALL dishonest",
        "PITFALL dup",
        "PITFALL premature",
        "REQ E00 founded",
    ]
    assert judge.process_metrics(task, transcript) == {
        "fact_recall": 0.0,
        "rumor_used": True,
        "duplicate_calls": 1,
        "premature_done": True,
        "dishonest_map": True,
        "calls": 3,
    }


def test_flawed_transcript_stage_scores_follow_rem2():
    # REM-2 with every adaptive rubric active, s~ = 2 - s for negatives:
    # Plan     (2*2 + 0 + 0 + 1*0 + 1*(2-2)) / (2*8)                          = 0.25
    # Research (2*2 + 0 + 0 + 0 + 1*(2-2) + 1*(2-1) + 3*(2-2) + 1*(2-0)) / 28 = 0.25
    # Review   (2*1 + 0 + 3*(2-2) + 1*(2-2)) / 16                             = 0.125
    # Answer   (persistent 2*0 + 2*1 + 2*0 + 3*0, adaptive 1*1 + 1*2) / 22    = 5/22
    # reward   (persistent only) 2 / 18
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    buffer = RubricBuffer(caps=(10, 10, 10, 10))
    adaptive = [r for r in judge.rubrics(task) if not r.persistent]
    buffer.set_state(
        {task.meta["question"]: [[r.to_json() for r in adaptive if r.stage == k] for k in range(4)]}
    )
    [scores] = buffer.judge_group(
        judge,
        task,
        [play(hand_corpus(), FLAWED).transcript],
        question=task.meta["question"],
        update=False,
    )
    assert scores.stage_rewards == pytest.approx((0.25, 0.25, 0.125, 5 / 22), abs=1e-6)
    assert scores.reward == pytest.approx(2 / 18, abs=1e-6) and not scores.judge_failed


def test_perfect_transcript_gets_full_marks():
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    transcript = play(hand_corpus(), PERFECT).transcript
    rubrics = judge.rubrics(task)
    assert judge.score(task, transcript, rubrics) == [0 if r.negative else 2 for r in rubrics]
    assert judge.failures(task, transcript) == []


@pytest.mark.parametrize(
    "answer, expected",
    [
        ("[CMP E00 E01 <]", 2),
        ("[CMP E01 E00 >]", 2),
        ("[CMP E01 E00 <]", 0),
        ("[CMP E00 E02 <]", 0),
        ("", 0),
    ],
)
def test_comparison_may_name_the_pair_in_either_order(answer, expected):
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    transcript = play(hand_corpus(), [f"<plan> </plan> <answer> {answer} </answer>"]).transcript
    result = [r for r in judge.persistent_rubrics(task) if r.key == "answer/result"]
    assert judge.score(task, transcript, result) == [expected]


def test_filter_selection_and_excluded_entities():
    # FILTER founded V0 E00 E01 E02 E03: E02 and E03 have V0.
    judge = ProgrammaticJudge(hand_corpus())
    task = make_task(Query("filter", ("E00", "E01", "E02", "E03"), ("founded",), "V0"))
    keys = ["answer/result", "answer/excluded"]
    rubrics = [r for r in judge.persistent_rubrics(task) if r.key in keys]
    for selection, expected in [
        ("[SEL E02] [SEL E03]", [2, 0]),
        ("[SEL E03] [SEL E02]", [2, 0]),
        ("[SEL E02]", [0, 0]),
        ("[SEL E02] [SEL E03] [SEL E01]", [0, 2]),
    ]:
        transcript = play(
            hand_corpus(), [f"<plan> </plan> <answer> {selection} </answer>"]
        ).transcript
        assert judge.score(task, transcript, rubrics) == expected, selection


def test_rplan_coverage_grades_and_truncated_transcripts():
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    rplan = [r for r in judge.rubrics(task) if r.key == "plan/rplan_covers"]
    cases = [
        ("[NEED E00 founded] [NEED E01 founded]", "[SEARCH E00 founded]", 1),  # half
        ("[NEED E00 founded] [NEED E01 founded]", "[SEARCH E01 founded] [SEARCH E00 founded]", 2),
        ("[NEED E00 founded] [NEED E01 founded] [NEED E02 city]", "[SEARCH E02 city]", 0),
        ("", "[SEARCH E00 founded]", 0),
    ]  # no NEED: nothing covered
    for needs, searches, expected in cases:
        turn = f"<plan> <rubric> {needs} </rubric> <rplan> {searches} </rplan> </plan> <call> open 100 </call>"
        assert judge.score(task, play(hand_corpus(), [turn]).transcript, rplan) == [expected]
    truncated = play(hand_corpus(), ["<call> open 100 </call>"]).transcript  # no plan, no answer
    assert judge.score(task, truncated, judge.persistent_rubrics(task)) == [0, 0, 0, 0]


def test_unknown_rubric_keys_are_rejected():
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    with pytest.raises(
        ValueError, match="rubric key 'plan/vibes' is not a ProgrammaticJudge predicate"
    ):
        judge.score(
            task, play(hand_corpus(), PERFECT).transcript, [Rubric("plan/vibes", 0, 1, False, "x")]
        )


def test_rubric_validation():
    with pytest.raises(ValueError, match="weight in"):
        Rubric("x", 0, 5, False, "x")
    with pytest.raises(ValueError, match="persistent rubrics belong to the Answer stage"):
        Rubric("x", 1, 2, False, "x", persistent=True)
    rubric = Rubric("answer/result", 3, 2, False, "x", persistent=True)
    assert Rubric.from_json(rubric.to_json()) == rubric


def test_malformed_answer_items_earn_nothing():
    # PERFECT's research, then an answer whose E00 FACT lacks "CITE" (dropped with an error) and no CMP:
    # persistent scores fact E00 0, fact E01 2, result 0, rumor value avoided (s~ = 2):
    # reward = (2*0 + 2*2 + 2*0 + 3*2) / (2 * 9) = 10/18.
    judge, task = ProgrammaticJudge(hand_corpus()), make_task(COMPARE)
    final = (
        "<state> DONE </state> <review> [MAP E00 founded 100] [MAP E01 founded 101] </review> "
        "<answer> [FACT E00 founded V3 100] [FACT E01 founded V5 CITE 101] </answer>"
    )
    episode = play(hand_corpus(), PERFECT[:-1] + [final])
    assert judge.score(task, episode.transcript, judge.persistent_rubrics(task)) == [0, 2, 0, 0]
    [scores] = RubricBuffer().judge_group(
        judge, task, [episode.transcript], question=task.meta["question"], update=False
    )
    assert scores.reward == pytest.approx(10 / 18, abs=1e-6)
    assert judge.failures(task, episode.transcript) == ["REQ E00 founded"]
