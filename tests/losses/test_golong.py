"""Tests for rljax.losses.golong against methods/golongrl.md section 6 and a NumPy reference."""

import functools

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.advantages import group_advantages
from rljax.losses.golong import (
    task_advantage_cv,
    task_mean_advantages,
    tmn_advantages,
    tmn_pass_rates,
    tmn_reweight_advantages,
)
from rljax.losses.shaping import dynamic_sampling_mask

# golongrl.md E1: task 0 (binary) p0, p1; task 1 (continuous) p2, p3; G = 4.
REWARDS = np.array(
    [[1, 0, 0, 0], [1, 1, 1, 0], [0.9, 0.8, 0.7, 0.85], [0.2, 0.6, 0.1, 0.3]], np.float32
)
TASKS = np.array([0, 0, 1, 1], np.int32)
E1_GRPO = [
    [1.499997] + [-0.499999] * 3,
    [0.499999] * 3 + [-1.499997],
    [1.02468, -0.146383, -1.31745, 0.439150],
    [-0.462908, 1.38872, -0.925816, 0],
]
E1_TMN = [
    [1.499997] + [-0.499999] * 3,
    [0.499999] * 3 + [-1.499997],
    [0.532710, -0.0761015, -0.684913, 0.228304],
    [-0.608812, 1.82644, -1.21762, 0],
]
E1_REWEIGHT = [
    [1.92603] + [-0.389400] * 3,
    [0.389400] * 3 + [-1.92603],
    [0.414875, -0.0977162, -0.879446, 0.177804],
    [-0.474143, 2.34519, -0.948286, 0],
]
P2_LOW_ALPHA = [0.323105, -0.125470, -1.12923, 0.138474]
CLOSE = dict(rtol=5e-6, atol=2e-6)  # six digits, p3's zero "up to float rounding"


def test_e1_grpo_baseline(variant):
    np.testing.assert_allclose(variant(group_advantages)(REWARDS), E1_GRPO, **CLOSE)


def test_e1_tmn(variant):
    fn = variant(functools.partial(tmn_advantages, num_tasks=2))
    np.testing.assert_allclose(fn(REWARDS, TASKS), E1_TMN, **CLOSE)


def test_e1_tmn_reweight(variant):
    fn = variant(functools.partial(tmn_reweight_advantages, num_tasks=2))
    np.testing.assert_allclose(fn(REWARDS, TASKS), E1_REWEIGHT, **CLOSE)


def test_e1_pass_rates(variant):
    fn = variant(functools.partial(tmn_pass_rates, num_tasks=2))
    np.testing.assert_allclose(fn(REWARDS, TASKS), [0.25, 0.75, 0.75, 0.25])


@pytest.mark.parametrize(
    "alpha,expected_p2", [(0.0, P2_LOW_ALPHA), (0.5, P2_LOW_ALPHA), (1.0, E1_TMN[2])]
)
def test_e1_alpha_variants(variant, alpha, expected_p2):
    fn = variant(functools.partial(tmn_reweight_advantages, num_tasks=2, alpha=alpha))
    out = np.asarray(fn(REWARDS, TASKS))
    np.testing.assert_allclose(out[2], expected_p2, **CLOSE)
    np.testing.assert_allclose(out[[0, 1, 3]], np.asarray(E1_REWEIGHT)[[0, 1, 3]], **CLOSE)


def test_e1_cv_diagnostic(variant):
    cv = variant(functools.partial(task_advantage_cv, num_tasks=2))
    dr_grpo = group_advantages(REWARDS, scale="none")
    np.testing.assert_allclose(cv(dr_grpo, TASKS), 0.558442, rtol=5e-6)
    np.testing.assert_allclose(cv(group_advantages(REWARDS), TASKS), 0.0251920, rtol=5e-5)
    np.testing.assert_allclose(
        cv(tmn_advantages(REWARDS, TASKS, num_tasks=2), TASKS), 0.0738341, rtol=5e-6
    )


def test_task_mean_advantages(variant):
    # QwenLong-style: z-score against all 8 samples of the task (population std option).
    expected = np.zeros_like(REWARDS)
    for task in (0, 1):
        rows = REWARDS[TASKS == task]
        expected[TASKS == task] = (rows - rows.mean()) / (rows.std() + 1e-6)
    fn = variant(functools.partial(task_mean_advantages, num_tasks=2, std="population"))
    np.testing.assert_allclose(fn(REWARDS, TASKS), expected, rtol=1e-5, atol=1e-6)


def test_group_mask_equals_filtered_batch(variant):
    # Dynamic sampling: a constant group of task 1 is dropped before the task statistics.
    rewards = np.concatenate([REWARDS, [[0.5, 0.5, 0.5, 0.5]]]).astype(np.float32)
    tasks = np.concatenate([TASKS, [1]]).astype(np.int32)
    keep = dynamic_sampling_mask(rewards)
    for fn, expected in ((tmn_advantages, E1_TMN), (tmn_reweight_advantages, E1_REWEIGHT)):
        out = variant(functools.partial(fn, num_tasks=2))(rewards, tasks, group_mask=keep)
        np.testing.assert_allclose(out[:4], expected, **CLOSE)
        np.testing.assert_array_equal(out[4], 0.0)
    # Without the mask the constant group lowers task 1's scale: p2 grows by sqrt(3/2).
    unmasked = tmn_advantages(rewards, tasks, num_tasks=2)
    np.testing.assert_allclose(unmasked[2], np.asarray(E1_TMN[2]) * np.sqrt(1.5), rtol=1e-5)


def test_all_constant_task_gives_zero(variant):
    rewards = np.array([[1, 1, 1, 1], [0, 0, 0, 0], [1, 0, 0, 0]], np.float32)
    tasks = np.array([0, 0, 1], np.int32)
    for fn in (tmn_advantages, tmn_reweight_advantages):
        out = variant(functools.partial(fn, num_tasks=3))(rewards, tasks)
        assert np.all(np.isfinite(out))
        np.testing.assert_array_equal(out[:2], 0.0)
    # The task-level z-score is not centred per prompt: task 0 has mean 0.5 and std 0.5.
    out = variant(functools.partial(task_mean_advantages, num_tasks=3, std="population"))(
        rewards, tasks
    )
    np.testing.assert_allclose(out[:2], [[0.5 / 0.500001] * 4, [-0.5 / 0.500001] * 4], rtol=1e-6)


def test_tmn_constant_non_dyadic_task_gives_zero(variant):
    # Issue 14.2, golongrl.md LONG-4: a task whose groups are all constant has s_j = 0 and A = 0.
    # The float32 mean of eight 0.7s is not 0.7; before the all-equal guard TMN gave 0.056 and
    # TMN-Reweight 0.034 here.
    rewards = np.full((2, 8), 0.7, np.float32)
    tasks = np.zeros(2, np.int32)
    for fn in (tmn_advantages, tmn_reweight_advantages):
        out = variant(functools.partial(fn, num_tasks=1))(rewards, tasks)
        np.testing.assert_array_equal(out, 0.0)
    out = variant(functools.partial(task_mean_advantages, num_tasks=1))(rewards, tasks)
    np.testing.assert_array_equal(out, 0.0)


def test_task_mean_unbiased_default(variant):
    # Issue 14.3: the official code divides by the unbiased task std: rewards [[1, 0]] have mean
    # 0.5 and std sqrt(0.5) -> +-0.707107 (population option: +-1.0).
    rewards = np.array([[1.0, 0.0]], np.float32)
    tasks = np.zeros(1, np.int32)
    out = variant(functools.partial(task_mean_advantages, num_tasks=1))(rewards, tasks)
    np.testing.assert_allclose(out, [[0.7071058, -0.7071058]], rtol=1e-6)
    fn = functools.partial(task_mean_advantages, num_tasks=1, std="population")
    np.testing.assert_allclose(variant(fn)(rewards, tasks), [[0.999998, -0.999998]], rtol=1e-6)
    # A single-sample task has std := 1 (its sample is its own mean: A = 0); the other task is
    # unaffected: [0.2, 0.6, 0.1, 0.3] has mean 0.3 and unbiased std 0.216025.
    rewards = np.array([[0.9], [0.2], [0.6], [0.1], [0.3]], np.float32)
    tasks = np.array([0, 1, 1, 1, 1], np.int32)
    out = variant(functools.partial(task_mean_advantages, num_tasks=2))(rewards, tasks)
    expected = [[0.0], [-0.462908], [1.38872], [-0.925816], [0.0]]
    np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-6)


def test_single_sample_groups(variant):
    # G = 1: mu_p := 0, var_p := 1, so s_j = 1 and TMN gives r / (1 + eps); mu~_p := m_j = 0 and
    # p_hat = [r > 0]; r > mu_p = 0 uses w+ = exp(0.5 - p_hat).
    rewards = np.array([[0.6], [0.0], [0.3]], np.float32)
    tasks = np.array([0, 0, 1], np.int32)
    tmn = variant(functools.partial(tmn_advantages, num_tasks=2))(rewards, tasks)
    np.testing.assert_allclose(tmn, rewards / (1 + 1e-6), rtol=1e-6)
    rw = variant(functools.partial(tmn_reweight_advantages, num_tasks=2))(rewards, tasks)
    np.testing.assert_allclose(rw, rewards * np.exp(-0.5), rtol=1e-6)


def test_no_gradient_into_rewards():
    def total(r):
        return jnp.sum(tmn_reweight_advantages(r, TASKS, num_tasks=2) * jnp.arange(4.0)[None])

    np.testing.assert_array_equal(jax.grad(total)(jnp.asarray(REWARDS)), 0.0)


def test_vmap_over_batches():
    fn = jax.vmap(functools.partial(tmn_reweight_advantages, num_tasks=2))
    out = fn(np.stack([REWARDS, REWARDS[::-1]]), np.stack([TASKS, TASKS[::-1]]))
    np.testing.assert_allclose(out[1], np.asarray(E1_REWEIGHT)[::-1], **CLOSE)


_REWEIGHT = jax.jit(functools.partial(tmn_reweight_advantages, num_tasks=3))
_TMN = jax.jit(functools.partial(tmn_advantages, num_tasks=3))


@hypothesis.settings(max_examples=30, deadline=None)
@hypothesis.given(
    rewards=hnp.arrays(np.float32, (5, 4), elements=st.sampled_from([0.0, 0.25, 0.5, 0.8, 1.0])),
    tasks=hnp.arrays(np.int32, (5,), elements=st.integers(0, 2)),
)
def test_reweight_factor_in_range(rewards, tasks):
    tmn = np.asarray(_TMN(rewards, tasks))
    reweighted = np.asarray(_REWEIGHT(rewards, tasks))
    assert np.all(np.isfinite(reweighted))
    nonzero = np.abs(tmn) > 1e-6
    ratio = reweighted[nonzero] / tmn[nonzero]
    assert np.all(ratio >= np.exp(-0.5) * (1 - 1e-5)) and np.all(ratio <= np.exp(0.5) * (1 + 1e-5))
    np.testing.assert_array_equal(np.sign(reweighted[nonzero]), np.sign(tmn[nonzero]))


def test_bad_input():
    with pytest.raises(ValueError, match="task_ids must lie"):
        tmn_advantages(REWARDS, np.array([0, 1, 2, 0]), num_tasks=2)
    with pytest.raises(ValueError, match="task_ids must be integers"):
        tmn_advantages(REWARDS, TASKS.astype(np.float32), num_tasks=2)
    with pytest.raises(ValueError, match="task_ids"):
        tmn_advantages(REWARDS, TASKS[:3], num_tasks=2)
    with pytest.raises(ValueError, match="num_tasks"):
        tmn_reweight_advantages(REWARDS, TASKS, num_tasks=0)
    with pytest.raises(ValueError, match="alpha"):
        tmn_reweight_advantages(REWARDS, TASKS, num_tasks=2, alpha=1.5)
    with pytest.raises(ValueError, match="rewards"):
        tmn_advantages(REWARDS[0], TASKS, num_tasks=2)
    with pytest.raises(ValueError, match="group_mask"):
        tmn_advantages(REWARDS, TASKS, num_tasks=2, group_mask=np.ones(3, bool))
