"""Tests for expert demonstrations."""

import numpy as np
import pytest
from keyhunt import KeyHuntFamily, masked_spans

from rljax.data import Turn, load_tokenizer, render_conversation, role_masks
from rljax.envs.arithmetic import ArithmeticFamily
from rljax.rollout import expert_trajectories


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_multi_turn_expert_matches_the_rendered_conversation(tok):
    family = KeyHuntFamily()
    tasks = [family.generate("heldout", i) for i in range(3)]
    traj = expert_trajectories(family, tasks, tok, np.random.default_rng(0))
    values = ["ab12", "zz9q", "c3po"]
    for p in range(3):
        turns = [
            Turn("user", f"Q: value of k{p:02d} ?"),
            Turn("assistant", f"<think> read </think> <cmd> cat f{p:02d} </cmd>"),
            Turn("observation", f"$ cat f{p:02d}\nk{p:02d}={values[p]}\n(exit=0)"),
            Turn("assistant", f"<think> got it </think> <cmd> answer {values[p]} </cmd>"),
        ]
        rendered = render_conversation(tok, turns)
        n = traj.lengths[p]
        np.testing.assert_array_equal(traj.tokens[p, :n], rendered.tokens)
        action, env, warning = role_masks(rendered.roles)
        np.testing.assert_array_equal(traj.action_mask[p, :n], action)
        np.testing.assert_array_equal(traj.env_mask[p, :n], env)
        assert not traj.warning_mask[p].any()
    np.testing.assert_array_equal(traj.rewards, [1.0, 1.0, 1.0])
    np.testing.assert_array_equal(traj.group_ids, [0, 1, 2])
    np.testing.assert_array_equal(traj.num_turns, [2, 2, 2])
    assert not traj.truncated.any()
    assert (traj.sampler_logprobs == 0).all()


def test_noisy_expert_gets_the_verifier_reward(tok):
    family = KeyHuntFamily()
    tasks = [family.generate("train", i) for i in range(12)]
    traj = expert_trajectories(family, tasks, tok, np.random.default_rng(1), noise=0.5)
    wrong = [
        masked_spans(tok, traj.tokens[p], traj.action_mask[p])[-1].find("answer xxxx") >= 0
        for p in range(12)
    ]
    assert 0 < sum(wrong) < 12
    np.testing.assert_array_equal(traj.rewards, [0.0 if w else 1.0 for w in wrong])


def test_single_turn_expert(tok):
    family = ArithmeticFamily(digits=2, num_operands=2, operators="+")
    tasks = [family.generate("train", i) for i in range(4)]
    traj = expert_trajectories(family, tasks, tok, np.random.default_rng(0))
    for p, task in enumerate(tasks):
        a, b = (int(x) for x in task.prompt.removeprefix("Compute ").removesuffix(".").split("+"))
        assert masked_spans(tok, traj.tokens[p], traj.action_mask[p]) == [
            f"<answer>{a + b}</answer><|end|>"
        ]
    np.testing.assert_array_equal(traj.rewards, [1.0] * 4)
    np.testing.assert_array_equal(traj.num_turns, [1] * 4)


def test_expert_budget_truncates(tok):
    family = KeyHuntFamily()
    traj = expert_trajectories(
        family, [family.generate("train", 0)], tok, np.random.default_rng(0), max_tokens=20
    )
    assert traj.truncated[0] and traj.info[0]["stop"] == "token_budget" and traj.lengths[0] <= 20
