"""The RubricEM study's arms and probe pieces: the five arms of rubric_em.md 8.3 share one warm
start (the unstructured arm its own), train on two templates and hold the third out; the probe's
stage scores and replayed transcripts agree with hand-known episodes."""

import dataclasses

import numpy as np
import pytest
from rljax.experiments.studies import rubric_em

from rljax.envs.research import MiniResearchFamily
from rljax.train.sft import fingerprint


@pytest.mark.parametrize("smoke", [True, False])
def test_arms(smoke):
    study = rubric_em.STUDY
    configs = {arm: study.run_config(arm, 2, smoke=smoke) for arm in study.arms}
    assert {c.method.name for c in configs.values()} == {"rubric_em"}
    broadcast = {a for a, c in configs.items() if c.method.kwargs.get("terminal_broadcast")}
    assert broadcast == {"answer_only", "answer_only_meta", "unstructured"}
    assert all(not c.method.kwargs.get("dependence") for c in configs.values())  # paper Lambda
    reflecting = {a for a, c in configs.items() if c.train.reflection is not None}
    assert reflecting == {"answer_only_meta", "rubric_em"}
    bare = {a for a, c in configs.items() if c.task.kwargs.get("scaffold") is False}
    assert bare == {"unstructured"}
    prints = {arm: fingerprint(c) for arm, c in configs.items()}
    assert len({prints[a] for a in study.arms if a != "unstructured"}) == 1
    assert prints["unstructured"] != prints["answer_only"]
    base = configs["answer_only"]
    assert configs["unstructured"].sft == base.sft  # same SFT settings, other demonstrations
    kwargs = base.task.kwargs
    assert tuple(kwargs["kinds"]) == rubric_em.TRAIN_TEMPLATES
    assert rubric_em.HELDOUT_TEMPLATE not in kwargs["kinds"]
    assert 0 < kwargs["reflection_demos"] < 1
    assert base.train.seed == 2 and study.metric == "mean_reward"


def test_reflection_budget_fits_the_scripted_reflections():
    # The longest scripted reflection on a training template (both facts wrong, every pitfall,
    # three lessons) and its end token, in the policy's tokens.
    from rljax.train.components import policy_tokenizer

    tokenizer = policy_tokenizer(rubric_em.config().model)
    family = MiniResearchFamily(seed=0, kinds=("compare",))
    query = family.generate("train", 0).meta["query"]
    entities = query["entities"]
    attribute = query["attributes"][0]
    failures = sorted(
        [f"REQ {e} {attribute}" for e in entities]
        + ["PITFALL blog", "PITFALL dup", "PITFALL dishonest", "PITFALL premature"]
    )
    task = family.reflection_task(
        family.generate("train", 0), {"transcript": "", "failures": failures}
    )
    (text,) = family.expert_actions(task, np.random.default_rng(0), 0.0)
    assert len(tokenizer(text)["input_ids"]) + 1 <= rubric_em.REFLECTION_TOKENS


@pytest.mark.parametrize("heldout", [False, True])
def test_turn_budget_fits_the_scripted_teacher(heldout):
    # Every turn of the teacher's episodes (its end token included) fits the per-turn generation
    # budget: a policy that imitates it must be able to finish its answer. The study's training
    # templates use the task's budget, the probe's held-out template its own.
    from rljax.train.components import policy_tokenizer

    tokenizer = policy_tokenizer(rubric_em.config().model)
    kinds = (rubric_em.HELDOUT_TEMPLATE,) if heldout else rubric_em.TRAIN_TEMPLATES
    budget = rubric_em.HELDOUT_TEMPLATE_TURN_TOKENS if heldout else rubric_em.TASK.max_new_tokens
    family = MiniResearchFamily(seed=0, kinds=kinds)
    rng = np.random.default_rng(0)
    longest = 0
    for i in range(60):
        for noise in (0.0, 1.0):
            turns = family.expert_actions(family.generate("train", i), rng, noise)
            longest = max(longest, *(len(tokenizer(t)["input_ids"]) + 1 for t in turns))
    assert 60 < longest <= budget, (longest, budget)


def _episode(family, task, actions):
    episode = family.start(task)
    for action in actions:
        if episode.step(action).done:
            break
    return episode


def test_transcript_of_replays_the_episode():
    family = MiniResearchFamily(seed=0, kinds=rubric_em.TRAIN_TEMPLATES)
    for i in range(6):
        task = family.generate("heldout", i)
        episode = _episode(family, task, family.expert_actions(task, np.random.default_rng(i), 0.5))
        got = rubric_em.transcript_of(family, episode.verdict().info["transcript"])
        want = episode.transcript
        assert (got.plan, got.calls, got.states, got.review, got.answer) == (
            want.plan, want.calls, want.states, want.review, want.answer
        )  # fmt: skip


def test_full_stage_scores_of_hand_known_episodes():
    family = MiniResearchFamily(seed=0, kinds=rubric_em.TRAIN_TEMPLATES)
    bare = dataclasses.replace(family, scaffold=False)
    for i in range(4):
        task = family.generate("heldout", i)
        # The noiseless expert earns full marks on every predicate of every stage.
        expert = _episode(family, task, family.expert_actions(task, np.random.default_rng(i)))
        np.testing.assert_allclose(
            rubric_em.full_stage_scores(family, task, expert.transcript), [1, 1, 1, 1]
        )
        # Without the scaffold: no plan and no review (absent stages score 0); the research and
        # the answer are the expert's, but with no MAP the answer's "consistent with own MAP"
        # rubric (weight 1) scores 0: it loses 2 of the stage's 2 * (sum of weights).
        plain = _episode(family, task, bare.expert_actions(task, np.random.default_rng(i)))
        got = rubric_em.full_stage_scores(family, task, plain.transcript)
        weights = sum(r.weight for r in family.truth.rubrics(task) if r.stage == 3)
        assert got[0] == got[2] == 0.0 and got[1] == pytest.approx(1.0)
        assert got[3] == pytest.approx(1 - 1 / weights)
