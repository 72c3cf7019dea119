"""GoLongRL's method compositions on golongrl.md's worked example E1: the reference estimators
(GRPO, Dr.GRPO, QwenLong-style task normalisation) in GoLongRL's composition, the cross-task CV
(LONG-10) every one of them logs, and the mean p_hat TMN-Reweight logs (LONG-6)."""

import numpy as np
import pytest

from rljax import methods
from rljax.methods import PrepareInputs

# golongrl.md E1: task 0 (binary) p0, p1; task 1 (continuous) p2, p3; G = 4.
REWARDS = np.array(
    [[1, 0, 0, 0], [1, 1, 1, 0], [0.9, 0.8, 0.7, 0.85], [0.2, 0.6, 0.1, 0.3]], np.float32
)
TASKS = np.array([0, 0, 1, 1], np.int32)
P, G, T = 4, 4, 3
E1_GRPO = [
    [1.499997] + [-0.499999] * 3,
    [0.499999] * 3 + [-1.499997],
    [1.02468, -0.146383, -1.31745, 0.439150],
    [-0.462908, 1.38872, -0.925816, 0],
]
CLOSE = dict(rtol=5e-6, atol=2e-6)


def _inputs(group_mask=(True, True, True, True)):
    zeros = np.zeros((P * G, T), np.float32)
    keep = np.asarray(group_mask, bool)
    return PrepareInputs(
        rewards=REWARDS,
        task_ids=TASKS,
        group_mask=keep,
        action_mask=np.repeat(keep, G)[:, None] * np.ones((P * G, T), np.float32),
        env_mask=zeros,
        warning_mask=zeros,
        stage_ids=np.full((P * G, T), -1, np.int32),
        stage_rewards=np.zeros((P, G, 0), np.float32),
        cluster_ids=np.zeros((P, G), np.int32),
        old_logprobs=zeros,
        old_entropy=zeros,
        lengths=np.full(P * G, T, np.int32),
    )


def _prepare(variant, method, inputs):
    advantages, _, metrics = variant(method.prepare)(inputs, method.init_state())
    return np.asarray(advantages).reshape(P, G), {k: float(v) for k, v in metrics.items()}


def _task_mean_numpy(rewards, tasks):
    """QwenLong-style z-scores with float64 numpy: mean and unbiased std over the task's samples."""
    out = np.zeros(rewards.shape)
    for j in np.unique(tasks):
        r = rewards[tasks == j].astype(np.float64)
        out[tasks == j] = (r - r.mean()) / (r.std(ddof=1) + 1e-6)
    return out


def _cv_numpy(advantages, tasks):
    means = np.array([np.abs(advantages[tasks == j]).mean() for j in np.unique(tasks)])
    return means.std() / means.mean()


def test_reference_estimators_on_e1(variant):
    expected = {
        "grpo": np.asarray(E1_GRPO),
        "drgrpo": REWARDS - REWARDS.mean(1, keepdims=True),
        "task_mean": _task_mean_numpy(REWARDS, TASKS),
    }
    # golongrl.md E1's LONG-10 values for GRPO and Dr.GRPO; task_mean from the numpy reference.
    cvs = {"grpo": 0.0251920, "drgrpo": 0.558442, "task_mean": None}
    for estimator, want in expected.items():
        method = methods.golong_reference(estimator=estimator)
        advantages, metrics = _prepare(variant, method, _inputs())
        np.testing.assert_allclose(advantages, want, **CLOSE)
        cv = cvs[estimator] if cvs[estimator] is not None else _cv_numpy(want, TASKS)
        np.testing.assert_allclose(metrics["tmn_task_cv"], cv, rtol=5e-5)
        assert "tmn_p_hat_mean" not in metrics


def test_reference_estimators_share_golong_composition():
    built = [methods.golong_reference(estimator=e) for e in methods.GOLONG_REFERENCE_ESTIMATORS]
    for method in [*built, methods.golong(), methods.golong_tmn()]:
        assert (method.mode, method.filter_groups) == ("token-mean", True)


def test_dropped_prompts_get_zero_and_leave_the_statistics(variant):
    keep = (True, False, True, True)  # p1 dropped by dynamic sampling
    for estimator in methods.GOLONG_REFERENCE_ESTIMATORS:
        advantages, metrics = _prepare(
            variant, methods.golong_reference(estimator=estimator), _inputs(keep)
        )
        assert np.all(advantages[1] == 0.0)
        kept = np.array(keep)
        want = {
            "grpo": np.asarray(E1_GRPO)[kept],
            "drgrpo": (REWARDS - REWARDS.mean(1, keepdims=True))[kept],
            "task_mean": _task_mean_numpy(REWARDS[kept], TASKS[kept]),
        }[estimator]
        np.testing.assert_allclose(advantages[kept], want, **CLOSE)
        np.testing.assert_allclose(metrics["tmn_task_cv"], _cv_numpy(want, TASKS[kept]), rtol=5e-5)


@pytest.mark.parametrize(
    "alpha,keep,expected",
    [
        # E1: p_hat = [0.25, 0.75, 0.75, 0.25] at alpha 0.8; alpha 0 moves p2 to 1.0.
        (0.8, (True, True, True, True), 0.5),
        (0.0, (True, True, True, True), (0.25 + 0.75 + 1.0 + 0.25) / 4),
        # p3 dropped: task 1's mean is p2's own (0.8125), so p_hat_2 = 2/4; the mean is over the
        # three kept prompts (p3's own p_hat, 0.25, would give 0.4375).
        (0.8, (True, True, True, False), (0.25 + 0.75 + 0.5) / 3),
    ],
)
def test_golong_logs_mean_p_hat(variant, alpha, keep, expected):
    _, metrics = _prepare(variant, methods.golong(alpha=alpha), _inputs(keep))
    np.testing.assert_allclose(metrics["tmn_p_hat_mean"], expected, rtol=1e-6)


def test_unknown_estimator():
    with pytest.raises(ValueError, match=r"estimator='tmn' is not one of \['drgrpo', 'grpo'"):
        methods.golong_reference(estimator="tmn")
    with pytest.raises(ValueError, match=r"'golong_reference' has no option\(s\) \['alpha'\]"):
        methods.make_method("golong_reference", estimator="grpo", alpha=0.8)
