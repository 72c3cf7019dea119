"""Plain-jnp token statistics that materialise the [N, V] logits: the oracle for the kernels."""

import jax
import jax.numpy as jnp
from rljax.kernels.tile_math import LOG_2
from rljax.kernels.types import TokenStats


def token_stats_reference(
    hidden: jax.Array,
    w_unembed: jax.Array,
    targets: jax.Array,
    *,
    temperature: float = 1.0,
    teacher_hidden: jax.Array | None = None,
    stop_teacher_gradient: bool = False,
) -> TokenStats:
    """Token log-prob, entropy (and teacher statistics and JSD) from full [N, V] logits.

    logits = hidden @ w_unembed / temperature (grpo.md GRPO-1), log-softmax in float32; entropy
    -sum_v p log p; JSD(p || q) = 0.5 KL(p || M) + 0.5 KL(q || M), M = (p + q) / 2
    (anti_sd.md ASD-3).
    Gradients come from JAX autodiff. Inputs are assumed validated by `kernels.token_stats`; a
    target outside [0, V) under a trace gives a NaN log-prob.

    Args:
        hidden: [N, H] student hidden states.
        w_unembed: [H, V] unembedding.
        targets: [N] int token ids in [0, V).
        temperature: tau > 0.
        teacher_hidden: optional [N, H] teacher hidden states (same weights, other context).
        stop_teacher_gradient: treat the teacher distribution as a constant (no gradient through
            the teacher rows or the teacher's use of w_unembed).

    Returns:
        TokenStats with float32 [N] fields.
    """

    def log_softmax(rows: jax.Array) -> jax.Array:
        logits = jnp.dot(rows, w_unembed, preferred_element_type=jnp.float32) / temperature
        return jax.nn.log_softmax(logits, axis=-1)

    in_range = (targets >= 0) & (targets < w_unembed.shape[1])

    def logprob_and_entropy(log_p: jax.Array) -> tuple[jax.Array, jax.Array]:
        logprob = jnp.take_along_axis(log_p, targets[:, None], axis=1)[:, 0]
        logprob = jnp.where(in_range, logprob, jnp.nan)
        return logprob, -jnp.sum(jnp.exp(log_p) * log_p, axis=-1)

    log_p = log_softmax(hidden)
    logprob, entropy = logprob_and_entropy(log_p)
    if teacher_hidden is None:
        return TokenStats(logprob, entropy)
    log_q = log_softmax(teacher_hidden)
    if stop_teacher_gradient:
        log_q = jax.lax.stop_gradient(log_q)
    teacher_logprob, teacher_entropy = logprob_and_entropy(log_q)
    log_m = jnp.logaddexp(log_p, log_q) - LOG_2
    jsd = 0.5 * jnp.sum(
        jnp.exp(log_p) * (log_p - log_m) + jnp.exp(log_q) * (log_q - log_m), axis=-1
    )
    return TokenStats(logprob, entropy, teacher_logprob, teacher_entropy, jsd)
