"""kernels.token_stats: xla_chunked and pallas (interpret mode) against the [N, V] reference.

Values and gradients (w.r.t. hidden, teacher_hidden and w_unembed) of all five statistics, in
fp32 and bf16, with ragged N / V / chunks, temperature != 1 and the teacher path; tolerances in
kernel_problems.TOLERANCES.
"""

import functools

import jax
import jax.numpy as jnp
import pytest
from kernel_problems import (
    BLOCKWISE_IMPLS,
    DTYPES,
    FP32_ATOL,
    FP32_GRAD,
    SMALL_BLOCKS,
    TOLERANCES,
    assert_close,
    assert_grad_close,
    make_problem,
    weighted_sum,
)
from rljax.kernels.token_stats import SweepConfig, _token_stats_vjp

from rljax import kernels

TEMPERATURE = 0.7


def _stats(problem, impl, *, teacher=True, **kwargs):
    return kernels.token_stats(
        problem.hidden,
        problem.w,
        problem.targets,
        temperature=TEMPERATURE,
        teacher_hidden=problem.teacher_hidden if teacher else None,
        impl=impl,
        block_sizes=SMALL_BLOCKS,
        **kwargs,
    )


def _stats_and_grads(problem, impl):
    """(TokenStats, grads w.r.t. hidden, w, teacher_hidden of the weighted sum), one jit."""

    def objective(hidden, w, teacher_hidden):
        stats = _stats(problem._replace(hidden=hidden, w=w, teacher_hidden=teacher_hidden), impl)
        return weighted_sum(stats, problem.weights), stats

    (_, stats), grads = jax.jit(jax.value_and_grad(objective, argnums=(0, 1, 2), has_aux=True))(
        problem.hidden, problem.w, problem.teacher_hidden
    )
    return stats, grads


@functools.lru_cache(maxsize=None)
def _reference_stats_and_grads(dtype):
    return _stats_and_grads(make_problem(dtype=dtype), "reference")


@pytest.mark.parametrize("dtype", DTYPES, ids=["fp32", "bf16"])
@pytest.mark.parametrize("impl", BLOCKWISE_IMPLS)
def test_values_and_gradients_match_reference(impl, dtype):
    value_atol, grad_atol = TOLERANCES[dtype]
    expected, expected_grads = _reference_stats_and_grads(dtype)
    actual, grads = _stats_and_grads(make_problem(dtype=dtype), impl)
    for name, a, e in zip(kernels.TokenStats._fields, actual, expected):
        assert a.dtype == jnp.float32 and a.shape == (13,), name
        assert_close(a, e, value_atol, name)
    for name, a, e in zip(("hidden", "w", "teacher_hidden"), grads, expected_grads):
        assert a.dtype == dtype, name
        assert_grad_close(a, e, grad_atol, name)


@pytest.mark.parametrize("impl", BLOCKWISE_IMPLS)
def test_values_without_jit(impl):
    problem = make_problem(seed=1)
    expected = _stats(problem, "reference", teacher=False)
    actual = _stats(problem, impl, teacher=False)
    assert actual.teacher_logprob is None and actual.jsd is None
    assert_close(actual.logprob, expected.logprob, FP32_ATOL, "logprob")
    assert_close(actual.entropy, expected.entropy, FP32_ATOL, "entropy")


def test_gradient_without_jit_student_only():
    problem = make_problem(seed=2)

    def objective(impl):
        return lambda h, w: weighted_sum(
            kernels.token_stats(
                h, w, problem.targets, temperature=TEMPERATURE, impl=impl, block_sizes=SMALL_BLOCKS
            ),
            problem.weights,
        )

    expected = jax.grad(objective("reference"), argnums=(0, 1))(problem.hidden, problem.w)
    actual = jax.grad(objective("xla_chunked"), argnums=(0, 1))(problem.hidden, problem.w)
    for a, e in zip(actual, expected):
        assert_grad_close(a, e, FP32_GRAD)


@pytest.mark.parametrize("impl", BLOCKWISE_IMPLS)
def test_teacher_statistics_as_targets_give_student_only_gradients(impl):
    """Teacher log-prob / entropy / JSD under stop_gradient: their cotangents are symbolic zeros,
    the teacher rows are not swept, and the gradients equal the reference's."""
    problem = make_problem(seed=3)

    def objective(impl_name):
        def f(hidden, w, teacher_hidden):
            s = kernels.token_stats(
                hidden,
                w,
                problem.targets,
                temperature=TEMPERATURE,
                teacher_hidden=teacher_hidden,
                impl=impl_name,
                block_sizes=SMALL_BLOCKS,
            )
            target = jax.lax.stop_gradient(s.teacher_logprob + s.jsd + s.teacher_entropy)
            return jnp.sum((s.logprob - target) ** 2) + jnp.sum(problem.weights[1] * s.entropy)

        return f

    args = (problem.hidden, problem.w, problem.teacher_hidden)
    expected = jax.grad(objective("reference"), argnums=(0, 1, 2))(*args)
    actual = jax.jit(jax.grad(objective(impl), argnums=(0, 1, 2)))(*args)
    assert_grad_close(actual[0], expected[0], FP32_GRAD, "hidden")
    assert_grad_close(actual[1], expected[1], FP32_GRAD, "w")
    assert float(jnp.abs(actual[2]).max()) == 0.0


@pytest.mark.parametrize("impl", BLOCKWISE_IMPLS)
def test_stop_teacher_gradient_differentiates_jsd_through_student_only(impl):
    problem = make_problem(seed=4)

    def objective(impl_name):
        def f(hidden, w, teacher_hidden):
            s = kernels.token_stats(
                hidden,
                w,
                problem.targets,
                temperature=TEMPERATURE,
                teacher_hidden=teacher_hidden,
                impl=impl_name,
                block_sizes=SMALL_BLOCKS,
                stop_teacher_gradient=True,
            )
            return weighted_sum(s, problem.weights)

        return f

    def independent(hidden, w, teacher_hidden):
        # The same objective from the reference with the teacher made constant by hand: teacher
        # statistics from stop-gradient inputs, JSD from student log-probs vs constant ones.
        t = kernels.token_stats(
            jax.lax.stop_gradient(teacher_hidden),
            jax.lax.stop_gradient(w),
            problem.targets,
            temperature=TEMPERATURE,
            impl="reference",
        )
        logits = hidden @ w / TEMPERATURE
        log_p = jax.nn.log_softmax(logits)
        log_q = jax.nn.log_softmax(jax.lax.stop_gradient(teacher_hidden @ w) / TEMPERATURE)
        log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
        jsd = 0.5 * jnp.sum(
            jnp.exp(log_p) * (log_p - log_m) + jnp.exp(log_q) * (log_q - log_m), axis=1
        )
        s = kernels.token_stats(
            hidden, w, problem.targets, temperature=TEMPERATURE, impl="reference"
        )
        return weighted_sum((s.logprob, s.entropy, t.logprob, t.entropy, jsd), problem.weights)

    args = (problem.hidden, problem.w, problem.teacher_hidden)
    expected = jax.grad(independent, argnums=(0, 1))(*args)
    actual = jax.jit(jax.grad(objective(impl), argnums=(0, 1, 2)))(*args)
    assert_grad_close(actual[0], expected[0], FP32_GRAD, "hidden")
    assert_grad_close(actual[1], expected[1], FP32_GRAD, "w")
    assert float(jnp.abs(actual[2]).max()) == 0.0


def test_auto_default_blocks_many_chunks():
    """impl="auto" on CPU is xla_chunked; a small chunk budget forces many full chunks + a tail."""
    problem = make_problem(num_rows=40, hidden_size=48, vocab=300, seed=5)
    blocks = kernels.BlockSizes(chunk_elements=40 * 128)
    assert blocks.chunk_width(40, 300) == 128

    def objective(impl, block_sizes):
        return lambda h, w: weighted_sum(
            kernels.token_stats(h, w, problem.targets, impl=impl, block_sizes=block_sizes),
            problem.weights,
        )

    args = (problem.hidden, problem.w)
    expected = jax.value_and_grad(objective("reference", None), argnums=(0, 1))(*args)
    actual = jax.jit(jax.value_and_grad(objective("auto", blocks), argnums=(0, 1)))(*args)
    assert_close(actual[0], expected[0], 1e-4, "objective")
    for a, e in zip(actual[1], expected[1]):
        assert_grad_close(a, e, FP32_GRAD)


def test_unused_statistics_give_no_gradient_work():
    """No statistic reaches the objective: the backward returns zero gradients."""
    problem = make_problem(seed=6)
    grads = jax.grad(
        lambda h: (
            jnp.sum(
                jax.lax.stop_gradient(
                    kernels.token_stats(h, problem.w, problem.targets, impl="xla_chunked").entropy
                )
            )
            + 0.0 * jnp.sum(h)
        )
    )(problem.hidden)
    assert float(jnp.abs(grads).max()) == 0.0


def test_triton_flavour_with_masked_edges_in_interpret_mode():
    """The GPU kernels (masked Triton loads/stores at the ragged vocabulary edge instead of padded
    edge blocks) run in interpret mode here and match the reference, values and gradients."""
    problem = make_problem(seed=8)
    blocks = kernels.BlockSizes(block_n=16, block_v=16, block_h=16, chunk_v=32)
    stats_fn = _token_stats_vjp(SweepConfig("pallas", TEMPERATURE, blocks, "interpret-gpu"))

    def objective(stats_of):
        def f(hidden, w, teacher_hidden):
            stats = stats_of(hidden, w, teacher_hidden)
            return weighted_sum(stats, problem.weights), stats

        return jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)

    args = (problem.hidden, problem.w, problem.teacher_hidden)
    (_, actual), grads = jax.jit(objective(lambda h, w, t: stats_fn(h, w, problem.targets, t)))(
        *args
    )
    (_, expected), expected_grads = objective(
        lambda h, w, t: _stats(problem._replace(hidden=h, w=w, teacher_hidden=t), "reference")
    )(*args)
    for name, a, e in zip(kernels.TokenStats._fields, actual, expected):
        assert_close(a, e, FP32_ATOL, name)
    for a, e in zip(grads, expected_grads):
        assert_grad_close(a, e, FP32_GRAD)
