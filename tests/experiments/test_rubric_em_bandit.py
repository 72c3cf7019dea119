"""The stage-chain bandit (rubric_em.md 8.2): rewards, noise and sampling on hand-worked cases,
shared draws between arms, and the `--smoke` report end to end."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
from rljax.experiments import rubric_em_bandit as bandit

# q (hits per stage) -> (R_0, R_1, R_2, R_3), worked by hand from the spec:
# R_0 = q0, R_1 = q1 (0.5 + 0.5 q0), R_2 = q2 (0.5 + 0.5 mean(q0, q1)), R_3 = mean(q).
REWARD_CASES = [
    ((1, 0, 1, 1), (1.0, 0.0, 0.75, 0.75)),
    ((0, 1, 1, 0), (0.0, 0.5, 0.75, 0.5)),
    ((1, 1, 0, 1), (1.0, 1.0, 0.0, 0.75)),
    ((0, 0, 1, 1), (0.0, 0.0, 0.5, 0.5)),
    ((1, 1, 1, 1), (1.0, 1.0, 1.0, 1.0)),
    ((0, 0, 0, 0), (0.0, 0.0, 0.0, 0.0)),
]


def test_stage_rewards_hand_worked(variant):
    hits = jnp.asarray([q for q, _ in REWARD_CASES], bool)
    expected = np.asarray([r for _, r in REWARD_CASES], np.float32)
    np.testing.assert_allclose(variant(bandit.stage_rewards)(hits), expected, atol=1e-7)
    # Batched [P, G, K] like the trainer: same values, same layout.
    batched = variant(bandit.stage_rewards)(hits.reshape(2, 3, 4))
    np.testing.assert_allclose(batched, expected.reshape(2, 3, 4), atol=1e-7)


def test_stage_rewards_rejects_wrong_stage_count():
    with pytest.raises(AssertionError):
        bandit.stage_rewards(jnp.ones((2, 3)))


@pytest.mark.parametrize(
    "sigma, expected",
    [
        # R + sigma * z on stages 0-2, clipped to [0, 1]; R_3 never noised (z_3 = 9 is ignored).
        (1.0, (1.0, 0.0, 0.7, 0.75)),
        (0.5, (1.0, 0.0, 0.6, 0.75)),
        (0.0, (0.9, 0.1, 0.5, 0.75)),
    ],
)
def test_judge_noise_clips_intermediate_stages_only(variant, sigma, expected):
    rewards = jnp.asarray([0.9, 0.1, 0.5, 0.75])
    noise = jnp.asarray([0.5, -0.5, 0.2, 9.0])
    noisy = variant(bandit.judge_noise)(rewards, noise, sigma)
    np.testing.assert_allclose(noisy, expected, atol=1e-6)


def test_sample_choices_inverse_cdf():
    # Uniform policy: cumulative probabilities 1/8, 2/8, ...; u in [j/8, (j+1)/8) picks action j.
    logits = jnp.zeros((1, 4, 8))
    uniforms = jnp.asarray([[[0.0, 0.13, 0.5, 0.999]]])  # [P=1, G=1, K=4]
    np.testing.assert_array_equal(bandit.sample_choices(logits, uniforms), [[[0, 1, 4, 7]]])
    # A non-uniform policy on an even grid of u reproduces its probabilities to 1 / n.
    probs = np.asarray([0.4, 0.1, 0.0, 0.2, 0.05, 0.05, 0.15, 0.05])
    n = 4000
    grid = (np.arange(n) + 0.5) / n
    actions = bandit.sample_choices(
        jnp.log(jnp.asarray(probs)).reshape(1, 1, 8).repeat(4, axis=1),
        jnp.asarray(np.tile(grid[:, None], (1, 4))[None]),
    )
    counts = np.bincount(np.asarray(actions)[0, :, 0], minlength=8) / n
    np.testing.assert_allclose(counts, probs, atol=1.5 / n)


def test_expected_final_reward():
    # Contexts 0-1: every stage's target logit log 7 against seven zeros -> probability 1/2;
    # contexts 2-3: uniform -> 1/8. E[R_3] = mean(1/2, 1/2, 1/8, 1/8) = 0.3125.
    targets = jnp.asarray([[3, 1, 0, 7], [5, 5, 2, 0], [1, 2, 3, 4], [0, 0, 0, 0]])
    logits = np.zeros((4, 4, 8), np.float32)
    for c in range(2):
        logits[c, np.arange(4), np.asarray(targets[c])] = np.log(7.0)
    assert float(bandit.expected_final_reward(jnp.asarray(logits), targets)) == pytest.approx(
        0.3125, abs=1e-6
    )


def test_both_arms_use_the_same_draws():
    # The shapes of the --smoke run (4 seeds, 5 steps, 2 sigmas, 5 learning rates), so one
    # compilation serves both tests.
    config = bandit.Config(steps=5)
    draws = bandit.seed_draws([0, 1, 2, 3], config)
    shuffled = bandit.seed_draws([3, 1, 0, 2], config)
    for field, first, second in zip(bandit.Draws._fields, draws, shuffled):
        np.testing.assert_array_equal(
            np.asarray(first)[[3, 1, 0, 2]], second, err_msg=field
        )  # per seed
        assert not np.array_equal(first[0], first[1]), field  # and seeds differ
    rates = (0.0, 0.03, 0.1, 0.3, 1.0)
    traces = bandit.run_arms(bandit.ARMS, draws, sigmas=(0.0, 1.0), learning_rates=rates)
    broadcast, ss_grpo = traces["broadcast"], traces["ss_grpo"]
    # Learning rate 0: the policy stays uniform, so both arms must sample the same choices and
    # see the same noisy rewards at every step, while different seeds see different ones.
    np.testing.assert_array_equal(broadcast.batch_rewards[:, :, 0], ss_grpo.batch_rewards[:, :, 0])
    assert not np.array_equal(broadcast.batch_rewards[0, :, 0], broadcast.batch_rewards[1, :, 0])
    # Learning rate 0.3: the arms learn differently ...
    assert not np.allclose(broadcast.expected_r3[:, :, 3], ss_grpo.expected_r3[:, :, 3])
    # ... and the noise (only on R_0..R_2) leaves broadcast untouched but moves SS-GRPO.
    np.testing.assert_array_equal(broadcast.expected_r3[:, 0], broadcast.expected_r3[:, 1])
    assert not np.allclose(ss_grpo.expected_r3[:, 0, 3], ss_grpo.expected_r3[:, 1, 3])


def test_run_arms_rejects_negative_sigma():
    draws = bandit.seed_draws([0, 1, 2, 3], bandit.Config(steps=5))
    with pytest.raises(ValueError, match=r"sigmas must be >= 0, got \[-0.1\]"):
        bandit.run_arms(bandit.ARMS, draws, sigmas=(0.0, -0.1), learning_rates=(0.1,))


def test_steps_to_target():
    assert bandit.steps_to_target(np.asarray([0.1, 0.5, 0.9, 0.95])) == 2
    assert bandit.steps_to_target(np.asarray([0.1, 0.89])) is None


def test_smoke_writes_the_report(tmp_path):
    page = bandit.main(["--smoke", "--out", str(tmp_path)])
    summary = json.loads((tmp_path / "bandit.json").read_text())
    assert summary["smoke"] and summary["sigmas"] == [0.0, 1.0]
    assert summary["seeds"] == [0, 1] and summary["tuning_seeds"] == [1000, 1001]
    assert summary["learning_rate"] in summary["learning_rates"]
    cell = summary["grid"]["0.0"][str(summary["learning_rate"])]
    assert set(cell["arms"]) == {"broadcast", "ss_grpo"}
    assert set(cell["arms"]["ss_grpo"]["steps_to_target"]) == {"0", "1"}
    assert len(summary["curves"]["1.0"]["ss_grpo"]["mean"]) == 6  # start + 5 steps
    text = page.read_text()
    assert "(smoke run)" in text and "--smoke" in text and "| 0 |" in text
    assert (tmp_path / "bandit.png").stat().st_size > 0
