"""The Anti-SD study's method arms (anti_sd.md ASD-4/ASD-5 and section 8): SD descent,
reverse-KL ascent, no gate, multiplicative composition and no teacher, on hand-worked tokens,
jitted and not."""

import numpy as np
import pytest

from rljax import losses, methods
from rljax.methods import PrepareInputs

# anti_sd.md 6 E2: s = [-1.2, -0.7, -2.5], t_lp = [-3.2, -0.7, -0.5] -> u = [-2, 0, 2]; a fourth,
# masked-out position holds garbage that must not reach anything.
STUDENT = np.array([[-1.2, -0.7, -2.5, np.nan]] * 2, np.float32)
TEACHER = np.array([[-3.2, -0.7, -0.5, np.inf]] * 2, np.float32)
MASK = np.array([[1, 1, 1, 0]] * 2, np.float32)
U = np.array([-2.0, 0.0, 2.0])
PHI = np.array([-0.283110, 0.0, 0.716890])  # E1: phi(-2), phi(0), phi(2)
# One group of two, rewards [1, 0]: GRPO advantages +-1/sqrt(2) (unbiased std 1/sqrt(2)).
A_SEQ = np.array([1.0, -1.0]) / np.sqrt(2.0)


def _inputs(entropy=0.5, student_entropy=1.5):
    zeros = np.zeros(MASK.shape, np.float32)
    return PrepareInputs(
        rewards=np.array([[1.0, 0.0]], np.float32),
        task_ids=np.zeros(1, np.int32),
        group_mask=np.ones(1, bool),
        action_mask=MASK,
        env_mask=zeros,
        warning_mask=zeros,
        stage_ids=np.full(MASK.shape, -1, np.int32),
        stage_rewards=np.zeros((1, 2, 0), np.float32),
        cluster_ids=np.zeros((1, 2), np.int32),
        old_logprobs=STUDENT,
        old_entropy=np.full(MASK.shape, student_entropy, np.float32),
        lengths=np.full(2, 3, np.int32),
        teacher_logprobs=TEACHER,
        teacher_entropy=np.full(MASK.shape, entropy, np.float32),
    )


def _expected(delta, *, compose="add", coef=0.5):
    a = A_SEQ[:, None]
    tok = a + coef * delta[None, :] if compose == "add" else a * (1.0 + coef * delta[None, :])
    return np.concatenate([tok, np.zeros((2, 1))], axis=1)


NO_TEACHER_PHI = 0.5 * (np.logaddexp(0.0, -STUDENT[0, :3]) - np.log(2.0))  # phi(-s)

ARMS = [
    # (kwargs, expected token advantages with the gate open / no gate)
    ({"gate": False}, _expected(-PHI)),  # Anti-SD: delta = -phi(u)
    ({"gate": False, "divergence": "rkl", "direction": "descent"}, _expected(U)),  # SD: +u
    ({"gate": False, "divergence": "rkl"}, _expected(-U)),  # reverse-KL ascent: -u
    ({"gate": False, "compose": "mult"}, _expected(-PHI, compose="mult")),
    ({"gate": False, "teacher": "none"}, _expected(-NO_TEACHER_PHI)),  # u = -s
]


@pytest.mark.parametrize("kwargs, expected", ARMS)
def test_arm_token_advantages_match_the_hand_formula(variant, kwargs, expected):
    adv, _, metrics = variant(methods.anti_sd(**kwargs).prepare)(_inputs(), ())
    np.testing.assert_allclose(adv, expected, atol=1e-5)
    assert float(metrics["anti_sd_gate"]) == 1.0
    u = -STUDENT[0, :3] if kwargs.get("teacher") == "none" else U
    np.testing.assert_allclose(metrics["anti_sd_u_mean"], u.mean(), atol=1e-5)


def test_sd_descent_and_rkl_ascent_are_mirror_images_around_grpo(variant):
    sd, _, _ = variant(methods.anti_sd(gate=False, divergence="rkl", direction="descent").prepare)(
        _inputs(), ()
    )
    ascent, _, _ = variant(methods.anti_sd(gate=False, divergence="rkl").prepare)(_inputs(), ())
    grpo = _expected(np.zeros(3))
    np.testing.assert_allclose(np.asarray(sd) + np.asarray(ascent), 2 * grpo, atol=1e-5)


def test_kernel_metric_follows_the_divergence(variant):
    _, _, jsd = variant(methods.anti_sd(gate=False).prepare)(_inputs(), ())
    _, _, rkl = variant(methods.anti_sd(gate=False, divergence="rkl").prepare)(_inputs(), ())
    np.testing.assert_allclose(jsd["anti_sd_penalty_mean"], PHI.mean(), atol=1e-5)
    np.testing.assert_allclose(rkl["anti_sd_penalty_mean"], U.mean(), atol=1e-5)


def test_gated_arms_are_pure_grpo_during_the_warmup(variant):
    # The default gate keeps lambda = 0 for W = 5 steps whatever the divergence or composition.
    for kwargs in ({}, {"divergence": "rkl", "direction": "descent"}, {"compose": "mult"}):
        method = methods.anti_sd(warmup_steps=2, **kwargs)
        prepare = variant(method.prepare)
        state = method.init_state()
        for _ in range(2):
            adv, state, metrics = prepare(_inputs(), state)
            np.testing.assert_allclose(adv, _expected(np.zeros(3)), atol=1e-6)
            assert float(metrics["anti_sd_gate"]) == 0.0
        adv, state, metrics = prepare(_inputs(), state)
        assert float(metrics["anti_sd_gate"]) == 1.0
        assert not np.allclose(adv, _expected(np.zeros(3)), atol=1e-3)


def test_no_teacher_needs_no_teacher_and_gates_on_the_student_entropy(variant):
    method = methods.anti_sd(teacher="none", warmup_steps=1)
    assert method.needs == frozenset() and methods.anti_sd().needs == frozenset({"teacher"})
    inputs = _inputs(entropy=0.5, student_entropy=1.5).replace(
        teacher_logprobs=None, teacher_entropy=None
    )
    prepare = variant(method.prepare)
    _, state, metrics = prepare(inputs, method.init_state())
    assert float(metrics["student_entropy_median"]) == pytest.approx(1.5)
    assert "teacher_entropy_median" not in metrics
    # H_warm = 1.5, tau_down = 0.93 * 1.5 = 1.395: a student entropy of 1.3 closes the gate.
    _, state, metrics = prepare(inputs, state)
    assert float(metrics["anti_sd_gate"]) == 1.0
    _, _, metrics = prepare(inputs.replace(old_entropy=np.full(MASK.shape, 1.3, np.float32)), state)
    assert float(metrics["anti_sd_gate"]) == 0.0


def test_the_teacher_arm_gates_on_the_teacher_entropy(variant):
    method = methods.anti_sd(warmup_steps=1)
    prepare = variant(method.prepare)
    _, state, metrics = prepare(_inputs(entropy=0.5), method.init_state())
    assert float(metrics["teacher_entropy_median"]) == pytest.approx(0.5)
    _, state, metrics = prepare(_inputs(entropy=0.5, student_entropy=0.1), state)
    assert float(metrics["anti_sd_gate"]) == 1.0  # the student's entropy is not read
    _, _, metrics = prepare(_inputs(entropy=0.4), state)
    assert float(metrics["anti_sd_gate"]) == 0.0  # 0.4 < 0.93 * 0.5


def test_registry_builds_every_arm_from_kwargs():
    for kwargs, _ in ARMS:
        method = methods.make_method("anti_sd", **kwargs)
        assert method.name == "anti_sd" and method.mode == "token-mean"
    # The gate state of the warm-up matches the losses' own initial state.
    state = methods.anti_sd(warmup_steps=3).init_state()
    assert (
        state.warmup_medians.shape == losses.entropy_gate_init(warmup_steps=3).warmup_medians.shape
    )


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"divergence": "kl"}, "divergence='kl' is not one of \\['jsd', 'rkl'\\]"),
        ({"direction": "up"}, "direction='up' is not one of \\['ascent', 'descent'\\]"),
        ({"compose": "max"}, "compose='max' is not one of \\['add', 'mult'\\]"),
        ({"teacher": "peer"}, "teacher='peer' is not one of \\['self', 'none'\\]"),
        ({"coef_max": -0.5}, "coef_max must be >= 0.*-0.5"),
        ({"warmup_steps": 0}, "warmup_steps must be an integer >= 1, got 0"),
        ({"down_ratio": 1.5}, "down_ratio must be in \\(0, 1\\], got 1.5"),
    ],
)
def test_bad_settings_fail_when_the_method_is_built(kwargs, match):
    with pytest.raises(ValueError, match=match):
        methods.anti_sd(**kwargs)
