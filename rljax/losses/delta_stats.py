"""DelTA batch statistics as additive sums: side centroids, margins and temperatures.

arXiv 2605.21467, delta.md DELTA-2..6. Every statistic is a sum over tokens, so it can be
accumulated over micro-batches with `jax.tree.map(jnp.add, a, b)` or reduced over devices with
`psum` before `delta_centroids_from_sums` / `delta_temperatures_from_sums` turn it into the
centroids and temperatures that `rljax.losses.delta` maps to token coefficients.
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_rank, check_shape

PROXIES = ("one_minus_p_h", "h")
METRICS = ("euclidean", "diag_var")
_METRIC_EPS = 1e-6


class DeltaCentroidSums(NamedTuple):
    """Additive per-side sums for the centroids (and the diag_var metric) of one pass.

    Attributes:
        weighted_v_pos: [H] sum over Pos tokens of weight * v.
        weight_pos: [] sum over Pos tokens of the weights.
        weighted_v_neg: [H] the same over Neg tokens.
        weight_neg: [].
        count_pos: [] number of Pos tokens.
        v_sum_pos: [H] unweighted sum of v over Pos tokens.
        v_sq_sum_pos: [H] unweighted sum of v**2 over Pos tokens.
        count_neg: [].
        v_sum_neg: [H].
        v_sq_sum_neg: [H].
    """

    weighted_v_pos: jax.Array
    weight_pos: jax.Array
    weighted_v_neg: jax.Array
    weight_neg: jax.Array
    count_pos: jax.Array
    v_sum_pos: jax.Array
    v_sq_sum_pos: jax.Array
    count_neg: jax.Array
    v_sum_neg: jax.Array
    v_sq_sum_neg: jax.Array


class DeltaMarginSums(NamedTuple):
    """Additive count, sum and sum of squares of the own-side margins on each side ([] each)."""

    count_pos: jax.Array
    margin_sum_pos: jax.Array
    margin_sq_sum_pos: jax.Array
    count_neg: jax.Array
    margin_sum_neg: jax.Array
    margin_sq_sum_neg: jax.Array


class DeltaCentroids(NamedTuple):
    """Side centroids and the distance metric: mu_pos [H], mu_neg [H], metric_weights [H].

    The distance is D(v, mu) = sum_h metric_weights[h] * (v[h] - mu[h])**2.
    """

    mu_pos: jax.Array
    mu_neg: jax.Array
    metric_weights: jax.Array


class DeltaTemperatures(NamedTuple):
    """Per-side margin temperatures gamma_pos [], gamma_neg [] (DELTA-5)."""

    gamma_pos: jax.Array
    gamma_neg: jax.Array


class DeltaTokens(NamedTuple):
    """Validated per-token DelTA inputs of one micro-batch (all stop-gradient, float32).

    Attributes:
        v: [B, T, H] gradient proxy, 0 on padding.
        pos: [B, T] bool, valid tokens of positive-advantage sequences.
        neg: [B, T] bool, valid tokens of negative-advantage sequences.
        zero: [B, T] bool, valid tokens of zero-advantage sequences.
        adv_pos: [B, T] A+ = max(A, 0) broadcast over tokens.
        adv_neg: [B, T] A- = max(-A, 0) broadcast over tokens.
    """

    v: jax.Array
    pos: jax.Array
    neg: jax.Array
    zero: jax.Array
    adv_pos: jax.Array
    adv_neg: jax.Array


def delta_tokens(
    hidden: jax.Array, token_probs: jax.Array, advantages: jax.Array, mask: jax.Array, proxy: str
) -> DeltaTokens:
    """Checks the inputs and builds the gradient proxy and the side masks.

    arXiv 2605.21467; delta.md DELTA-2: v = (1 - p) h ("one_minus_p_h", the gradient of
    log softmax(W h)_y w.r.t. the sampled token's unembedding row) or v = h ("h").

    Args:
        hidden: [B, T, H] LM-head inputs of the pre-update policy.
        token_probs: [B, T] p = exp(logp_old).
        advantages: [B] sequence advantages.
        mask: [B, T] valid response tokens.
        proxy: "one_minus_p_h" or "h".

    Returns:
        DeltaTokens.
    """
    check_rank("hidden", hidden, 3)
    check_shape("token_probs", token_probs, hidden.shape[:2])
    check_shape("advantages", advantages, hidden.shape[:1])
    check_shape("mask", mask, hidden.shape[:2])
    check_choice("proxy", proxy, PROXIES)
    hidden = jax.lax.stop_gradient(jnp.asarray(hidden, jnp.float32))
    token_probs = jax.lax.stop_gradient(jnp.asarray(token_probs, jnp.float32))
    advantages = jax.lax.stop_gradient(jnp.asarray(advantages, jnp.float32))
    valid = jnp.asarray(mask, bool)
    v = hidden if proxy == "h" else (1.0 - token_probs)[..., None] * hidden
    v = jnp.where(valid[..., None], v, 0.0)
    adv = jnp.broadcast_to(advantages[:, None], valid.shape)
    return DeltaTokens(
        v=v,
        pos=valid & (adv > 0),
        neg=valid & (adv < 0),
        zero=valid & (adv == 0),
        adv_pos=jnp.maximum(adv, 0.0),
        adv_neg=jnp.maximum(-adv, 0.0),
    )


def delta_margins(
    tokens: DeltaTokens, centroids: DeltaCentroids, opposite_weight: float
) -> tuple[jax.Array, jax.Array]:
    """Own-side margins of every token w.r.t. the given centroids.

    arXiv 2605.21467; delta.md DELTA-4 with the `opposite_weight` knob w:
        m+ = w D- - D+  (read on Pos tokens),  m- = w D+ - D-  (read on Neg tokens)
    D the (metric-weighted) squared distance to a side's centroid.

    Args:
        tokens: DeltaTokens of the micro-batch.
        centroids: DeltaCentroids.
        opposite_weight: w, multiplies the opposite-side distance.

    Returns:
        (m+ [B, T], m- [B, T]) float32, for all tokens (padding included; mask before use).
    """
    check_rank("centroids.mu_pos", centroids.mu_pos, 1)
    check_shape("centroids.mu_pos", centroids.mu_pos, tokens.v.shape[2:])
    check_shape("centroids.mu_neg", centroids.mu_neg, tokens.v.shape[2:])
    check_shape("centroids.metric_weights", centroids.metric_weights, tokens.v.shape[2:])
    weights = centroids.metric_weights[None, None, :]
    dist_pos = jnp.sum(weights * (tokens.v - centroids.mu_pos[None, None, :]) ** 2, axis=-1)
    dist_neg = jnp.sum(weights * (tokens.v - centroids.mu_neg[None, None, :]) ** 2, axis=-1)
    return opposite_weight * dist_neg - dist_pos, opposite_weight * dist_pos - dist_neg


def _weighted_sum(weights: jax.Array, v: jax.Array) -> jax.Array:
    """sum_{b,t} weights[b, t] * v[b, t, :] -> [H]."""
    return jnp.einsum("bt,bth->h", weights, v)


def delta_centroid_sums(
    hidden: jax.Array,
    token_probs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    centroids: DeltaCentroids | None = None,
    temperatures: DeltaTemperatures | None = None,
    proxy: str = "one_minus_p_h",
    opposite_weight: float = 1.0,
) -> DeltaCentroidSums:
    """Per-side weighted sums of the gradient proxies of one micro-batch, to be accumulated.

    arXiv 2605.21467; delta.md DELTA-3 (no `centroids`: weights A+ on Pos, A- on Neg) and
    DELTA-6 (with `centroids` and `temperatures`: soft weights sigmoid(m+ / gamma+) A+ on Pos
    and sigmoid(m- / gamma-) A- on Neg, margins w.r.t. `centroids`). Also returns the unweighted
    per-dimension moments the diag_var metric needs.

    Args:
        hidden: [B, T, H] LM-head inputs from the pre-update policy (stop-gradient).
        token_probs: [B, T] p = exp(logp_old) of each token (tau = 1).
        advantages: [B] sequence advantages.
        mask: [B, T] valid response tokens.
        centroids: the current centroids for a refinement pass, or None for the first pass.
        temperatures: the current temperatures; required with `centroids`.
        proxy: "one_minus_p_h" (v = (1 - p) h, default) or "h".
        opposite_weight: multiplies the opposite-side distance in the margins.

    Returns:
        DeltaCentroidSums of float32 arrays.
    """
    tokens = delta_tokens(hidden, token_probs, advantages, mask, proxy)
    weight_pos, weight_neg = tokens.adv_pos * tokens.pos, tokens.adv_neg * tokens.neg
    if centroids is not None:
        if temperatures is None:
            raise ValueError("delta_centroid_sums with centroids needs temperatures, got None")
        check_rank("temperatures.gamma_pos", temperatures.gamma_pos, 0)
        check_rank("temperatures.gamma_neg", temperatures.gamma_neg, 0)
        margin_pos, margin_neg = delta_margins(tokens, centroids, opposite_weight)
        weight_pos = weight_pos * jax.nn.sigmoid(margin_pos / temperatures.gamma_pos)
        weight_neg = weight_neg * jax.nn.sigmoid(margin_neg / temperatures.gamma_neg)
    pos, neg = tokens.pos.astype(jnp.float32), tokens.neg.astype(jnp.float32)
    return DeltaCentroidSums(
        weighted_v_pos=_weighted_sum(weight_pos, tokens.v),
        weight_pos=jnp.sum(weight_pos),
        weighted_v_neg=_weighted_sum(weight_neg, tokens.v),
        weight_neg=jnp.sum(weight_neg),
        count_pos=jnp.sum(pos),
        v_sum_pos=_weighted_sum(pos, tokens.v),
        v_sq_sum_pos=_weighted_sum(pos, tokens.v**2),
        count_neg=jnp.sum(neg),
        v_sum_neg=_weighted_sum(neg, tokens.v),
        v_sq_sum_neg=_weighted_sum(neg, tokens.v**2),
    )


def _variance(count: jax.Array, total: jax.Array, sq_total: jax.Array) -> jax.Array:
    """Population variance from a count, a sum and a sum of squares (0 for an empty set)."""
    n = jnp.maximum(count, 1.0)
    return sq_total / n - (total / n) ** 2


def delta_centroids_from_sums(
    sums: DeltaCentroidSums,
    *,
    metric: str = "euclidean",
    metric_weights: jax.Array | None = None,
    eps: float = 1e-8,
) -> DeltaCentroids:
    """Centroids mu = sum w v / max(sum w, eps) on each side from accumulated sums.

    arXiv 2605.21467; delta.md DELTA-3 / DELTA-6. An empty side gets mu = 0. The metric is fixed
    by the first pass: "euclidean" (weights 1, the official code's effective behaviour) or
    "diag_var" (weights 1 / (var+ + var- + 1e-6), var the unweighted population variance of v per
    dimension over the side's tokens; a library choice, as the official code computes and then
    discards this metric). Refinement passes hand the first pass's `metric_weights` on.

    Args:
        sums: DeltaCentroidSums accumulated over the whole batch.
        metric: "euclidean" or "diag_var"; ignored when `metric_weights` is given.
        metric_weights: [H] weights carried over from the first pass, or None.
        eps: floor of the weight totals.

    Returns:
        DeltaCentroids.
    """
    check_rank("sums.weighted_v_pos", sums.weighted_v_pos, 1)
    mu_pos = sums.weighted_v_pos / jnp.maximum(sums.weight_pos, eps)
    mu_neg = sums.weighted_v_neg / jnp.maximum(sums.weight_neg, eps)
    if metric_weights is None:
        check_choice("metric", metric, METRICS)
        if metric == "euclidean":
            metric_weights = jnp.ones_like(mu_pos)
        else:
            total = _variance(sums.count_pos, sums.v_sum_pos, sums.v_sq_sum_pos) + _variance(
                sums.count_neg, sums.v_sum_neg, sums.v_sq_sum_neg
            )
            metric_weights = 1.0 / (jnp.maximum(total, 0.0) + _METRIC_EPS)
    else:
        check_shape("metric_weights", metric_weights, mu_pos.shape)
    return DeltaCentroids(mu_pos=mu_pos, mu_neg=mu_neg, metric_weights=metric_weights)


def delta_margin_sums(
    hidden: jax.Array,
    token_probs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    centroids: DeltaCentroids,
    *,
    proxy: str = "one_minus_p_h",
    opposite_weight: float = 1.0,
) -> DeltaMarginSums:
    """Count, sum and sum of squares of the own-side margins of one micro-batch.

    arXiv 2605.21467; delta.md DELTA-4 (margins w.r.t. `centroids`: m+ = D- - D+ on Pos tokens,
    m- = D+ - D- on Neg tokens) feeding DELTA-5 (the temperatures).

    Args:
        hidden: [B, T, H] LM-head inputs (stop-gradient).
        token_probs: [B, T] token probabilities under the pre-update policy.
        advantages: [B] sequence advantages.
        mask: [B, T] valid response tokens.
        centroids: the centroids the margins are measured against.
        proxy: "one_minus_p_h" or "h".
        opposite_weight: multiplies the opposite-side distance.

    Returns:
        DeltaMarginSums of float32 scalars.
    """
    tokens = delta_tokens(hidden, token_probs, advantages, mask, proxy)
    margin_pos, margin_neg = delta_margins(tokens, centroids, opposite_weight)
    margin_pos = jnp.where(tokens.pos, margin_pos, 0.0)
    margin_neg = jnp.where(tokens.neg, margin_neg, 0.0)
    return DeltaMarginSums(
        count_pos=jnp.sum(tokens.pos, dtype=jnp.float32),
        margin_sum_pos=jnp.sum(margin_pos),
        margin_sq_sum_pos=jnp.sum(margin_pos**2),
        count_neg=jnp.sum(tokens.neg, dtype=jnp.float32),
        margin_sum_neg=jnp.sum(margin_neg),
        margin_sq_sum_neg=jnp.sum(margin_neg**2),
    )


def delta_temperatures_from_sums(sums: DeltaMarginSums, *, eps: float = 1e-8) -> DeltaTemperatures:
    """Per-side temperature: the population std of the side's margins, floored at sqrt(eps).

    arXiv 2605.21467; delta.md DELTA-5:
        gamma_s = sqrt(max(sum m^2 / n_s - (sum m / n_s)^2, eps)),  n_s = max(|side|, 1)

    Args:
        sums: DeltaMarginSums accumulated over the whole batch.
        eps: variance floor (1e-8 gives gamma >= 1e-4).

    Returns:
        DeltaTemperatures.
    """
    var_pos = _variance(sums.count_pos, sums.margin_sum_pos, sums.margin_sq_sum_pos)
    var_neg = _variance(sums.count_neg, sums.margin_sum_neg, sums.margin_sq_sum_neg)
    return DeltaTemperatures(
        gamma_pos=jnp.sqrt(jnp.maximum(var_pos, eps)), gamma_neg=jnp.sqrt(jnp.maximum(var_neg, eps))
    )
