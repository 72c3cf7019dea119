"""Tests for rljax.losses.anti_sd against methods/anti_sd.md section 6 and hand derivations."""

import functools
import math

import hypothesis
import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from rljax.losses.anti_sd import (
    anti_sd_advantages,
    entropy_gate_init,
    entropy_gate_update,
    jsd_token_penalty,
    rkl_token_penalty,
    teacher_entropy_median,
    token_entropy,
)

SETTINGS = hypothesis.settings(max_examples=30, deadline=None)

# E2: student / teacher log-probs giving u = [-2, 0, 2].
STUDENT = np.array([[-1.2, -0.7, -2.5]], np.float32)
TEACHER = np.array([[-3.2, -0.7, -0.5]], np.float32)
MASK = np.ones((1, 3), np.float32)
# E5: per-step median teacher entropies and the resulting lambda (coef_max 0.5).
E5_MEDIANS = [0.40, 0.42, 0.38, 0.41, 0.39, 0.39, 0.37, 0.39, 0.40, 0.36]
E5_LAMBDAS = [0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 0.0, 0.0, 0.5, 0.0]


def _run_gate(medians, variant, **init_kwargs):
    state = entropy_gate_init(**init_kwargs)
    update = variant(entropy_gate_update)
    gates = []
    for h in medians:
        state, gate = update(state, jnp.float32(h))
        gates.append(float(gate))
    return state, gates


def test_e1_jsd_kernel_values(variant):
    u = np.array([-20, -2, -0.5, 0, 0.5, 2, 3.1, 5], np.float32)
    expected = [-0.346574, -0.283110, -0.109535, 0.0, 0.140465, 0.716890, 1.22546, 2.15678]
    phi = variant(jsd_token_penalty)(np.zeros_like(u), u)
    np.testing.assert_allclose(phi, expected, rtol=3e-6, atol=1e-6)  # 6 significant digits


@SETTINGS
@hypothesis.given(hnp.arrays(np.float64, 6, elements=st.floats(-30, 30)))
def test_jsd_kernel_identities(u):
    phi = np.asarray(jsd_token_penalty(np.zeros(6, np.float32), u.astype(np.float32)), np.float64)
    phi_neg = np.asarray(jsd_token_penalty(np.zeros(6, np.float32), -u.astype(np.float32)))
    np.testing.assert_allclose(phi - phi_neg, u / 2, atol=2e-5)  # phi(u) - phi(-u) = u / 2
    assert np.all(phi >= -0.5 * math.log(2) - 1e-6)
    assert np.all(np.sign(phi[np.abs(u) > 1e-3]) == np.sign(u[np.abs(u) > 1e-3]))


def test_e2_antisd_delta_equals_half_log_ratio_of_mixture(variant):
    delta = variant(anti_sd_advantages)(np.zeros(1, np.float32), STUDENT, TEACHER, MASK, coef=1.0)
    np.testing.assert_allclose(delta, [[0.283110, 0.0, -0.716890]], atol=2e-6)
    p_s, p_t = np.exp(STUDENT.astype(np.float64)), np.exp(TEACHER.astype(np.float64))
    np.testing.assert_allclose(delta, 0.5 * np.log(2 * p_s / (p_s + p_t)), atol=2e-6)


@pytest.mark.parametrize(
    "kernel, direction, expected",
    [
        (jsd_token_penalty, "ascent", [0.641555, 0.5, 0.141555]),
        (rkl_token_penalty, "descent", [-0.5, 0.5, 1.5]),
        (rkl_token_penalty, "ascent", [1.5, 0.5, -0.5]),
        (jsd_token_penalty, "descent", [0.358445, 0.5, 0.858445]),
    ],
)
def test_e3_direction_table(variant, kernel, direction, expected):
    fn = functools.partial(anti_sd_advantages, coef=0.5, kernel=kernel, direction=direction)
    a_tok = variant(fn)(np.array([0.5], np.float32), STUDENT, TEACHER, MASK)
    np.testing.assert_allclose(a_tok, [expected], atol=2e-6)


def test_e3_all_equal_group_keeps_token_term(variant):
    a_tok = variant(anti_sd_advantages)(np.zeros(1, np.float32), STUDENT, TEACHER, MASK)
    np.testing.assert_allclose(a_tok, [[0.141555, 0.0, -0.358445]], atol=2e-6)


def test_multiplicative_composition(variant):
    fn = functools.partial(anti_sd_advantages, coef=0.5, compose="mult")
    a_tok = variant(fn)(np.array([0.5], np.float32), STUDENT, TEACHER, MASK)
    # A_seq * (1 + lambda * delta) with delta = [0.283110, 0, -0.716890] from E2.
    np.testing.assert_allclose(a_tok, [[0.5707775, 0.5, 0.3207775]], atol=2e-6)


def test_traced_coefficient_from_gate(variant):
    fn = lambda gate, *arrays: anti_sd_advantages(*arrays, coef=gate * 0.5)  # noqa: E731
    closed = variant(fn)(jnp.float32(0.0), np.array([0.5], np.float32), STUDENT, TEACHER, MASK)
    np.testing.assert_allclose(closed, np.full((1, 3), 0.5), atol=1e-7)


def test_zero_length_response_and_garbage_padding_are_finite(variant):
    seq_adv = np.array([1.0, -1.0], np.float32)
    student = np.array([[-0.5, np.nan, -np.inf], [np.inf, np.nan, 0.0]], np.float32)
    teacher = np.array([[-1.0, np.inf, np.nan], [-np.inf, 3.0, np.nan]], np.float32)
    mask = np.array([[1, 0, 0], [0, 0, 0]], np.float32)
    a_tok = variant(anti_sd_advantages)(seq_adv, student, teacher, mask)
    phi = 0.5 * (math.log1p(math.exp(-0.5)) - math.log(2))  # u = -1.0 - (-0.5)
    np.testing.assert_allclose(a_tok, [[1.0 - 0.5 * phi, 0, 0], [0, 0, 0]], atol=1e-6)


def test_no_gradient_into_targets():
    def total(seq_adv, student, teacher):
        return jnp.sum(anti_sd_advantages(seq_adv, student, teacher, MASK) * 1.7)

    grads = jax.grad(total, argnums=(0, 1, 2))(np.array([0.5], np.float32), STUDENT, TEACHER)
    for g in grads:
        np.testing.assert_array_equal(g, np.zeros_like(g))


def test_kernel_gradients_match_hand_formula_and_finite_differences(variant):
    student = np.array([-1.2, -0.7, -2.5, -0.1], np.float64)
    teacher = np.array([-3.2, -0.7, -0.5, -4.0], np.float64)
    u = teacher - student
    grad_s, grad_t = variant(
        jax.grad(lambda s, t: jnp.sum(jsd_token_penalty(s, t)), argnums=(0, 1))
    )(student.astype(np.float32), teacher.astype(np.float32))
    np.testing.assert_allclose(grad_s, -0.5 / (1 + np.exp(-u)), atol=1e-6)  # -sigmoid(u)/2
    np.testing.assert_array_equal(grad_t, np.zeros(4))
    h = 1e-6
    phi = lambda s: 0.5 * (np.logaddexp(0, teacher - s) - math.log(2))  # noqa: E731
    fd = (phi(student + h) - phi(student - h)) / (2 * h)
    np.testing.assert_allclose(grad_s, fd, atol=1e-6)
    grad_rkl = jax.grad(lambda s: jnp.sum(rkl_token_penalty(s, teacher.astype(np.float32))))(
        student.astype(np.float32)
    )
    np.testing.assert_allclose(grad_rkl, -np.ones(4), atol=1e-7)


def _softmax(z):
    e = np.exp(z - z.max())
    return e / e.sum()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_e6_divergence_gradient_identity(seed):
    rng = np.random.default_rng(seed)
    z_s, z_t = rng.normal(size=7), rng.normal(size=7)

    def jsd(z):
        p, q = _softmax(z), _softmax(z_t)
        m = 0.5 * (p + q)
        return 0.5 * np.sum(p * np.log(p / m)) + 0.5 * np.sum(q * np.log(q / m))

    def rkl(z):
        p, q = _softmax(z), _softmax(z_t)
        return np.sum(p * np.log(p / q))

    pi_s = _softmax(z_s)
    log_s = np.log(pi_s).astype(np.float32)
    log_t = np.log(_softmax(z_t)).astype(np.float32)
    basis = np.eye(7) - pi_s[None, :]  # row v: e_v - pi_S
    for divergence, kernel in ((jsd, jsd_token_penalty), (rkl, rkl_token_penalty)):
        k = np.asarray(kernel(log_s, log_t), np.float64)
        identity = np.sum(pi_s[:, None] * (-k)[:, None] * basis, axis=0)
        h = 1e-6
        fd = np.array(
            [(divergence(z_s + h * e) - divergence(z_s - h * e)) / (2 * h) for e in np.eye(7)]
        )
        np.testing.assert_allclose(identity, fd, atol=1e-6)


def test_e4_teacher_entropy(variant):
    logits = np.log(np.array([[0.7, 0.2, 0.1], [1 / 3, 1 / 3, 1 / 3]], np.float32))
    np.testing.assert_allclose(variant(token_entropy)(logits), [0.801819, math.log(3)], atol=1e-6)


@SETTINGS
@hypothesis.given(
    hnp.arrays(np.float32, (3, 5), elements=st.floats(0, 5, width=32)), hnp.arrays(np.bool_, (3, 5))
)
def test_teacher_entropy_median_matches_numpy(entropy, mask):
    hypothesis.assume(mask.any())
    got = jax.jit(teacher_entropy_median)(entropy, mask)
    # atol: XLA on CPU flushes float32 subnormals (e.g. the midpoint of 1.2e-38 and 0) to zero.
    np.testing.assert_allclose(got, np.median(entropy[mask]), rtol=1e-6, atol=1e-37)


def test_teacher_entropy_median_without_valid_tokens_is_nan(variant):
    got = variant(teacher_entropy_median)(np.ones((2, 3), np.float32), np.zeros((2, 3), bool))
    assert np.isnan(got)


def test_e5_gate_sequence(variant):
    state, gates = _run_gate(E5_MEDIANS, variant)
    np.testing.assert_allclose(np.array(gates) * 0.5, E5_LAMBDAS)
    np.testing.assert_allclose(state.h_warm, 0.40, rtol=1e-6)
    np.testing.assert_allclose(state.tau_down, 0.372, rtol=1e-6)
    assert int(state.step) == 10


def test_gate_warmup_boundary_can_close_immediately(variant):
    # H_warm = 1.0, tau_down = 0.9; step W opens the gate, then applies the update with H_W.
    _, gates = _run_gate([1.0, 1.0, 0.89], variant, warmup_steps=2, down_ratio=0.9)
    assert gates == [0.0, 0.0, 0.0]
    _, gates = _run_gate([1.0, 1.0, 0.9], variant, warmup_steps=2, down_ratio=0.9)
    assert gates == [0.0, 0.0, 1.0]


def test_gate_hysteresis_both_ways(variant):
    # H_warm = 2.0, tau_down = 1.5: open stays open down to 1.5, closed stays closed below 2.0.
    medians = [2.0, 1.6, 1.5, 1.49, 1.5, 1.99, 2.0, 1.7, 1.4, 2.5]
    _, gates = _run_gate(medians, variant, warmup_steps=1, down_ratio=0.75)
    assert gates == [0.0, 1.0, 1.0, 0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 1.0]


def test_gate_ignores_steps_without_valid_tokens(variant):
    medians = [0.40, np.nan, 0.42, 0.38, 0.41, 0.39] + E5_MEDIANS[5:]
    state, gates = _run_gate(medians, variant)
    np.testing.assert_allclose(np.array(gates) * 0.5, [0.0] + E5_LAMBDAS)
    assert int(state.step) == 10


def test_gate_vmaps_over_independent_runs():
    second = [1.0, 1.0, 1.0, 1.0, 1.0, 0.5, 0.96, 1.0, 0.9, 1.2]
    expected_second = [0, 0, 0, 0, 0, 0, 0, 1, 0, 1]  # tau_down 0.93, re-enable at 1.0
    states = jax.tree.map(lambda x: jnp.stack([x, x]), entropy_gate_init())
    update = jax.jit(jax.vmap(entropy_gate_update))
    got = []
    for h1, h2 in zip(E5_MEDIANS, second):
        states, gates = update(states, jnp.array([h1, h2], jnp.float32))
        got.append(np.asarray(gates))
    got = np.stack(got)
    np.testing.assert_allclose(got[:, 0] * 0.5, E5_LAMBDAS)
    np.testing.assert_allclose(got[:, 1], expected_second)


def test_gate_state_survives_an_orbax_checkpoint(tmp_path):
    state, _ = _run_gate(E5_MEDIANS[:7], lambda f: f)
    checkpointer = ocp.StandardCheckpointer()
    checkpointer.save(tmp_path / "gate", state)
    checkpointer.wait_until_finished()
    restored = checkpointer.restore(tmp_path / "gate", entropy_gate_init())
    assert type(restored).__name__ == "GateState"
    gates = []
    for h in E5_MEDIANS[7:]:
        restored, gate = entropy_gate_update(restored, jnp.float32(h))
        gates.append(float(gate) * 0.5)
    assert gates == E5_LAMBDAS[7:]


@pytest.mark.parametrize(
    "call, name",
    [
        (
            lambda: anti_sd_advantages(np.zeros(1), STUDENT[0], TEACHER[0], MASK[0]),
            "student_logprobs",
        ),
        (
            lambda: anti_sd_advantages(np.zeros(1), STUDENT, TEACHER[:, :2], MASK),
            "teacher_logprobs",
        ),
        (lambda: anti_sd_advantages(np.zeros(1), STUDENT, TEACHER, MASK[:, :2]), "mask"),
        (lambda: anti_sd_advantages(np.zeros(2), STUDENT, TEACHER, MASK), "seq_advantages"),
        (lambda: anti_sd_advantages(np.zeros(1), STUDENT, TEACHER, MASK, coef=-0.5), "coef"),
        (lambda: anti_sd_advantages(np.zeros(1), STUDENT, TEACHER, MASK, coef=np.ones(2)), "coef"),
        (
            lambda: anti_sd_advantages(np.zeros(1), STUDENT, TEACHER, MASK, direction="up"),
            "direction",
        ),
        (lambda: anti_sd_advantages(np.zeros(1), STUDENT, TEACHER, MASK, compose="max"), "compose"),
        (lambda: jsd_token_penalty(STUDENT, TEACHER[:, :2]), "teacher_logprobs"),
        (lambda: teacher_entropy_median(np.ones(3), np.ones(3)), "teacher_entropy"),
        (lambda: teacher_entropy_median(np.ones((2, 3)), np.ones((3, 2))), "mask"),
        (lambda: token_entropy(np.float32(1.0)), "logits"),
        (lambda: entropy_gate_init(warmup_steps=0), "warmup_steps"),
        (lambda: entropy_gate_init(down_ratio=1.2), "down_ratio"),
        (lambda: entropy_gate_init(down_ratio=0.9, reenable_ratio=0.8), "reenable_ratio"),
        (lambda: entropy_gate_update(entropy_gate_init(), np.ones(2)), "teacher_entropy_median"),
    ],
)
def test_bad_input_raises_value_error_naming_argument(call, name):
    with pytest.raises(ValueError, match=name):
        call()


def test_vmaps_over_micro_batches():
    seq_adv = np.array([[0.5], [0.0]], np.float32)
    stack = lambda x: np.stack([x, x])  # noqa: E731
    got = jax.jit(jax.vmap(anti_sd_advantages))(
        seq_adv, stack(STUDENT), stack(TEACHER), stack(MASK)
    )
    np.testing.assert_allclose(
        got, [[[0.641555, 0.5, 0.141555]], [[0.141555, 0.0, -0.358445]]], atol=2e-6
    )


def test_on_policy_gradient_flows_only_through_policy_logprobs():
    # ASD-6: on-policy (rho = 1) the token-mean surrogate's gradient is -A_tok / N per valid token,
    # and nothing reaches the rollout-time student or the teacher log-probs.
    from rljax.losses.policy import policy_loss

    mask = np.array([[1, 1, 1, 0]], np.float32)
    student = np.array([[-1.2, -0.7, -2.5, -9.0]], np.float32)
    teacher = np.array([[-3.2, -0.7, -0.5, 4.0]], np.float32)

    def loss(logp, student, teacher):
        a_tok = anti_sd_advantages(np.array([0.5], np.float32), student, teacher, mask)
        return policy_loss(logp, student, a_tok, mask)[0]

    g_logp, g_student, g_teacher = jax.grad(loss, argnums=(0, 1, 2))(student, student, teacher)
    np.testing.assert_allclose(g_logp, [[-0.641555 / 3, -0.5 / 3, -0.141555 / 3, 0.0]], atol=1e-6)
    np.testing.assert_array_equal(g_student, np.zeros((1, 4)))
    np.testing.assert_array_equal(g_teacher, np.zeros((1, 4)))
