"""Float32 math on one [rows, columns] logit tile, shared by the XLA loops and the Pallas kernels.

Every sweep over the vocabulary reduces tiles of z = hidden @ w / temperature with these functions,
so `xla_chunked` and `pallas` run the same arithmetic and differ only in how tiles are scheduled.
Row statistics are kept as (m, s, u) with
    m = max_v z_v,   s = sum_v exp(z_v - m),   u = sum_v exp(z_v - m) (z_v - m),
which merge exactly across tiles (the online log-sum-exp of flash attention, extended to the
entropy) and give lse = m + log s and entropy = log s - u / s without cancellation against m.
`valid` is a [1, C] boolean column mask (False on the padded tail of the vocabulary) or None.
Row vectors are [R, 1] (keepdims), the layout the TPU kernels need and the broadcasts expect.
"""

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

# A finite stand-in for -inf: exp(MASK_VALUE - m) == 0 and 0 * (MASK_VALUE - m) == 0, no NaN.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
LOG_2 = math.log(2.0)


class RowCotangent(NamedTuple):
    """Per-row constants that turn a logit tile into d objective / d logits, [R, 1] float32.

    A cotangent that is None (the statistic does not reach the objective) drops its term.

    Attributes:
        entropy: the row's entropy.
        g_logprob: cotangent of the target log-prob, or None.
        g_entropy: cotangent of the entropy, or None.
        half_g_jsd: half the cotangent of the JSD, or None.
        kl_to_mixture: KL(pi || M) for this side's distribution pi and M = (pi_S + pi_T) / 2
            (None when half_g_jsd is None).
    """

    entropy: jax.Array
    g_logprob: jax.Array | None
    g_entropy: jax.Array | None
    half_g_jsd: jax.Array | None
    kl_to_mixture: jax.Array | None


def softmax_stats(z: jax.Array, valid: jax.Array | None) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Row statistics (m, s, u) of one tile of logits (see the module docstring).

    Args:
        z: [R, C] float32 logits.
        valid: [1, C] column mask or None.

    Returns:
        (m, s, u), three [R, 1] float32 arrays.
    """
    if valid is not None:
        z = jnp.where(valid, z, MASK_VALUE)
    m = jnp.max(z, axis=1, keepdims=True)
    shifted = z - m
    weights = jnp.exp(shifted)
    return (
        m,
        jnp.sum(weights, axis=1, keepdims=True),
        jnp.sum(weights * shifted, axis=1, keepdims=True),
    )


def merge_softmax_stats(
    m: jax.Array, s: jax.Array, u: jax.Array
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Merges the statistics of K tiles of the same rows (the online log-sum-exp).

    With M = max_k m_k and d_k = m_k - M: s = sum_k e^{d_k} s_k, u = sum_k e^{d_k} (u_k + d_k s_k).

    Args:
        m, s, u: [K, R, 1] stacked tile statistics.

    Returns:
        (m, s, u) of the union of the tiles, [R, 1] each.
    """
    m_all = jnp.max(m, axis=0)
    shift = m - m_all[None]
    scale = jnp.exp(shift)
    return m_all, jnp.sum(scale * s, axis=0), jnp.sum(scale * (u + shift * s), axis=0)


def lse_and_entropy(m: jax.Array, s: jax.Array, u: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Log-sum-exp and entropy from merged statistics.

    Args:
        m, s, u: [R, 1] statistics of whole rows.

    Returns:
        (lse, entropy): lse = m + log s, entropy = log s - u / s, [R, 1] each.
    """
    log_s = jnp.log(s)
    return m + log_s, log_s - u / s


def log_mixture(log_p: jax.Array, log_q: jax.Array) -> jax.Array:
    """log M with M = (p + q) / 2, computed from log p and log q without overflow.

    Args:
        log_p, log_q: log-probabilities of the same shape.

    Returns:
        log((exp(log_p) + exp(log_q)) / 2), same shape.
    """
    high = jnp.maximum(log_p, log_q)
    return high + jnp.log1p(jnp.exp(-jnp.abs(log_p - log_q))) - LOG_2


def kl_to_mixture(
    z_s: jax.Array, z_t: jax.Array, lse_s: jax.Array, lse_t: jax.Array, valid: jax.Array | None
) -> tuple[jax.Array, jax.Array]:
    """Partial sums over a tile of KL(p || M) and KL(q || M), p = softmax(z_s), q = softmax(z_t).

    JSD(p || q) = 0.5 (KL(p || M) + KL(q || M)); the sums over all tiles of a row give both halves.

    Args:
        z_s, z_t: [R, C] student and teacher logits.
        lse_s, lse_t: [R, 1] their full-vocabulary log-sum-exps.
        valid: [1, C] column mask or None.

    Returns:
        Two [R, 1] float32 partial sums.
    """
    log_p = z_s - lse_s
    log_q = z_t - lse_t
    log_m = log_mixture(log_p, log_q)
    terms_p = jnp.exp(log_p) * (log_p - log_m)
    terms_q = jnp.exp(log_q) * (log_q - log_m)
    if valid is not None:
        terms_p = jnp.where(valid, terms_p, 0.0)
        terms_q = jnp.where(valid, terms_q, 0.0)
    return jnp.sum(terms_p, axis=1, keepdims=True), jnp.sum(terms_q, axis=1, keepdims=True)


def logit_cotangent(
    z: jax.Array,
    lse: jax.Array,
    row: RowCotangent,
    is_target: jax.Array,
    valid: jax.Array | None,
    log_m: jax.Array | None,
) -> jax.Array:
    """d objective / d z for one tile, objective = sum_n g_lp logprob + g_ent entropy + g_jsd jsd.

    With log p = z - lse:
        d logprob / dz_v = 1[v = y] - p_v
        d entropy / dz_v = -p_v (log p_v + entropy)
        d jsd / dz_v     = p_v (0.5 log(p_v / M_v) - 0.5 KL(p || M))   (per side of the JSD)
    Masked columns get 0.

    Args:
        z: [R, C] logits of this side.
        lse: [R, 1] log-sum-exp of this side's full rows.
        row: per-row constants of this side.
        is_target: [R, C] boolean, True where column == the row's target.
        valid: [1, C] column mask or None.
        log_m: [R, C] log mixture density (used only when row.half_g_jsd is set).

    Returns:
        [R, C] float32 cotangent of the logits.
    """
    log_p = z - lse
    coef = jnp.zeros_like(z)
    if row.g_logprob is not None:
        coef = coef - row.g_logprob
    if row.g_entropy is not None:
        coef = coef - row.g_entropy * (log_p + row.entropy)
    if row.half_g_jsd is not None:
        coef = coef + row.half_g_jsd * (log_p - log_m - row.kl_to_mixture)
    grad = jnp.exp(log_p) * coef
    if row.g_logprob is not None:
        grad = grad + jnp.where(is_target, row.g_logprob, 0.0)
    if valid is not None:
        grad = jnp.where(valid, grad, 0.0)
    return grad
