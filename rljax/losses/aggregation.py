"""Loss aggregation over tokens and sequences (methods/grpo.md, GRPO-7).

Every mode is a ratio numerator / denominator. `aggregate_sums` returns the two parts so that
gradient accumulation and data-parallel means stay exact: sum the parts over micro-batches (or
`psum` them over devices) and divide once. `aggregate` divides, optionally by a caller-supplied
global denominator (the mini-batch total) instead of the local one.

Padding is excluded with `jnp.where`, so garbage (even inf or NaN) at masked positions never
reaches the result or its gradient.
"""

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_positive, check_rank, check_shape

MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def aggregate_sums(
    values: jax.Array, mask: jax.Array, *, mode: str = "token-mean", max_len: int | None = None
) -> tuple[jax.Array, jax.Array]:
    """Numerator and local denominator of a loss aggregation mode.

    grpo.md GRPO-7, with n_b = sum_t mask[b, t] and B_v = #{b : n_b > 0}:
        token-mean               : sum_{b,t} mask*l           / max(sum_{b,t} mask, 1)
        seq-mean-token-mean      : sum_{b: n_b>0} (sum_t mask*l) / n_b   / max(B_v, 1)
        seq-mean-token-sum       : sum_{b,t} mask*l           / max(B_v, 1)
        seq-mean-token-sum-norm  : sum_{b,t} mask*l / L_norm  / B        (Dr.GRPO, arXiv 2503.20783)
    Sequences without valid tokens are left out of B_v [verl]; seq-mean-token-sum-norm keeps the
    constant B * L_norm by design. The clamps `max(., 1)` are applied by `aggregate` after any
    accumulation, so the denominator returned here is the raw count.

    Args:
        values: [B, T] per-token values (e.g. per-token losses).
        mask: [B, T] 1 on tokens that count, 0 elsewhere (bool or float).
        mode: one of MODES.
        max_len: L_norm for seq-mean-token-sum-norm; None means T.

    Returns:
        (numerator, denominator), two float32 scalars.
    """
    check_rank("values", values, 2)
    check_shape("mask", mask, values.shape)
    check_choice("mode", mode, MODES)
    if max_len is not None:
        check_positive("max_len", max_len)
    valid = jnp.asarray(mask, bool)
    values = jnp.where(valid, jnp.asarray(values, jnp.float32), 0.0)
    row_sums = jnp.sum(values, axis=1)  # [B]
    row_counts = jnp.sum(valid, axis=1, dtype=jnp.float32)  # [B]
    num_valid_rows = jnp.sum(row_counts > 0, dtype=jnp.float32)
    if mode == "token-mean":
        return jnp.sum(row_sums), jnp.sum(row_counts)
    if mode == "seq-mean-token-mean":
        return jnp.sum(row_sums / jnp.maximum(row_counts, 1.0)), num_valid_rows
    if mode == "seq-mean-token-sum":
        return jnp.sum(row_sums), num_valid_rows
    norm = values.shape[1] if max_len is None else max_len
    return jnp.sum(row_sums) / norm, jnp.asarray(values.shape[0], jnp.float32)


def aggregate(
    values: jax.Array,
    mask: jax.Array,
    *,
    mode: str = "token-mean",
    max_len: int | None = None,
    denominator: jax.typing.ArrayLike | None = None,
) -> jax.Array:
    """Reduces per-token values to a scalar loss with one of the GRPO-family modes.

    grpo.md GRPO-7; see `aggregate_sums` for the formulas. With gradient accumulation pass the
    mini-batch total as `denominator` (token count for token-mean, number of sequences with a
    valid token for the seq-mean modes, number of sequences B for seq-mean-token-sum-norm), or
    accumulate `aggregate_sums` yourself; never divide by per-micro-batch counts.

    Args:
        values: [B, T] per-token values.
        mask: [B, T] 1 on tokens that count.
        mode: "token-mean" (DAPO), "seq-mean-token-mean" (GRPO paper), "seq-mean-token-sum",
            or "seq-mean-token-sum-norm" (Dr.GRPO).
        max_len: L_norm for seq-mean-token-sum-norm; None means the arrays' T.
        denominator: optional global denominator replacing the local one; clamped to >= 1.

    Returns:
        float32 scalar.
    """
    numerator, local_denominator = aggregate_sums(values, mask, mode=mode, max_len=max_len)
    if denominator is None:
        denominator = local_denominator
    else:
        check_rank("denominator", denominator, 0)
    return numerator / jnp.maximum(jnp.asarray(denominator, jnp.float32), 1.0)
