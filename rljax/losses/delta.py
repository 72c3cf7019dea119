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
The sums and their reductions live in `rljax.losses.delta_stats`.
"""

from collections.abc import Callable

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_rank, check_shape
from rljax.losses.delta_stats import (
    METRICS,
    DeltaCentroids,
    DeltaCentroidSums,
    DeltaMarginSums,
    DeltaTemperatures,
    delta_centroid_sums,
    delta_centroids_from_sums,
    delta_margin_sums,
    delta_margins,
    delta_temperatures_from_sums,
    delta_tokens,
)

# (hidden [b, T, H], token_probs [b, T], advantages [b], mask [b, T]) of one micro-batch.
MicroBatch = tuple[jax.Array, jax.Array, jax.Array, jax.Array]


def delta_coefficients_from_centroids(
    hidden: jax.Array,
    token_probs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    centroids: DeltaCentroids,
    temperatures: DeltaTemperatures,
    *,
    c_min: float = 0.8,
    c_max: float = 1.2,
    zero_adv_coef: float | None = None,
    proxy: str = "one_minus_p_h",
    opposite_weight: float = 1.0,
) -> jax.Array:
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
    _check_range(c_min, c_max)
    tokens = delta_tokens(hidden, token_probs, advantages, mask, proxy)
    margin_pos, margin_neg = delta_margins(tokens, centroids, opposite_weight)
    coef_pos = c_min + (c_max - c_min) * jax.nn.sigmoid(margin_pos / temperatures.gamma_pos)
    coef_neg = c_min + (c_max - c_min) * jax.nn.sigmoid(margin_neg / temperatures.gamma_neg)
    zero_coef = c_min if zero_adv_coef is None else zero_adv_coef
    coeffs = jnp.where(
        tokens.pos,
        coef_pos,
        jnp.where(tokens.neg, coef_neg, jnp.where(tokens.zero, zero_coef, 0.0)),
    )
    return jax.lax.stop_gradient(coeffs)


def delta_normalize_coefficients(
    coeffs: jax.Array,
    mask: jax.Array,
    *,
    coeff_sum: jax.typing.ArrayLike | None = None,
    token_count: jax.typing.ArrayLike | None = None,
    eps: float = 1e-8,
) -> jax.Array:
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
        jnp.asarray(coeff_sum, jnp.float32), eps
    )
    return jax.lax.stop_gradient(coeffs * scale)


def _check_range(c_min: float, c_max: float) -> None:
    if not 0.0 < c_min <= c_max:
        raise ValueError(f"need 0 < c_min <= c_max, got c_min={c_min!r}, c_max={c_max!r}")


def _check_options(c_min: float, c_max: float, n_refine: int, metric: str) -> None:
    _check_range(c_min, c_max)
    if not isinstance(n_refine, int) or n_refine < 0:
        raise ValueError(f"n_refine must be an int >= 0, got {n_refine!r}")
    check_choice("metric", metric, METRICS)


def _single_pass_coefficients(
    hidden: jax.Array,
    token_probs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    c_min: float,
    c_max: float,
    n_refine: int,
    zero_adv_coef: float | None,
    metric: str,
    proxy: str,
    opposite_weight: float,
    normalize: bool,
    eps: float,
) -> jax.Array:
    """DELTA-3..8 over one batch held in memory (the loop of the module docstring, one chunk)."""
    inputs = (hidden, token_probs, advantages, mask)
    side = dict(proxy=proxy, opposite_weight=opposite_weight)
    centroids = delta_centroids_from_sums(
        delta_centroid_sums(*inputs, **side), metric=metric, eps=eps
    )
    temperatures = delta_temperatures_from_sums(
        delta_margin_sums(*inputs, centroids, **side), eps=eps
    )
    for _ in range(n_refine):
        refined = delta_centroids_from_sums(
            delta_centroid_sums(*inputs, centroids=centroids, temperatures=temperatures, **side),
            metric_weights=centroids.metric_weights,
            eps=eps,
        )
        temperatures = delta_temperatures_from_sums(
            delta_margin_sums(*inputs, centroids, **side), eps=eps
        )
        centroids = refined
    coeffs = delta_coefficients_from_centroids(
        *inputs,
        centroids,
        temperatures,
        c_min=c_min,
        c_max=c_max,
        zero_adv_coef=zero_adv_coef,
        **side,
    )
    return delta_normalize_coefficients(coeffs, mask, eps=eps) if normalize else coeffs


def delta_coefficients(
    hidden: jax.Array,
    token_probs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    c_min: float = 0.8,
    c_max: float = 1.2,
    n_refine: int = 1,
    zero_adv_coef: float | None = None,
    metric: str = "euclidean",
    proxy: str = "one_minus_p_h",
    opposite_weight: float = 1.0,
    normalize: bool = True,
    n_stat_shards: int = 1,
    eps: float = 1e-8,
) -> jax.Array:
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
        raise ValueError(
            f"n_stat_shards must be a positive int dividing B={batch}, got {n_stat_shards!r}"
        )

    def run(h: jax.Array, p: jax.Array, a: jax.Array, m: jax.Array) -> jax.Array:
        return _single_pass_coefficients(
            h,
            p,
            a,
            m,
            c_min=c_min,
            c_max=c_max,
            n_refine=n_refine,
            zero_adv_coef=zero_adv_coef,
            metric=metric,
            proxy=proxy,
            opposite_weight=opposite_weight,
            normalize=normalize,
            eps=eps,
        )

    if n_stat_shards == 1:
        return run(hidden, token_probs, advantages, mask)
    check_shape("token_probs", token_probs, hidden.shape[:2])
    check_shape("advantages", advantages, hidden.shape[:1])
    check_shape("mask", mask, hidden.shape[:2])
    shards = [
        jnp.reshape(jnp.asarray(x), (n_stat_shards, -1) + jnp.shape(x)[1:])
        for x in (hidden, token_probs, advantages, mask)
    ]
    return jax.vmap(run)(*shards).reshape(jnp.shape(mask))


def delta_coefficients_streamed(
    load_micro_batch: Callable[[int], MicroBatch],
    num_micro_batches: int,
    *,
    c_min: float = 0.8,
    c_max: float = 1.2,
    n_refine: int = 1,
    zero_adv_coef: float | None = None,
    metric: str = "euclidean",
    proxy: str = "one_minus_p_h",
    opposite_weight: float = 1.0,
    normalize: bool = True,
    eps: float = 1e-8,
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
        accumulate(lambda mb: delta_centroid_sums(*mb, **side)), metric=metric, eps=eps
    )
    temperatures = delta_temperatures_from_sums(
        accumulate(lambda mb: delta_margin_sums(*mb, centroids, **side)), eps=eps
    )
    for _ in range(n_refine):
        current, current_temperatures = centroids, temperatures

        def refine_pass(mb: MicroBatch) -> tuple[DeltaCentroidSums, DeltaMarginSums]:
            return (
                delta_centroid_sums(
                    *mb, centroids=current, temperatures=current_temperatures, **side
                ),
                delta_margin_sums(*mb, current, **side),
            )

        centroid_sums, margin_sums = accumulate(refine_pass)
        centroids = delta_centroids_from_sums(
            centroid_sums, metric_weights=current.metric_weights, eps=eps
        )
        temperatures = delta_temperatures_from_sums(margin_sums, eps=eps)
    raw, masks = [], []
    for i in range(num_micro_batches):
        mb = load_micro_batch(i)
        raw.append(
            delta_coefficients_from_centroids(
                *mb,
                centroids,
                temperatures,
                c_min=c_min,
                c_max=c_max,
                zero_adv_coef=zero_adv_coef,
                **side,
            )
        )
        masks.append(mb[3])
    if not normalize:
        return raw
    coeff_sum = sum(jnp.sum(c) for c in raw)
    token_count = sum(jnp.sum(jnp.asarray(m, bool), dtype=jnp.float32) for m in masks)
    return [
        delta_normalize_coefficients(c, m, coeff_sum=coeff_sum, token_count=token_count, eps=eps)
        for c, m in zip(raw, masks)
    ]
