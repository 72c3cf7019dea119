"""Rubric buffer: generate, score, prune to caps, fallbacks, state (rubric_em.md REM-2, REM-9)."""

import json

import pytest
from research_world import COMPARE, make_task

from rljax.envs.research.buffer import RubricBuffer
from rljax.envs.research.grammar import Answer, Call, CallRecord, Plan, Review, Transcript
from rljax.envs.research.judge import Rubric, StageJudge

PERSISTENT = Rubric("p", 3, 2, False, "persistent", persistent=True)


def rubric(key, stage=1, weight=1, negative=False):
    return Rubric(key, stage, weight, negative, key)


def transcript(name, *, plan=True):
    """A transcript with every stage present (plan optional); `segments` names it for the fake judge."""
    return Transcript(
        plan=Plan() if plan else None,
        calls=[CallRecord(Call("open", ("001",)), ())],
        review=Review(),
        answer=Answer(),
        segments=[name],
    )


class ScriptedJudge:
    """A `StageJudge` whose proposals and scores are given: scores[transcript name][rubric key]."""

    def __init__(self, proposals, scores, fail_adaptive=(), fail_persistent=()):
        self.proposals, self.scores = proposals, scores
        self.fail_adaptive, self.fail_persistent = fail_adaptive, fail_persistent
        self.seen_active = None

    def persistent_rubrics(self, task):
        return [PERSISTENT]

    def propose(self, task, transcripts, active, limits):
        self.seen_active = [[r.key for r in stage] for stage in active]
        return self.proposals

    def score(self, task, transcript, rubrics):
        name = transcript.segments[0]
        persistent = all(r.persistent for r in rubrics)
        if name in (self.fail_persistent if persistent else self.fail_adaptive):
            return None
        return [self.scores[name][r.key] for r in rubrics]


TASK = make_task(COMPARE)
Q = TASK.meta["question"]


def preload(buffer, stages):
    buffer.set_state({Q: [[r.to_json() for r in stage] for stage in stages]})


def test_generate_score_prune_step():
    # Stage 1 holds a (oldest), b; the judge adds c, d; cap 3 forces one removal.
    # Variances over the 3 rollouts: a [0,0,0] -> 0, b [0,2,0] -> 8/9, c [1,1,1] -> 0, d [0,2,2] -> 8/9:
    # a and c tie at 0 and the oldest, a, goes.
    a, b, c, d = (
        rubric("a"),
        rubric("b", weight=2),
        rubric("c", negative=True),
        rubric("d", weight=3),
    )
    scores = {
        "t0": {"p": 2, "a": 0, "b": 0, "c": 1, "d": 0},
        "t1": {"p": 1, "a": 0, "b": 2, "c": 1, "d": 2},
        "t2": {"p": 0, "a": 0, "b": 0, "c": 1, "d": 2},
    }
    judge = ScriptedJudge([[], [c, d], [], []], scores)
    assert isinstance(judge, StageJudge)
    buffer = RubricBuffer(caps=(3, 3, 2, 3))
    preload(buffer, [[], [a, b], [], []])
    out = buffer.judge_group(judge, TASK, [transcript(n) for n in scores], question=Q, update=True)
    assert judge.seen_active == [[], ["a", "b"], [], []]
    assert [r.key for r in buffer.active(Q)[1]] == ["b", "c", "d"]
    # Research scores use a, b, c, d (scored before pruning), weights 1, 2, 1, 3; c is negative:
    # t0: (0 + 0 + 1*(2-1) + 0) / (2*7) = 1/14; t1: (0 + 4 + 1 + 6) / 14 = 11/14; t2: (0 + 0 + 1 + 6) / 14 = 7/14.
    assert [s.stage_rewards[1] for s in out] == pytest.approx([1 / 14, 11 / 14, 7 / 14], abs=1e-6)
    # Stages without rubrics score 0; the Answer stage and the reward use the persistent rubric: s / 2.
    assert [s.stage_rewards[0] for s in out] == [0.0, 0.0, 0.0]
    assert [s.reward for s in out] == [1.0, 0.5, 0.0] and [s.stage_rewards[3] for s in out] == [
        1.0,
        0.5,
        0.0,
    ]


def test_prune_drops_lowest_variance_until_the_cap():
    rubrics = [rubric(k) for k in "abcd"]
    scores = {
        "t0": {"p": 0, "a": 2, "b": 0, "c": 1, "d": 0},
        "t1": {"p": 0, "a": 0, "b": 0, "c": 2, "d": 2},
    }
    # Variances: a 1, b 0, c 0.25, d 1; cap 2 removes b, then c.
    buffer = RubricBuffer(caps=(3, 2, 2, 3))
    buffer.judge_group(
        ScriptedJudge([[], rubrics, [], []], scores),
        TASK,
        [transcript("t0"), transcript("t1")],
        question=Q,
        update=True,
    )
    assert [r.key for r in buffer.active(Q)[1]] == ["a", "d"]


def test_no_update_scores_without_changing_the_buffer():
    a = rubric("a")
    buffer = RubricBuffer()
    preload(buffer, [[], [a], [], []])
    before = buffer.get_state()
    judge = ScriptedJudge([[], [rubric("new")], [], []], {"t0": {"p": 2, "a": 2}})
    [out] = buffer.judge_group(judge, TASK, [transcript("t0")], question=Q, update=False)
    assert buffer.get_state() == before and judge.seen_active is None
    assert out.stage_rewards == (0.0, 1.0, 0.0, 1.0)


def test_a_failed_generation_adds_nothing():
    buffer = RubricBuffer()
    buffer.judge_group(
        ScriptedJudge(None, {"t0": {"p": 2}}), TASK, [transcript("t0")], question=Q, update=True
    )
    assert buffer.active(Q) == [[], [], [], []] and buffer.get_state() == {}


def test_a_failed_scoring_call_falls_back_to_the_answer_score():
    a = rubric("a", stage=0)
    scores = {"t0": {"p": 1, "a": 2}, "t1": {"p": 2, "a": 0}}
    buffer = RubricBuffer()
    preload(buffer, [[a], [], [], []])
    out = buffer.judge_group(
        ScriptedJudge(None, scores, fail_adaptive=("t0",)),
        TASK,
        [transcript("t0"), transcript("t1")],
        question=Q,
        update=False,
    )
    assert out[0].stage_rewards == (0.5, 0.5, 0.5, 0.5) and out[0].judge_failed
    assert out[1].stage_rewards == (0.0, 0.0, 0.0, 1.0) and not out[1].judge_failed


def test_a_failed_persistent_score_raises():
    with pytest.raises(RuntimeError, match="failed to score the persistent rubrics"):
        RubricBuffer().judge_group(
            ScriptedJudge(None, {"t0": {"p": 2}}, fail_persistent=("t0",)),
            TASK,
            [transcript("t0")],
            question=Q,
            update=False,
        )


def test_an_absent_stage_scores_zero():
    buffer = RubricBuffer()
    preload(buffer, [[rubric("a", stage=0)], [], [], []])
    [out] = buffer.judge_group(
        ScriptedJudge(None, {"t0": {"p": 2, "a": 2}}),
        TASK,
        [transcript("t0", plan=False)],
        question=Q,
        update=False,
    )
    assert out.stage_rewards[0] == 0.0 and out.reward == 1.0


def test_bad_proposals_are_rejected():
    buffer = RubricBuffer()
    preload(buffer, [[], [rubric("a")], [], []])
    for proposals, message in [
        ([[rubric("x", stage=2)], [], [], []], "for stage 0 must be a new adaptive"),
        ([[], [rubric("a")], [], []], "for stage 1 must be a new adaptive"),
    ]:
        with pytest.raises(ValueError, match=message):
            buffer.judge_group(
                ScriptedJudge(proposals, {}), TASK, [transcript("t0")], question=Q, update=True
            )


def test_state_round_trip_through_json():
    buffer = RubricBuffer()
    preload(
        buffer,
        [
            [rubric("a", stage=0)],
            [rubric("b"), rubric("c", negative=True)],
            [],
            [rubric("d", stage=3)],
        ],
    )
    restored = RubricBuffer()
    restored.set_state(json.loads(json.dumps(buffer.get_state())))
    assert restored.active(Q) == buffer.active(Q) and restored.get_state() == buffer.get_state()
    with pytest.raises(ValueError, match="must hold 4 stages"):
        restored.set_state({Q: [[]]})


@pytest.mark.parametrize("kwargs", [dict(caps=(3, 2, 2)), dict(additions=(1, 1, 1, -1))])
def test_bad_caps(kwargs):
    with pytest.raises(ValueError, match="must be 4 non-negative ints"):
        RubricBuffer(**kwargs)
