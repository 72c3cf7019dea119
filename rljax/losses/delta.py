"""DelTA: discriminative token credit from nearest-centroid margins in token-gradient space.

"DelTA: Discriminative Token Credit Assignment for Reinforcement Learning from Verifiable
Rewards", Zhang, Wu, Lin, arXiv 2605.21467; official code RUCBM/DelTA. Spec: methods/delta.md.

Each valid token gets a coefficient c in [c_min, c_max] from how clearly its gradient proxy
v = (1 - p) h sits on its own side (positive or negative advantage) of a nearest-centroid
discriminator; the coefficients are normalised to mean 1 over the valid tokens and multiply the
sequence advantage of the unchanged DAPO loss: `A_tok = A[:, None] * c~ * mask`.

Every statistic is a sum, so batches too large for one pass are handled in passes over
micro-batches, adding the `*Sums` tuples with `jax.tree.map(jnp.add, a, b)` (or `psum`):
  1. centroids  = delta_centroids_from_sums(sum of delta_centroid_sums(mb))          DELTA-3
  2. temps      = delta_temperatures_from_sums(sum of delta_margin_sums(mb, centroids))  DELTA-4/5
  3. n_refine x: new = delta_centroids_from_sums(sum of delta_centroid_sums(mb, centroids, temps));
                 temps = delta_temperatures_from_sums(sum of delta_margin_sums(mb, centroids));
                 centroids = new                                                      DELTA-6
  4. raw c per micro-batch = delta_coefficients_from_centroids(mb, centroids, temps)  DELTA-7
  5. c~ = delta_normalize_coefficients(raw c, mask, total sums of c and mask)         DELTA-8
`delta_coefficients_streamed` runs exactly this loop; `delta_coefficients` is the one-pass form.
"""

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_rank, check_shape

PROXIES = ("one_minus_p_h", "h")
METRICS = ("euclidean", "diag_var")
_METRIC_EPS = 1e-6

# (hidden [b, T, H], token_probs [b, T], advantages [b], mask [b, T]) of one micro-batch.
MicroBatch = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


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


class _Tokens(NamedTuple):
    """Validated per-token inputs of one micro-batch."""

    v: jax.Array  # [B, T, H] gradient proxy
    pos: jax.Array  # [B, T] bool
    neg: jax.Array  # [B, T] bool
    zero: jax.Array  # [B, T] bool
    adv_pos: jax.Array  # [B, T] A+ broadcast
    adv_neg: jax.Array  # [B, T] A- broadcast


def _tokens(hidden: jax.Array, token_probs: jax.Array, advantages: jax.Array, mask: jax.Array,
            proxy: str) -> _Tokens:
    """Checks shapes and builds the proxy v and the side masks (DELTA-2), all stop-gradient."""
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
    return _Tokens(v=v, pos=valid & (adv > 0), neg=valid & (adv < 0), zero=valid & (adv == 0),
                   adv_pos=jnp.maximum(adv, 0.0), adv_neg=jnp.maximum(-adv, 0.0))


def _margins(tokens: _Tokens, centroids: DeltaCentroids,
             opposite_weight: float) -> tuple[jax.Array, jax.Array]:
    """Own-side margins m+ = w_opp D- - D+ and m- = w_opp D+ - D- for every token (DELTA-4)."""
    check_rank("centroids.mu_pos", centroids.mu_pos, 1)
    check_shape("centroids.mu_pos", centroids.mu_pos, tokens.v.shape[2:])
    check_shape("centroids.mu_neg", centroids.mu_neg, tokens.v.shape[2:])
    check_shape("centroids.metric_weights", centroids.metric_weights, tokens.v.shape[2:])
    weights = centroids.metric_weights[None, None, :]
    dist_pos = jnp.sum(weights * (tokens.v - centroids.mu_pos[None, None, :])**2, axis=-1)
    dist_neg = jnp.sum(weights * (tokens.v - centroids.mu_neg[None, None, :])**2, axis=-1)
    return opposite_weight * dist_neg - dist_pos, opposite_weight * dist_pos - dist_neg


def _weighted_sum(weights: jax.Array, v: jax.Array) -> jax.Array:
    """sum_{b,t} weights[b, t] * v[b, t, :] -> [H]."""
    return jnp.einsum("bt,bth->h", weights, v)


def delta_centroid_sums(hidden: jax.Array, token_probs: jax.Array, advantages: jax.Array,
                        mask: jax.Array, *, centroids: DeltaCentroids | None = None,
                        temperatures: DeltaTemperatures | None = None,
                        proxy: str = "one_minus_p_h", opposite_weight: float = 1.0
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
    tokens = _tokens(hidden, token_probs, advantages, mask, proxy)
    weight_pos, weight_neg = tokens.adv_pos * tokens.pos, tokens.adv_neg * tokens.neg
    if centroids is not None:
        if temperatures is None:
            raise ValueError("delta_centroid_sums with centroids needs temperatures, got None")
        check_rank("temperatures.gamma_pos", temperatures.gamma_pos, 0)
        check_rank("temperatures.gamma_neg", temperatures.gamma_neg, 0)
        margin_pos, margin_neg = _margins(tokens, centroids, opposite_weight)
        weight_pos = weight_pos * jax.nn.sigmoid(margin_pos / temperatures.gamma_pos)
        weight_neg = weight_neg * jax.nn.sigmoid(margin_neg / temperatures.gamma_neg)
    pos, neg = tokens.pos.astype(jnp.float32), tokens.neg.astype(jnp.float32)
    return DeltaCentroidSums(
        weighted_v_pos=_weighted_sum(weight_pos, tokens.v), weight_pos=jnp.sum(weight_pos),
        weighted_v_neg=_weighted_sum(weight_neg, tokens.v), weight_neg=jnp.sum(weight_neg),
        count_pos=jnp.sum(pos), v_sum_pos=_weighted_sum(pos, tokens.v),
        v_sq_sum_pos=_weighted_sum(pos, tokens.v**2),
        count_neg=jnp.sum(neg), v_sum_neg=_weighted_sum(neg, tokens.v),
        v_sq_sum_neg=_weighted_sum(neg, tokens.v**2))


def _variance(count: jax.Array, total: jax.Array, sq_total: jax.Array) -> jax.Array:
    """Population variance from a count, a sum and a sum of squares (0 for an empty set)."""
    n = jnp.maximum(count, 1.0)
    return sq_total / n - (total / n)**2


def delta_centroids_from_sums(sums: DeltaCentroidSums, *, metric: str = "euclidean",
                              metric_weights: jax.Array | None = None, eps: float = 1e-8
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
            total = (_variance(sums.count_pos, sums.v_sum_pos, sums.v_sq_sum_pos)
                     + _variance(sums.count_neg, sums.v_sum_neg, sums.v_sq_sum_neg))
            metric_weights = 1.0 / (jnp.maximum(total, 0.0) + _METRIC_EPS)
    else:
        check_shape("metric_weights", metric_weights, mu_pos.shape)
    return DeltaCentroids(mu_pos=mu_pos, mu_neg=mu_neg, metric_weights=metric_weights)


def delta_margin_sums(hidden: jax.Array, token_probs: jax.Array, advantages: jax.Array,
                      mask: jax.Array, centroids: DeltaCentroids, *,
                      proxy: str = "one_minus_p_h", opposite_weight: float = 1.0
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
    tokens = _tokens(hidden, token_probs, advantages, mask, proxy)
    margin_pos, margin_neg = _margins(tokens, centroids, opposite_weight)
    margin_pos = jnp.where(tokens.pos, margin_pos, 0.0)
    margin_neg = jnp.where(tokens.neg, margin_neg, 0.0)
    return DeltaMarginSums(
        count_pos=jnp.sum(tokens.pos, dtype=jnp.float32), margin_sum_pos=jnp.sum(margin_pos),
        margin_sq_sum_pos=jnp.sum(margin_pos**2),
        count_neg=jnp.sum(tokens.neg, dtype=jnp.float32), margin_sum_neg=jnp.sum(margin_neg),
        margin_sq_sum_neg=jnp.sum(margin_neg**2))


def delta_temperatures_from_sums(sums: DeltaMarginSums, *, eps: float = 1e-8
                                 ) -> DeltaTemperatures:
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
    return DeltaTemperatures(gamma_pos=jnp.sqrt(jnp.maximum(var_pos, eps)),
                             gamma_neg=jnp.sqrt(jnp.maximum(var_neg, eps)))


def delta_coefficients_from_centroids(hidden: jax.Array, token_probs: jax.Array,
                                      advantages: jax.Array, mask: jax.Array,
                                      centroids: DeltaCentroids,
                                      temperatures: DeltaTemperatures, *, c_min: float = 0.8,
                                      c_max: float = 1.2, zero_adv_coef: float | None = None,
                                      proxy: str = "one_minus_p_h",
                                      opposite_weight: float = 1.0) -> jax.Array:
    """Raw (unnormalised) DelTA coefficients of one micro-batch from the final statistics.

    arXiv 2605.21467; delta.md DELTA-7:
        c = c_min + (c_max - c_min) * sigmoid(m+ / gamma+)   on Pos tokens
        c = c_min + (c_max - c_min) * sigmoid(m- / gamma-)   on Neg tokens
        c = zero_adv_coef (default c_min)                    on zero-advantage tokens
        c = 0                                                on padding

    Args:
        hidden: [B, T, H] LM-head inputs (stop-gradient).
        token_probs: [B, T] token probabilities under the pre-update policy.
        advantages: [B] sequence advantages.
        mask: [B, T] valid response tokens.
        centroids: final centroids.
        temperatures: final temperatures.
        c_min, c_max: the coefficient range, 0 < c_min <= c_max.
        zero_adv_coef: coefficient of zero-advantage tokens; None means c_min.
        proxy: "one_minus_p_h" or "h".
        opposite_weight: multiplies the opposite-side distance.

    Returns:
        [B, T] float32 coefficients in [c_min, c_max] on valid tokens, 0 on padding
        (stop-gradient).
    """
    if not 0.0 < c_min <= c_max:
        raise ValueError(f"need 0 < c_min <= c_max, got c_min={c_min!r}, c_max={c_max!r}")
    tokens = _tokens(hidden, token_probs, advantages, mask, proxy)
    margin_pos, margin_neg = _margins(tokens, centroids, opposite_weight)
    coef_pos = c_min + (c_max - c_min) * jax.nn.sigmoid(margin_pos / temperatures.gamma_pos)
    coef_neg = c_min + (c_max - c_min) * jax.nn.sigmoid(margin_neg / temperatures.gamma_neg)
    zero_coef = c_min if zero_adv_coef is None else zero_adv_coef
    coeffs = jnp.where(tokens.pos, coef_pos,
                       jnp.where(tokens.neg, coef_neg, jnp.where(tokens.zero, zero_coef, 0.0)))
    return jax.lax.stop_gradient(coeffs)


def delta_normalize_coefficients(coeffs: jax.Array, mask: jax.Array, *,
                                 coeff_sum: jax.typing.ArrayLike | None = None,
                                 token_count: jax.typing.ArrayLike | None = None,
                                 eps: float = 1e-8) -> jax.Array:
    """Self-normalises coefficients to mean 1 over the valid tokens of the whole batch.

    arXiv 2605.21467; delta.md DELTA-8: c~ = c * sum(mask) / max(sum(c), eps). With
    micro-batches pass the batch totals `coeff_sum` and `token_count`.

    Args:
        coeffs: [B, T] raw coefficients (0 on padding).
        mask: [B, T] valid tokens.
        coeff_sum: sum of the raw coefficients over the whole batch; None: this array's sum.
        token_count: number of valid tokens of the whole batch; None: this mask's count.
        eps: floor of the coefficient total.

    Returns:
        [B, T] float32 normalised coefficients (stop-gradient).
    """
    check_rank("coeffs", coeffs, 2)
    check_shape("mask", mask, coeffs.shape)
    coeffs = jax.lax.stop_gradient(jnp.asarray(coeffs, jnp.float32))
    if coeff_sum is None:
        coeff_sum = jnp.sum(coeffs)
    if token_count is None:
        token_count = jnp.sum(jnp.asarray(mask, bool), dtype=jnp.float32)
    scale = jnp.asarray(token_count, jnp.float32) / jnp.maximum(
        jnp.asarray(coeff_sum, jnp.float32), eps)
    return jax.lax.stop_gradient(coeffs * scale)


def _check_options(c_min: float, c_max: float, n_refine: int, metric: str) -> None:
    if not 0.0 < c_min <= c_max:
        raise ValueError(f"need 0 < c_min <= c_max, got c_min={c_min!r}, c_max={c_max!r}")
    if not isinstance(n_refine, int) or n_refine < 0:
        raise ValueError(f"n_refine must be an int >= 0, got {n_refine!r}")
    check_choice("metric", metric, METRICS)


def _single_pass_coefficients(hidden: jax.Array, token_probs: jax.Array, advantages: jax.Array,
                              mask: jax.Array, *, c_min: float, c_max: float, n_refine: int,
                              zero_adv_coef: float | None, metric: str, proxy: str,
                              opposite_weight: float, normalize: bool, eps: float) -> jax.Array:
    """DELTA-3..8 over one batch held in memory (the loop of the module docstring, one chunk)."""
    inputs = (hidden, token_probs, advantages, mask)
    side = dict(proxy=proxy, opposite_weight=opposite_weight)
    centroids = delta_centroids_from_sums(delta_centroid_sums(*inputs, **side), metric=metric,
                                          eps=eps)
    temperatures = delta_temperatures_from_sums(
        delta_margin_sums(*inputs, centroids, **side), eps=eps)
    for _ in range(n_refine):
        refined = delta_centroids_from_sums(
            delta_centroid_sums(*inputs, centroids=centroids, temperatures=temperatures, **side),
            metric_weights=centroids.metric_weights, eps=eps)
        temperatures = delta_temperatures_from_sums(
            delta_margin_sums(*inputs, centroids, **side), eps=eps)
        centroids = refined
    coeffs = delta_coefficients_from_centroids(
        *inputs, centroids, temperatures, c_min=c_min, c_max=c_max,
        zero_adv_coef=zero_adv_coef, **side)
    return delta_normalize_coefficients(coeffs, mask, eps=eps) if normalize else coeffs


def delta_coefficients(hidden: jax.Array, token_probs: jax.Array, advantages: jax.Array,
                       mask: jax.Array, *, c_min: float = 0.8, c_max: float = 1.2,
                       n_refine: int = 1, zero_adv_coef: float | None = None,
                       metric: str = "euclidean", proxy: str = "one_minus_p_h",
                       opposite_weight: float = 1.0, normalize: bool = True,
                       n_stat_shards: int = 1, eps: float = 1e-8) -> jax.Array:
    """DelTA token coefficients c~ for a whole rollout batch in one pass.

    arXiv 2605.21467; delta.md DELTA-2..8 (official-code algorithm): proxy v = (1 - p) h,
    advantage-weighted side centroids, own-side margins with per-side std temperatures,
    `n_refine` soft refinements (the temperature lags one iteration), coefficients in
    [c_min, c_max], self-normalised to mean 1 over all valid tokens (zero-advantage tokens
    included). Use as `A_tok = A[:, None] * c~ * mask` in the DAPO loss (clip 0.2 / 0.28, dual
    clip 10, token-mean). Differs from the paper: float32 statistics (official: bf16); the whole
    batch is one statistics scope by default (official: one per data-parallel shard, reproduced
    with `n_stat_shards=2`). For batches that do not fit one pass see the module docstring and
    `delta_coefficients_streamed`.

    Args:
        hidden: [B, T, H] LM-head inputs of the pre-update policy (stop-gradient).
        token_probs: [B, T] p = exp(logp_old) of each token (tau = 1).
        advantages: [B] sequence advantages (stop-gradient).
        mask: [B, T] valid response tokens.
        c_min, c_max: coefficient range (0.8, 1.2).
        n_refine: number of soft refinement iterations (1).
        zero_adv_coef: coefficient of zero-advantage tokens (None: c_min).
        metric: "euclidean" (default) or "diag_var".
        proxy: "one_minus_p_h" (default) or "h".
        opposite_weight: multiplies the opposite-side distance in the margins (1.0).
        normalize: self-normalise to mean 1 over valid tokens (True).
        n_stat_shards: number of contiguous prompt-major chunks with separate statistics; must
            divide B.
        eps: floor of weight and coefficient totals and of the margin variance.

    Returns:
        [B, T] float32 coefficients, 0 on padding (stop-gradient).
    """
    _check_options(c_min, c_max, n_refine, metric)
    check_rank("hidden", hidden, 3)
    batch = hidden.shape[0]
    if not isinstance(n_stat_shards, int) or n_stat_shards < 1 or batch % n_stat_shards:
        raise ValueError(f"n_stat_shards must be a positive int dividing B={batch}, got "
                         f"{n_stat_shards!r}")

    def run(h: jax.Array, p: jax.Array, a: jax.Array, m: jax.Array) -> jax.Array:
        return _single_pass_coefficients(
            h, p, a, m, c_min=c_min, c_max=c_max, n_refine=n_refine,
            zero_adv_coef=zero_adv_coef, metric=metric, proxy=proxy,
            opposite_weight=opposite_weight, normalize=normalize, eps=eps)

    if n_stat_shards == 1:
        return run(hidden, token_probs, advantages, mask)
    check_shape("token_probs", token_probs, hidden.shape[:2])
    check_shape("advantages", advantages, hidden.shape[:1])
    check_shape("mask", mask, hidden.shape[:2])
    shards = [jnp.reshape(jnp.asarray(x), (n_stat_shards, -1) + jnp.shape(x)[1:])
              for x in (hidden, token_probs, advantages, mask)]
    return jax.vmap(run)(*shards).reshape(jnp.shape(mask))



def delta_coefficients_streamed(load_micro_batch: Callable[[int], MicroBatch],
                                num_micro_batches: int, *, c_min: float = 0.8,
                                c_max: float = 1.2, n_refine: int = 1,
                                zero_adv_coef: float | None = None, metric: str = "euclidean",
                                proxy: str = "one_minus_p_h", opposite_weight: float = 1.0,
                                normalize: bool = True, eps: float = 1e-8
                                ) -> list[jax.Array]:
    """DelTA coefficients of a batch too large for one pass, accumulated over micro-batches.

    arXiv 2605.21467; delta.md section 3, "Batches too large for one pass". Runs the five-step
    loop of the module docstring in 3 + n_refine passes (a refinement pass computes the soft
    centroid sums and the margin sums from one load), each calling `load_micro_batch(i)` for
    every i, so the caller may recompute the hidden states instead of keeping them. Equals
    `delta_coefficients` on the concatenated batch up to float32 summation order.

    Args:
        load_micro_batch: i -> (hidden [b, T, H], token_probs [b, T], advantages [b],
            mask [b, T]) of micro-batch i; must return the same data on every call.
        num_micro_batches: number of micro-batches (>= 1).
        c_min, c_max, n_refine, zero_adv_coef, metric, proxy, opposite_weight, normalize, eps:
            as in `delta_coefficients`.

    Returns:
        list of [b, T] float32 coefficients, one per micro-batch.
    """
    _check_options(c_min, c_max, n_refine, metric)
    if not isinstance(num_micro_batches, int) or num_micro_batches < 1:
        raise ValueError(f"num_micro_batches must be an int >= 1, got {num_micro_batches!r}")
    side = dict(proxy=proxy, opposite_weight=opposite_weight)

    def accumulate(pass_fn: Callable[[MicroBatch], tuple]) -> tuple:
        total = pass_fn(load_micro_batch(0))
        for i in range(1, num_micro_batches):
            total = jax.tree.map(jnp.add, total, pass_fn(load_micro_batch(i)))
        return total

    centroids = delta_centroids_from_sums(
        accumulate(lambda mb: delta_centroid_sums(*mb, **side)), metric=metric, eps=eps)
    temperatures = delta_temperatures_from_sums(
        accumulate(lambda mb: delta_margin_sums(*mb, centroids, **side)), eps=eps)
    for _ in range(n_refine):
        current, current_temperatures = centroids, temperatures

        def refine_pass(mb: MicroBatch) -> tuple[DeltaCentroidSums, DeltaMarginSums]:
            return (delta_centroid_sums(*mb, centroids=current,
                                        temperatures=current_temperatures, **side),
                    delta_margin_sums(*mb, current, **side))

        centroid_sums, margin_sums = accumulate(refine_pass)
        centroids = delta_centroids_from_sums(
            centroid_sums, metric_weights=current.metric_weights, eps=eps)
        temperatures = delta_temperatures_from_sums(margin_sums, eps=eps)
    raw, masks = [], []
    for i in range(num_micro_batches):
        mb = load_micro_batch(i)
        raw.append(delta_coefficients_from_centroids(
            *mb, centroids, temperatures, c_min=c_min, c_max=c_max, zero_adv_coef=zero_adv_coef,
            **side))
        masks.append(mb[3])
    if not normalize:
        return raw
    coeff_sum = sum(jnp.sum(c) for c in raw)
    token_count = sum(jnp.sum(jnp.asarray(m, bool), dtype=jnp.float32) for m in masks)
    return [delta_normalize_coefficients(c, m, coeff_sum=coeff_sum, token_count=token_count,
                                         eps=eps) for c, m in zip(raw, masks)]
