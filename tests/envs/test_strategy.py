"""HiddenKey strategy task (Poly-EPO): hidden Works(x), verifier, cluster judges, expert, splits."""

import functools
import hashlib

import jax
import numpy as np
import pytest

from rljax import losses
from rljax.envs import registry
from rljax.envs.base import Task, TaskFamily
from rljax.envs.strategy import (
    DEGENERATE,
    SUCCESS_RATES,
    HiddenKeyFamily,
    NoisyJudge,
    rule_cluster,
)


def _unit(text):
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64


def _hand_task(works=(2,)):
    # x = 4 0 7 1 9 3: g = 24 mod 10 = 4. S_2 work: (4+2, 0+4, 7+6) mod 10 = 6 4 3;
    # S_6 work: (4+6, 0+12, 7+18) mod 10 = 0 2 5.
    meta = {"digits": "407193", "works": list(works), "num_strategies": 6, "work_tokens": 3}
    return Task(
        uid="strategy/train/0", family="strategy", prompt="digits 4 0 7 1 9 3", answer=4, meta=meta
    )


FAMILY = HiddenKeyFamily()


@pytest.mark.parametrize(
    "response, reward, cluster, strategy, answer",
    [
        ("[S_2] 6 4 3", 1.0, 2, 2, 4),
        ("  [S_2]  6 4 3\n", 1.0, 2, 2, 4),
        ("[S_6] 0 2 5", 0.0, 6, 6, 0),  # well formed, S_6 fails here: answer (4 + 6) mod 10
    ],
)
def test_verify_well_formed(response, reward, cluster, strategy, answer):
    verdict = FAMILY.verify(_hand_task(), response)
    assert verdict.reward == reward
    assert (verdict.info["cluster"], verdict.info["strategy"], verdict.info["answer"]) == (
        cluster,
        strategy,
        answer,
    )
    assert verdict.info["reason"].startswith("correct" if reward else "wrong")


@pytest.mark.parametrize(
    "response, why",
    [
        ("[S_2] 6 4 4", "work tokens 6 4 4, expected 6 4 3 for S_2"),
        ("[S_2] 6 4", "2 work tokens, expected 3"),
        ("[S_2] 6 4 3 1", "4 work tokens, expected 3"),
        ("[S_7] 1 2 3", "strategy 7 is not in 1..6"),
        ("[S_0] 4 0 7", "strategy 0 is not in 1..6"),
        ("[S_2] 64 3", "expected '[S_s] w1 w2 ...'"),
        ("S_2 6 4 3", "expected '[S_s] w1 w2 ...'"),
        ("[S_2] 6 4 3 so the answer is 4", "expected '[S_s] w1 w2 ...'"),
        ("", "expected '[S_s] w1 w2 ...'"),
    ],
)
def test_malformed_responses_are_degenerate(response, why):
    verdict = FAMILY.verify(_hand_task(), response)
    assert verdict.reward == 0.0 and verdict.info["cluster"] == DEGENERATE == -1
    assert verdict.info["reason"].startswith("malformed:") and why in verdict.info["reason"]
    assert rule_cluster(_hand_task(), response) == -1
    assert rule_cluster(_hand_task(), response, degenerate=100) == 100


def test_rule_cluster_is_the_strategy_of_a_well_formed_response():
    assert rule_cluster(_hand_task(), "[S_6] 0 2 5") == 6
    assert rule_cluster(_hand_task(), "[S_2] 6 4 3", degenerate=100) == 2


def test_custom_judge_writes_the_cluster():
    family = HiddenKeyFamily(cluster_fn=lambda task, response: 42)
    assert family.verify(_hand_task(), "[S_2] 6 4 3").info["cluster"] == 42
    assert family.verify(_hand_task(), "garbage").info["cluster"] == 42
    bad = HiddenKeyFamily(cluster_fn=lambda task, response: "2")
    with pytest.raises(ValueError, match="cluster_fn must return an int cluster id, got '2'"):
        bad.verify(_hand_task(), "[S_2] 6 4 3")
    with pytest.raises(ValueError, match="cluster_fn must be a callable"):
        HiddenKeyFamily(cluster_fn=3)


def test_generate_hidden_works_follow_the_documented_hash():
    family = HiddenKeyFamily(secret=7, seed=1)
    assert isinstance(family, TaskFamily) and registry.make("strategy", secret=7, seed=1) == family
    tasks = [family.generate("train", i) for i in range(3000)]
    for task in tasks[:200]:
        digits = task.meta["digits"]
        assert task.prompt == "digits " + " ".join(digits) and len(digits) == 6
        assert task.answer == sum(int(d) for d in digits) % 10
        assert task.meta["works"] == [
            s for s in range(1, 7) if _unit(f"7/{digits}/{s}") < SUCCESS_RATES[s - 1]
        ]
    shares = [np.mean([s in t.meta["works"] for t in tasks]) for s in range(1, 7)]
    assert shares == pytest.approx(SUCCESS_RATES, abs=0.03)
    union = np.mean([bool(t.meta["works"]) for t in tasks])
    assert union == pytest.approx(1 - np.prod([1 - p for p in SUCCESS_RATES]), abs=0.02)  # 0.895578


def test_secret_changes_works_not_instances():
    a, b = HiddenKeyFamily(secret=0), HiddenKeyFamily(secret=1)
    ta, tb = (
        [a.generate("train", i) for i in range(50)],
        [b.generate("train", i) for i in range(50)],
    )
    assert [t.meta["digits"] for t in ta] == [t.meta["digits"] for t in tb]
    assert [t.meta["works"] for t in ta] != [t.meta["works"] for t in tb]


def test_deterministic_and_heldout_disjoint():
    family = HiddenKeyFamily(num_digits=3)  # 1000 instances: overlaps would show
    assert [family.generate("train", i) for i in range(20)] == [
        HiddenKeyFamily(num_digits=3).generate("train", i) for i in range(20)
    ]
    train = {family.generate("train", i).meta["digits"] for i in range(600)}
    heldout = {family.generate("heldout", i).meta["digits"] for i in range(200)}
    assert len(train) > 400 and len(heldout) > 100 and not train & heldout
    assert all(_unit(d) < 0.2 for d in heldout) and all(_unit(d) >= 0.2 for d in train)


def test_expert():
    rng = np.random.default_rng(0)
    tasks = [FAMILY.generate("heldout", i) for i in range(300)]
    for task in tasks:
        clean = FAMILY.verify(task, FAMILY.expert(task, rng))
        assert clean.reward == float(
            bool(task.meta["works"])
        )  # noise 0 solves every solvable instance
        assert clean.info["cluster"] in (task.meta["works"] or [1])
        noisy = FAMILY.verify(task, FAMILY.expert(task, rng, noise=1.0))
        assert noisy.reward == 0.0
        assert noisy.info["cluster"] == -1 or noisy.info["cluster"] not in task.meta["works"]
    chosen = {FAMILY.verify(t, FAMILY.expert(t, rng)).info["cluster"] for t in tasks}
    assert chosen == set(range(1, 7))  # the expert spreads over the working strategies
    with pytest.raises(ValueError, match="noise must be in"):
        FAMILY.expert(tasks[0], rng, noise=-0.1)


def test_noisy_judge():
    task = _hand_task()
    assert NoisyJudge(0.0)(task, "[S_2] 6 4 3") == 2 and NoisyJudge(0.0)(task, "x") == -1
    always = NoisyJudge(1.0)
    ids = [always(task, f"[S_2] 6 4 3{' ' * i}") for i in range(300)]
    assert set(ids) == set(range(1, 7))
    assert always(task, "[S_2] 6 4 3") == always(task, "[S_2] 6 4 3")  # deterministic
    some = NoisyJudge(0.3, seed=4)
    changed = np.mean([some(task, f"[S_2] 6 4 3{' ' * i}") != 2 for i in range(2000)])
    assert changed == pytest.approx(0.3 * 5 / 6, abs=0.04)  # a relabel hits the true id 1 time in 6
    judged = HiddenKeyFamily(cluster_fn=NoisyJudge(1.0, num_strategies=2))
    assert judged.verify(task, "garbage").info["cluster"] in (1, 2)
    with pytest.raises(ValueError, match="epsilon must be in"):
        NoisyJudge(1.5)


def test_family_judge_noise_changes_clusters_not_rewards():
    task = _hand_task(works=(1, 2))
    responses = [f"[S_2] 6 4 3{' ' * i}" for i in range(400)] + ["garbage"] * 5
    clean = [FAMILY.verify(task, r) for r in responses]
    noisy = [HiddenKeyFamily(judge_noise=0.5).verify(task, r) for r in responses]
    assert [v.reward for v in noisy] == [v.reward for v in clean]
    assert [v.info.get("strategy") for v in noisy] == [v.info.get("strategy") for v in clean]
    relabelled = np.mean([n.info["cluster"] != c.info["cluster"] for n, c in zip(noisy, clean)])
    assert relabelled == pytest.approx(0.5 * 5 / 6, abs=0.06)
    with pytest.raises(ValueError, match="judge_noise must be in"):
        HiddenKeyFamily(judge_noise=-0.1)


def test_clusters_feed_poly_epo_advantages():
    # poly_epo.md 6 E1: G = 4, n = 2, r = [1, 1, 1, 0], clusters [A, A, B, C] -> [0, 0, 1/6, -1/6].
    task = _hand_task(works=(1, 2))
    s1 = "[S_1] 5 2 0"  # (4+1, 0+2, 7+3) mod 10
    responses = [s1, s1, "[S_2] 6 4 3", "[S_6] 0 2 5"]
    verdicts = [FAMILY.verify(task, r) for r in responses]
    rewards = np.array([[v.reward for v in verdicts]], np.float32)
    clusters = np.array([[v.info["cluster"] for v in verdicts]], np.int32)
    np.testing.assert_array_equal(rewards, [[1, 1, 1, 0]])
    np.testing.assert_array_equal(clusters, [[1, 1, 2, 6]])
    advantages = functools.partial(losses.poly_epo_advantages, set_size=2)
    for fn in (advantages, jax.jit(advantages)):
        np.testing.assert_allclose(fn(rewards, clusters), [[0.0, 0.0, 1 / 6, -1 / 6]], atol=1e-6)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"num_digits": 0}, "num_digits must be"),
        ({"work_tokens": 7}, "work_tokens must be an int in"),
        ({"success_rates": ()}, "success_rates must be"),
        ({"success_rates": (0.5, 1.5)}, "success_rates must be"),
        ({"heldout_fraction": 1.0}, "heldout_fraction must be"),
    ],
)
def test_bad_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        HiddenKeyFamily(**kwargs)


def test_expert_uniform_mix():
    """poly_epo.md section 8's SFT mixture: uniformly random strategies, noise = a wrong work token."""
    family = HiddenKeyFamily(expert_mix="uniform")
    rng = np.random.default_rng(0)
    tasks = [family.generate("train", i) for i in range(1200)]
    clean = [family.verify(t, family.expert(t, rng)) for t in tasks]
    counts = np.bincount([v.info["cluster"] for v in clean], minlength=7)[1:]
    assert counts.min() > 150 and counts.max() < 250  # 200 expected per strategy
    # Strategies are chosen blind to Works(x): the reward is the strategies' mean success rate.
    assert np.mean([v.reward for v in clean]) == pytest.approx(np.mean(SUCCESS_RATES), abs=0.04)
    for task in tasks[:200]:
        noisy = family.verify(task, family.expert(task, rng, noise=1.0))
        assert noisy.info["cluster"] == DEGENERATE and noisy.reward == 0.0
    with pytest.raises(ValueError, match="expert_mix must be one of"):
        HiddenKeyFamily(expert_mix="best")
