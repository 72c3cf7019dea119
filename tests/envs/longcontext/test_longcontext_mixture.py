"""The mixed long-context family, its registry names and the per-task evaluation helper."""

import collections
import dataclasses

import numpy as np
import pytest
from rljax.experiments import golong

from rljax.data import load_tokenizer, token_counter
from rljax.data.chat import render_prompt
from rljax.envs import registry
from rljax.envs.base import Task, TaskFamily, Verdict, WarmStartFamily
from rljax.envs.longcontext import (
    CAPABILITY_FAMILIES,
    CAPABILITY_NAMES,
    NUM_TASKS,
    PAPER_WEIGHTS,
    LongContextFamily,
    per_task_mean_reward,
)

SHORT = (150, 300)
COUNT = token_counter(load_tokenizer())


def test_registry_names():
    names = set(registry.names())
    assert {"longcontext"} | {f"longcontext/{n}" for n in CAPABILITY_NAMES} <= names
    assert registry.make("longcontext", context_tokens=SHORT) == LongContextFamily(
        context_tokens=SHORT
    )
    for cls, capability in zip(CAPABILITY_FAMILIES, CAPABILITY_NAMES):
        assert registry.make(f"longcontext/{capability}", seed=3) == cls(seed=3)


def test_uniform_default_samples_every_capability():
    family = LongContextFamily(context_tokens=SHORT, seed=1, count_tokens=COUNT)
    assert isinstance(family, TaskFamily)
    tasks = [family.generate("train", i) for i in range(90)]
    counts = collections.Counter(t.task_id for t in tasks)
    assert set(counts) == set(range(NUM_TASKS))
    assert all(
        t.uid == f"longcontext/train/{i}" and t.family == "longcontext" for i, t in enumerate(tasks)
    )
    assert all(t.meta["capability"] == CAPABILITY_NAMES[t.task_id] for t in tasks)
    rng = np.random.default_rng(0)
    assert all(family.verify(t, family.expert(t, rng)).reward == pytest.approx(1.0) for t in tasks)


def test_paper_weights():
    assert sum(PAPER_WEIGHTS) == pytest.approx(1.0)
    assert sum(PAPER_WEIGHTS[:4]) == pytest.approx(0.9) and PAPER_WEIGHTS[4] == 0.05
    family = LongContextFamily(
        weights=PAPER_WEIGHTS, context_tokens=1, near_duplicates=0, count_tokens=COUNT
    )
    # Which capability a task gets is drawn first, so the ids can be counted without the contexts.
    draws = [
        int(registry.instance_rng(0, "train", i).choice(NUM_TASKS, p=family.weights))
        for i in range(4000)
    ]
    shares = np.bincount(draws, minlength=NUM_TASKS) / len(draws)
    assert shares[:4].sum() == pytest.approx(0.9, abs=0.02) and shares[4] == pytest.approx(
        0.05, abs=0.01
    )
    assert [family.generate("train", i).task_id for i in range(40)] == draws[:40]


def test_single_capability_weights_and_normalisation():
    family = LongContextFamily(
        weights=[0, 0, 0, 0, 0, 0, 0, 2, 0], context_tokens=SHORT, count_tokens=COUNT
    )
    assert family.weights == (0, 0, 0, 0, 0, 0, 0, 1.0, 0)
    assert {family.generate("heldout", i).task_id for i in range(10)} == {7}


def test_warm_start_tasks_follow_their_own_weights():
    # RL never draws numerical reasoning (3); the warm start draws all nine uniformly.
    rl = [1.0] * NUM_TASKS
    rl[3] = 0.0
    family = LongContextFamily(
        weights=rl, warm_start_weights=[2.0] * NUM_TASKS, context_tokens=SHORT, count_tokens=COUNT
    )
    assert isinstance(family, WarmStartFamily)
    assert family.warm_start_weights == (1 / NUM_TASKS,) * NUM_TASKS
    warm = family.warm_start_tasks(60)
    draws = [
        int(registry.instance_rng(0, "train", i).choice(NUM_TASKS, p=family.warm_start_weights))
        for i in range(60)
    ]
    assert [t.task_id for t in warm] == draws and 3 in draws
    assert [t.uid for t in warm] == [f"longcontext/train/{i}" for i in range(60)]
    assert 3 not in {family.generate("train", i).task_id for i in range(60)}
    # A task whose capability both mixtures draw is the same instance.
    same = [i for i, t in enumerate(warm) if t.task_id == family.generate("train", i).task_id]
    assert same and all(warm[i] == family.generate("train", i) for i in same)


def test_warm_start_tasks_default_to_the_training_tasks():
    family = LongContextFamily(context_tokens=SHORT, seed=4, count_tokens=COUNT)
    assert family.warm_start_tasks(12) == [family.generate("train", i) for i in range(12)]


def test_bad_warm_start_weights():
    with pytest.raises(ValueError, match="warm_start_weights must be 9 finite non-negative"):
        LongContextFamily(warm_start_weights=[1.0] * 8)


def test_deterministic_and_heldout_disjoint():
    family = LongContextFamily(context_tokens=SHORT, seed=2, count_tokens=COUNT)
    again = LongContextFamily(context_tokens=SHORT, seed=2, count_tokens=COUNT)
    assert [family.generate("train", i) for i in range(10)] == [
        again.generate("train", i) for i in range(10)
    ]

    def core(task):
        return (task.task_id, tuple(task.meta["evidence"]), task.prompt.rsplit("\n<q> ", 1)[1])

    train = {core(family.generate("train", i)) for i in range(60)}
    heldout = {core(family.generate("heldout", i)) for i in range(30)}
    assert not train & heldout


def test_options_reach_the_capability_families():
    family = LongContextFamily(
        context_tokens=SHORT, near_duplicates=0, rouge_f="f1", system="S", count_tokens=COUNT
    )
    assert all(f.near_duplicates == 0 and f.system == "S" for f in family.families)
    assert all(f.count_tokens is COUNT for f in family.families)
    assert family.families[8].rouge_f == "f1"
    assert len({f.seed for f in family.families}) == NUM_TASKS
    task = family.generate("train", 0)
    assert task.system == "S" and task.meta["distractors"] == []


def test_context_tokens_by_capability_replaces_the_range_of_those_capabilities():
    family = LongContextFamily(
        context_tokens=(60, 140),
        context_tokens_by_capability={
            "comprehension": (145, 170),
            "structured_matching": [271, 300],
        },
        seed=5,
        count_tokens=COUNT,
    )
    ranges = {CAPABILITY_NAMES[f.task_id]: f.context_tokens for f in family.families}
    assert ranges.pop("structured_matching") == (271, 300)
    assert ranges.pop("comprehension") == (145, 170)
    assert set(ranges.values()) == {(60, 140)}
    lengths = collections.defaultdict(list)
    for i in range(60):
        task = family.generate("train", i)
        lengths[CAPABILITY_NAMES[task.task_id]].append(task.meta["context_tokens"])
    assert min(lengths.pop("structured_matching")) >= 271
    assert max(lengths.pop("comprehension")) <= 170
    assert max(max(v) for v in lengths.values()) <= 140
    with pytest.raises(ValueError, match=r"names \['matching'\]; expected capability names"):
        LongContextFamily(context_tokens_by_capability={"matching": 300}, count_tokens=COUNT)


@pytest.mark.parametrize(
    "weights", [[1.0] * 8, [1.0] * 8 + [-1.0], [0.0] * 9, [float("nan")] + [1.0] * 8]
)
def test_bad_weights(weights):
    with pytest.raises(ValueError, match="weights must be 9 finite non-negative numbers"):
        LongContextFamily(weights=weights)


def test_bad_task_id():
    family = LongContextFamily(context_tokens=SHORT)
    task = Task(uid="x", family="longcontext", prompt="", answer="a", task_id=9)
    with pytest.raises(
        ValueError, match=r"task.task_id must be a capability index in \[0, 9\), got 9"
    ):
        family.verify(task, "</think><answer>a</answer>")


def test_per_task_mean_reward():
    def pair(task_id, reward):
        return Task(uid="x", family="f", prompt="", answer="", task_id=task_id), Verdict(reward, {})

    results = [pair(3, 1.0), pair(0, 0.25), pair(3, 0.0), pair(0, 0.75), pair(3, 0.5), pair(8, 0.1)]
    means = per_task_mean_reward(results)
    assert list(means) == [0, 3, 8]
    assert means == pytest.approx({0: 0.5, 3: 0.5, 8: 0.1})
    assert per_task_mean_reward([]) == {}


@pytest.mark.parametrize("preset", ["smoke", "cpu"])
def test_golong_preset_demonstrations_fit_the_generation_and_context_budgets(preset):
    # The SFT warm start refuses demonstrations cut by task.max_len, and one longer than
    # task.max_new_tokens teaches a response the policy can never generate whole. Before the
    # generators sized their structures, 13 of the cpu preset's first 64 demonstrations were cut
    # (up to 1010 tokens: 471-token contexts, 435-token expert responses against 48 new tokens).
    config = golong.PRESETS[preset]()
    tokenizer = load_tokenizer()
    family = registry.make(config.task.family, **config.task.kwargs)
    family = dataclasses.replace(family, count_tokens=token_counter(tokenizer))
    low, high = config.task.kwargs["context_tokens"]
    rng = np.random.default_rng(0)
    for index in range(64):
        task = family.generate("train", index)
        assert low <= task.meta["context_tokens"] <= high, task.uid
        prompt = render_prompt(tokenizer, task.prompt, task.system)
        for noise in (0.0, 1.0):
            response = family.expert(task, rng, noise)
            generated = len(tokenizer(response, add_special_tokens=False)["input_ids"]) + 1
            assert generated <= config.task.max_new_tokens, (task.uid, response)
            assert len(prompt.tokens) + generated <= config.task.max_len, task.uid
