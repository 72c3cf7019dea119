"""kernels.fused_policy_loss against policy_loss(token_stats(..., impl="reference").logprob, ...)
under jax.grad, for the blockwise implementations, aggregation modes, token-level advantages,
bf16 and the Anti-SD full-vocabulary JSD term."""

import jax
import jax.numpy as jnp
import pytest
from kernel_problems import (
    BLOCKWISE_IMPLS,
    FP32_ATOL,
    FP32_GRAD,
    SMALL_BLOCKS,
    TOLERANCES,
    assert_close,
    assert_grad_close,
    make_problem,
)

from rljax import kernels
from rljax.losses.aggregation import aggregate
from rljax.losses.policy import policy_loss

B, T = 3, 5
TEMPERATURE = 0.8


def _batch(dtype=jnp.float32, seed=0):
    """[B, T] policy-loss inputs around the current log-probs, so clipping is partly active."""
    problem = make_problem(num_rows=B * T, dtype=dtype, seed=seed)
    keys = jax.random.split(jax.random.key(seed + 100), 3)
    logprob = kernels.token_stats(
        problem.hidden, problem.w, problem.targets, temperature=TEMPERATURE, impl="reference"
    ).logprob
    old = logprob.reshape(B, T) + 0.3 * jax.random.normal(keys[0], (B, T))
    advantages = jax.random.normal(keys[1], (B, T))
    mask = jax.random.bernoulli(keys[2], 0.75, (B, T)).at[:, 1].set(True)
    hidden = problem.hidden.reshape(B, T, -1)
    teacher = problem.teacher_hidden.reshape(B, T, -1)
    return hidden, teacher, problem.w, problem.targets.reshape(B, T), old, advantages, mask


def _reference_loss(hidden, w, teacher, targets, old, advantages, mask, jsd_coef, kwargs):
    """Independent composition: reference statistics, then rljax.losses.policy_loss; the JSD
    term with the teacher distribution made constant by stop-gradient inputs."""
    h = hidden.shape[-1]
    stats = kernels.token_stats(
        hidden.reshape(-1, h), w, targets.reshape(-1), temperature=TEMPERATURE, impl="reference"
    )
    loss, _ = policy_loss(stats.logprob.reshape(B, T), old, advantages, mask, **kwargs)
    if jsd_coef:
        log_p = jax.nn.log_softmax(hidden.reshape(-1, h) @ w / TEMPERATURE)
        log_q = jax.lax.stop_gradient(jax.nn.log_softmax(teacher.reshape(-1, h) @ w / TEMPERATURE))
        log_m = jnp.logaddexp(log_p, log_q) - jnp.log(2.0)
        jsd = 0.5 * jnp.sum(
            jnp.exp(log_p) * (log_p - log_m) + jnp.exp(log_q) * (log_q - log_m), axis=1
        )
        loss = loss + jsd_coef * aggregate(
            jsd.reshape(B, T), mask, mode=kwargs.get("mode", "token-mean")
        )
    return loss


CASES = {
    "dapo-token-mean-jsd": (dict(clip_low=0.2, clip_high=0.28, dual_clip=3.0), -0.5),
    "grpo-seq-mean": (dict(mode="seq-mean-token-mean"), 0.0),
    "drgrpo-sum-norm": (dict(mode="seq-mean-token-sum-norm", max_len=8), 0.0),
}


@pytest.mark.parametrize("case", sorted(CASES))
@pytest.mark.parametrize("impl", BLOCKWISE_IMPLS)
def test_loss_and_gradients_match_composition(impl, case):
    kwargs, jsd_coef = CASES[case]
    hidden, teacher, w, targets, old, advantages, mask = _batch()
    use_teacher = teacher if jsd_coef else None

    def fused(hidden, w):
        return kernels.fused_policy_loss(
            hidden,
            w,
            targets,
            old,
            advantages,
            mask,
            temperature=TEMPERATURE,
            teacher_hidden=use_teacher,
            jsd_coef=jsd_coef,
            impl=impl,
            block_sizes=SMALL_BLOCKS,
            **kwargs,
        )

    (loss, metrics), grads = jax.jit(jax.value_and_grad(fused, argnums=(0, 1), has_aux=True))(
        hidden, w
    )
    expected, expected_grads = jax.value_and_grad(_reference_loss, argnums=(0, 1))(
        hidden, w, teacher, targets, old, advantages, mask, jsd_coef, kwargs
    )
    assert_close(loss, expected, FP32_ATOL, "loss")
    assert float(jnp.abs(expected_grads[0]).max()) > 1e-3  # the gradient is not trivially zero
    for name, a, e in zip(("hidden", "w"), grads, expected_grads):
        assert_grad_close(a, e, FP32_GRAD, name)
    stats = kernels.token_stats(
        hidden.reshape(B * T, -1), w, targets.reshape(-1), temperature=TEMPERATURE, impl="reference"
    )
    assert_close(metrics["token_logprob"], stats.logprob.reshape(B, T), FP32_ATOL, "token_logprob")
    assert_close(
        metrics["entropy"], aggregate(stats.entropy.reshape(B, T), mask), FP32_ATOL, "entropy"
    )


def test_bf16_matches_composition_and_reports_teacher_metrics():
    hidden, teacher, w, targets, old, advantages, mask = _batch(dtype=jnp.bfloat16, seed=1)

    def fused(hidden, w):
        return kernels.fused_policy_loss(
            hidden,
            w,
            targets,
            old,
            advantages[:, 0],
            mask,
            temperature=TEMPERATURE,
            teacher_hidden=teacher,
            impl="pallas",
            block_sizes=SMALL_BLOCKS,
        )

    (loss, metrics), grads = jax.jit(jax.value_and_grad(fused, argnums=(0, 1), has_aux=True))(
        hidden, w
    )
    expected, expected_grads = jax.value_and_grad(_reference_loss, argnums=(0, 1))(
        hidden, w, teacher, targets, old, advantages[:, 0], mask, 0.0, {}
    )
    value_atol, grad_atol = TOLERANCES[jnp.bfloat16]
    assert_close(loss, expected, value_atol, "loss")
    for name, a, e in zip(("hidden", "w"), grads, expected_grads):
        assert a.dtype == jnp.bfloat16
        assert_grad_close(a, e, grad_atol, name)
    t = kernels.token_stats(
        hidden.reshape(B * T, -1),
        w,
        targets.reshape(-1),
        temperature=TEMPERATURE,
        teacher_hidden=teacher.reshape(B * T, -1),
        impl="reference",
    )
    for name, value in (
        ("teacher_logprob", t.teacher_logprob),
        ("teacher_entropy", t.teacher_entropy),
        ("jsd", t.jsd),
    ):
        assert_close(metrics[name], value.reshape(B, T), value_atol, name)


def test_reference_impl_and_without_jit():
    hidden, teacher, w, targets, old, advantages, mask = _batch(seed=2)
    expected = _reference_loss(hidden, w, teacher, targets, old, advantages, mask, -0.5, {})
    for impl in ("reference", "xla_chunked"):
        loss, _ = kernels.fused_policy_loss(
            hidden,
            w,
            targets,
            old,
            advantages,
            mask,
            temperature=TEMPERATURE,
            teacher_hidden=teacher,
            jsd_coef=-0.5,
            impl=impl,
            block_sizes=SMALL_BLOCKS,
        )
        assert_close(loss, expected, FP32_ATOL, impl)


@pytest.mark.parametrize("impl", BLOCKWISE_IMPLS)
def test_policy_loss_on_token_stats_matches_reference_path(impl):
    """jax.grad of policy_loss built on top of token_stats (the unfused path) equals the same
    composition on the reference statistics."""
    hidden, _, w, targets, old, advantages, mask = _batch(seed=3)

    def composed(hidden, w, impl_name):
        stats = kernels.token_stats(
            hidden.reshape(B * T, -1),
            w,
            targets.reshape(-1),
            temperature=TEMPERATURE,
            impl=impl_name,
            block_sizes=SMALL_BLOCKS,
        )
        return policy_loss(stats.logprob.reshape(B, T), old, advantages, mask, clip_high=0.28)[0]

    expected, expected_grads = jax.value_and_grad(composed, argnums=(0, 1))(hidden, w, "reference")
    loss, grads = jax.jit(jax.value_and_grad(composed, argnums=(0, 1)), static_argnums=2)(
        hidden, w, impl
    )
    assert_close(loss, expected, FP32_ATOL, "loss")
    for name, a, e in zip(("hidden", "w"), grads, expected_grads):
        assert_grad_close(a, e, FP32_GRAD, name)
