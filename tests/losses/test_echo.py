"""Tests for rljax.losses.echo against methods/echo.md section 6 and hand derivations."""

import functools

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.advantages import group_advantages
from rljax.losses.echo import echo_coefficient, echo_env_loss, echo_env_metrics, echo_loss
from rljax.losses.policy import policy_loss


def _mask(positions, length=10):
    out = np.zeros(length, np.float32)
    out[list(positions)] = 1
    return out


# echo.md E2: positions 0-2 action, 3 glue, 4-5 warning, 6-8 env, 9 glue; obs_count = 5.
E2_LOGP = np.array([-0.2, -0.4, -0.6, -0.05, -3.0, -4.0, -0.5, -1.0, -2.0, -0.1], np.float32)
E2_ACTION, E2_WARN, E2_ENV = _mask(range(3)), _mask([4, 5]), _mask([6, 7, 8])
E2_OBS = _mask(range(3, 10))  # the whole observation message incl. glue
# E3 trajectory 2: 2 action tokens, no warning, 4 env tokens, obs_count = 4.
T2_LOGP = np.array([-0.3, -0.7, -1.5, -0.5, -0.25, -0.75, 0, 0, 0, 0], np.float32)
T2_ACTION, T2_WARN, T2_ENV = _mask([0, 1]), _mask([]), _mask([2, 3, 4, 5])
E3 = dict(
    logprobs=np.stack([E2_LOGP, T2_LOGP]),
    action_mask=np.stack([E2_ACTION, T2_ACTION]),
    env_mask=np.stack([E2_ENV, T2_ENV]),
    warning_mask=np.stack([E2_WARN, T2_WARN]),
)


@pytest.mark.parametrize(
    "target,normalization,expected",
    [
        ("env_only", "full_observation_tokens", 0.699860),
        ("env_only", "selected_tokens", 1.16628),
        ("warning_plus_env", "full_observation_tokens", 2.09958),
        ("warning_only", "full_observation_tokens", 1.39972),
        ("warning_only", "selected_tokens", 3.49825),
    ],
)
def test_e2_env_loss(variant, target, normalization, expected):
    fn = variant(functools.partial(echo_env_loss, target=target, normalization=normalization))
    loss, _ = fn(E2_LOGP[None], E2_ENV[None], E2_WARN[None])
    np.testing.assert_allclose(loss, expected, rtol=2e-6)


def test_e2_full_observation_target(variant):
    # s = the whole observation message: (0.05 + 3 + 4 + 0.5 + 1 + 2 + 0.1) / (5 + 0.001).
    fn = variant(functools.partial(echo_env_loss, target="full_observation"))
    loss, _ = fn(E2_LOGP[None], E2_ENV[None], E2_WARN[None], observation_mask=E2_OBS[None])
    np.testing.assert_allclose(loss, 10.65 / 5.001, rtol=1e-6)


def test_env_mask_may_include_warnings(variant):
    # The rollout's Trajectories put warnings inside env_mask; the result must not change.
    fn = variant(echo_env_loss)
    loss, _ = fn(E2_LOGP[None], (E2_ENV + E2_WARN)[None], E2_WARN[None])
    np.testing.assert_allclose(loss, 0.699860, rtol=2e-6)


def test_e1_temperature_scaled_logprob(variant):
    # echo.md E1: logits [2, 0.5, -1] / 0.8, target 0 -> l = -0.162861; one env token, obs 1.
    logp = jax.nn.log_softmax(jnp.array([2.0, 0.5, -1.0]) / 0.8)[0]
    loss, _ = variant(echo_env_loss)(logp.reshape(1, 1), np.ones((1, 1)), np.zeros((1, 1)))
    np.testing.assert_allclose(loss, 0.162861 / 1.001, rtol=2e-6)


@pytest.mark.parametrize("rewards", [[1.0, 0.0], [0.0, 0.0]])
def test_e3_total_loss_and_gradients(variant, rewards):
    adv = group_advantages(np.array([rewards], np.float32)).reshape(-1)
    if rewards[0] == 1.0:
        np.testing.assert_allclose(adv, [0.707106, -0.707106], rtol=2e-6)
    logp = jnp.asarray(E3["logprobs"])
    masks = {k: v for k, v in E3.items() if k != "logprobs"}

    def total(lp):
        return echo_loss(
            lp,
            E3["logprobs"],
            adv,
            masks["action_mask"],
            masks["env_mask"],
            masks["warning_mask"],
            coef=0.05,
        )

    (loss, metrics), grad = variant(jax.value_and_grad(total, has_aux=True))(logp)
    np.testing.assert_allclose(loss, 0.0362418, rtol=2e-6)
    np.testing.assert_allclose(metrics["env_loss"], 0.724836, rtol=2e-6)
    np.testing.assert_allclose(metrics["policy_loss"], 0.0, atol=1e-7)
    action_grad = [-adv[0] / 6, -adv[1] / 4]  # -A_b / (B * n_b)
    expected = np.zeros((2, 10))
    expected[0, :3] = action_grad[0]
    expected[1, :2] = action_grad[1]
    expected[0, 6:9] = -0.05 / (2 * 5.001)
    expected[1, 2:6] = -0.05 / (2 * 4.001)
    np.testing.assert_allclose(grad, expected, rtol=2e-5, atol=1e-9)
    if rewards[0] == 1.0:
        # The digits of echo.md E3.
        np.testing.assert_allclose(grad[0, :3], -0.117851, rtol=5e-6)
        np.testing.assert_allclose(grad[1, :2], 0.176776, rtol=5e-6)
    np.testing.assert_allclose(grad[0, 6:9], -0.00499900, rtol=5e-6)
    np.testing.assert_allclose(grad[1, 2:6], -0.00624844, rtol=5e-6)


def test_e4_pooled_heldout_ce(variant):
    hits = np.zeros((2, 10), bool)
    hits[0, 6] = hits[1, 2] = hits[1, 3] = True
    metrics = variant(echo_env_metrics)(E3["logprobs"], E3["env_mask"], hits)
    np.testing.assert_allclose(metrics["ce_env"], 0.928571, rtol=2e-6)
    np.testing.assert_allclose(metrics["acc_env"], 3 / 7, rtol=1e-6)
    np.testing.assert_allclose(metrics["token_count"], 7)


def test_training_log_metrics(variant):
    _, metrics = variant(echo_env_loss)(E3["logprobs"], E3["env_mask"], E3["warning_mask"])
    np.testing.assert_allclose(metrics["ce_env_per_token"], 6.5 / 7.001, rtol=1e-6)
    np.testing.assert_allclose(metrics["ce_warning_per_token"], 7.0 / 2.001, rtol=1e-6)
    np.testing.assert_allclose(metrics["ce_selected_per_token"], 6.5 / 7.001, rtol=1e-6)


def test_e5_schedules(variant):
    linear = variant(
        functools.partial(
            echo_coefficient, schedule="linear_decay", coef=0.05, coef_end=0.0, total_steps=1000
        )
    )
    np.testing.assert_allclose(linear(250), 0.0375, rtol=1e-6)
    np.testing.assert_allclose(linear(5000), 0.0, atol=1e-9)
    step = variant(
        functools.partial(
            echo_coefficient, schedule="step_decay", coef=0.05, coef_end=0.01, transition_step=100
        )
    )
    np.testing.assert_allclose([step(99), step(100)], [0.05, 0.01], rtol=1e-6)
    piecewise = variant(
        functools.partial(
            echo_coefficient, schedule="step_decay", steps=(10, 20), values=(0.2, 0.1)
        )
    )
    np.testing.assert_allclose(
        [piecewise(k) for k in (0, 10, 19, 20, 99)], [0.2, 0.2, 0.2, 0.1, 0.1], rtol=1e-6
    )
    np.testing.assert_allclose(variant(echo_coefficient)(7), 0.05, rtol=1e-6)


def test_env_only_rows(variant):
    # A verifier-free row trains only through the env term.
    adv = np.array([1.0, -1.0], np.float32)
    fn = variant(
        jax.grad(
            lambda lp: echo_loss(
                lp,
                E3["logprobs"],
                adv,
                E3["action_mask"],
                E3["env_mask"],
                E3["warning_mask"],
                env_only_rows=np.array([False, True]),
            )[0]
        )
    )
    grad = fn(jnp.asarray(E3["logprobs"]))
    np.testing.assert_allclose(grad[1, :2], 0.0, atol=1e-9)
    np.testing.assert_allclose(grad[1, 2:6], -0.05 / (2 * 4.001), rtol=1e-5)
    np.testing.assert_allclose(grad[0, :3], -1.0 / 6, rtol=1e-5)


def test_empty_env_mask_gives_zero(variant):
    logp = jnp.asarray(E3["logprobs"]).at[:, 9].set(-jnp.inf)  # garbage where nothing is selected
    zeros = np.zeros((2, 10), np.float32)
    (loss, metrics), grad = variant(jax.value_and_grad(echo_env_loss, has_aux=True))(
        logp, zeros, zeros
    )
    assert float(loss) == 0.0 and float(metrics["ce_env_per_token"]) == 0.0
    np.testing.assert_array_equal(grad, 0.0)


def test_micro_batches_sum_to_whole():
    whole, _ = echo_env_loss(E3["logprobs"], E3["env_mask"], E3["warning_mask"])
    parts = [
        echo_env_loss(
            E3["logprobs"][i : i + 1],
            E3["env_mask"][i : i + 1],
            E3["warning_mask"][i : i + 1],
            num_sequences=2,
        )[0]
        for i in range(2)
    ]
    np.testing.assert_allclose(sum(parts), whole, rtol=1e-6)


@hypothesis.settings(max_examples=20, deadline=None)
@hypothesis.given(
    logp=hnp.arrays(np.float32, (4, 6), elements=st.floats(-5.0, 0.0, width=32)),
    shift=hnp.arrays(np.float32, (4, 6), elements=st.floats(-0.5, 0.5, width=32)),
    adv=hnp.arrays(np.float32, (4,), elements=st.floats(-2.0, 2.0, width=32)),
    action=hnp.arrays(bool, (4, 6)),
    env=hnp.arrays(bool, (4, 6)),
)
def test_zero_coef_is_grpo(logp, shift, adv, action, env):
    old = logp - shift
    warn = np.zeros_like(env)
    echo_value = echo_loss(logp, old, adv, action, env & ~action, warn, coef=0.0)[0]
    grpo_value = policy_loss(logp, old, adv, action, mode="seq-mean-token-mean", denominator=4)[0]
    np.testing.assert_allclose(echo_value, grpo_value, rtol=1e-6, atol=1e-7)


def test_bad_input():
    logp, env, warn = E3["logprobs"], E3["env_mask"], E3["warning_mask"]
    with pytest.raises(ValueError, match="target='all'"):
        echo_env_loss(logp, env, warn, target="all")
    with pytest.raises(ValueError, match="normalization='tokens'"):
        echo_env_loss(logp, env, warn, normalization="tokens")
    with pytest.raises(ValueError, match="observation_mask"):
        echo_env_loss(logp, env, warn, target="full_observation")
    with pytest.raises(ValueError, match="warning_mask"):
        echo_env_loss(logp, env, warn[:, :5])
    with pytest.raises(ValueError, match="obs_count"):
        echo_env_loss(logp, env, warn, obs_count=np.ones(3))
    with pytest.raises(ValueError, match="action_mask"):
        echo_loss(logp, logp, np.zeros(2), E3["action_mask"][:1], env, warn)
    with pytest.raises(ValueError, match="schedule='cosine'"):
        echo_coefficient(0, schedule="cosine")
    with pytest.raises(ValueError, match="total_steps"):
        echo_coefficient(0, schedule="linear_decay")
    with pytest.raises(ValueError, match="steps"):
        echo_coefficient(0, schedule="step_decay", steps=(10, 5), values=(1.0, 2.0))
