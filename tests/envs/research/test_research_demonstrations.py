"""MiniResearch warm-start demonstrations: scripted reflections (valid, judged as worked out by
hand, with their controlled imperfections), their share of the SFT data, and the unstructured
expert (rubric_em.md sections 8.1 and 8.3)."""

import dataclasses

import numpy as np
import pytest

from rljax.data import load_tokenizer
from rljax.envs.research import (
    REFLECTION_IMPERFECTION_RATES,
    SFT_NOISE,
    MiniResearchFamily,
    Query,
    ReflectionEpisode,
    expert_reflection,
    is_reflection_task,
    parse_reflection,
    score_reflections,
)
from rljax.train import sft
from rljax.train.config import ExperimentConfig, SFTSection, TaskSection, TrainSection

LOOKUP = Query("lookup", ("E03",), ("size", "city"))


@pytest.fixture(scope="module")
def family():
    return MiniResearchFamily(seed=0, kinds=("lookup", "compare"), reflection_demos=0.25)


@pytest.mark.parametrize(
    "failures, text, utility",
    [
        # Every failure named, a lesson per wrong fact and per rumor: diag 1, spec 1, scope 3/3.
        (
            ["PITFALL blog", "REQ E03 size"],
            "<reflection_rubrics> [PITFALL blog] [REQ E03 size] </reflection_rubrics> "
            "<reflection_takeaways> [LESSON SEARCH E03 size] [LESSON AVOID blog] "
            "</reflection_takeaways>",
            1.0,
        ),
        # Pitfalls without a wrong fact: the lesson checks the first gold fact.
        (
            ["PITFALL dup"],
            "<reflection_rubrics> [PITFALL dup] </reflection_rubrics> "
            "<reflection_takeaways> [LESSON CHECK E03 size] </reflection_takeaways>",
            0.4 + 0.3 + 0.3 * 2 / 3,
        ),
        # No failure: empty diagnosis (F1 of two empty sets = 1), one lesson, scope 1/3.
        (
            [],
            "<reflection_rubrics> </reflection_rubrics> "
            "<reflection_takeaways> [LESSON CHECK E03 size] </reflection_takeaways>",
            0.4 + 0.3 + 0.3 / 3,
        ),
    ],
)
def test_noiseless_scripted_reflection(failures, text, utility):
    got = expert_reflection(LOOKUP, failures, np.random.default_rng(0), 0.0)
    assert got == text
    assert parse_reflection(got).valid
    (score,) = score_reflections([got], failures)
    assert score.valid and score.utility == pytest.approx(utility, abs=1e-6)


def test_at_most_four_lessons():
    failures = ["PITFALL blog", "REQ E00 size", "REQ E01 size", "REQ E02 size", "REQ E03 size"]
    query = Query("filter", ("E00", "E01", "E02", "E03"), ("size",), "V1")
    parsed = parse_reflection(expert_reflection(query, failures, np.random.default_rng(0), 0.0))
    assert parsed.valid and len(parsed.lessons) == 4
    assert parsed.rubric_items == tuple(failures)


def test_reflection_imperfection_rates_at_the_warm_start_noise():
    failures = ["PITFALL blog", "REQ E03 size"]
    rng = np.random.default_rng(7)
    dropped, generic, n = 0, 0, 4000
    for _ in range(n):
        parsed = parse_reflection(expert_reflection(LOOKUP, failures, rng, SFT_NOISE))
        assert parsed.valid
        dropped += len(parsed.rubric_items) == 1
        generic += "LESSON CAREFUL" in parsed.lessons
    # Binomial(4000, 0.2): standard deviation 0.0063.
    assert dropped / n == pytest.approx(REFLECTION_IMPERFECTION_RATES["drop_item"], abs=0.025)
    assert generic / n == pytest.approx(REFLECTION_IMPERFECTION_RATES["generic_lesson"], abs=0.025)


def test_warm_start_tasks_end_with_reflections_on_noisy_expert_episodes(family):
    tasks = family.warm_start_tasks(40)
    assert tasks == family.warm_start_tasks(40)  # deterministic
    assert [is_reflection_task(t) for t in tasks] == [False] * 30 + [True] * 10
    assert tasks[:30] == [family.generate("train", i) for i in range(30)]
    failures = []
    for index, task in enumerate(tasks[30:], start=30):
        plain = family.generate("train", index)
        assert task.uid == f"{plain.uid}/reflect"
        assert task.prompt.startswith(f"<reflect> {plain.prompt} <plan>")
        assert "<tool_output>" in task.prompt and "<answer>" in task.prompt
        failures.append(task.meta["failures"])
    # At the warm-start rates most of these episodes have failures, of several kinds.
    assert sum(bool(f) for f in failures) >= 4
    assert len({item.split()[0] for f in failures for item in f}) == 2
    assert MiniResearchFamily(seed=0).warm_start_tasks(5) == [
        MiniResearchFamily(seed=0).generate("train", i) for i in range(5)
    ]


def test_reflection_tasks_are_one_turn_episodes_rewarded_by_utility(family):
    task = family.warm_start_tasks(4)[-1]
    episode = family.start(task)
    assert isinstance(episode, ReflectionEpisode)
    (text,) = family.expert_actions(task, np.random.default_rng(0), 0.0)
    assert episode.step(text).done
    verdict = episode.verdict()
    (expected,) = score_reflections([text], task.meta["failures"])
    assert verdict.reward == pytest.approx(expected.utility) and verdict.info["reflection_valid"]
    assert verdict.info["stage_rewards"] == [0.0] * 4
    assert family.verify(task, text).reward == pytest.approx(expected.utility)
    assert family.verify(task, "[LESSON CAREFUL]").reward == 0.0  # malformed


def test_sft_data_contain_the_scripted_reflections(family):
    tokenizer = load_tokenizer()
    config = ExperimentConfig(
        task=TaskSection(
            family="miniresearch",
            kwargs={"kinds": ("lookup", "compare"), "reflection_demos": 0.25},
            max_len=640,
        ),
        train=TrainSection(seed=0),
        sft=SFTSection(steps=1, batch_size=8, noise=SFT_NOISE, num_demos=16),
    )
    batches = sft.demonstrations(family, tokenizer, config)
    texts = [
        tokenizer.decode(
            np.asarray(tokens)[np.asarray(mask) > 0].tolist(), skip_special_tokens=True
        )
        for batch in batches
        for tokens, mask in zip(batch.tokens, batch.action_mask)
    ]
    reflections = [t for t in texts if "<reflection_rubrics>" in t]
    assert len(texts) == 16 and len(reflections) == 4
    assert all(parse_reflection(t).valid for t in reflections)
    assert all("<answer>" in t and "<plan>" in t for t in texts if t not in reflections)


def test_unstructured_expert_writes_the_same_research_without_the_scaffold():
    plain = MiniResearchFamily(seed=0, kinds=("lookup", "compare"))
    bare = dataclasses.replace(plain, scaffold=False)
    for i in range(20):
        task = plain.generate("train", i)
        scaffolded = plain.expert_actions(task, np.random.default_rng(i), SFT_NOISE)
        unstructured = bare.expert_actions(task, np.random.default_rng(i), SFT_NOISE)
        calls = [t[t.index("<call>") :] for t in scaffolded[:-1]]
        assert unstructured[:-1] == calls
        assert unstructured[-1] == scaffolded[-1][scaffolded[-1].index("<answer>") :]
        for tag in ("<plan>", "<state>", "<review>"):
            assert tag not in " ".join(unstructured)
    task = plain.generate("train", 0)
    verdict = bare.verify(task, bare.expert(task, np.random.default_rng(0), 0.0))
    assert verdict.reward == 1.0 and verdict.info["stage_rewards"][:3] == [0.0, 0.0, 0.0]


@pytest.mark.parametrize("share", [-0.1, 1.0])
def test_reflection_share_is_checked(share):
    with pytest.raises(ValueError, match="reflection_demos must be in"):
        MiniResearchFamily(seed=0, reflection_demos=share)
