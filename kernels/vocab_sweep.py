"""The vocabulary sweep shared by the blockwise implementations, and the interface they fill in.

An `Engine` supplies three tile-level passes (forward statistics, the JSD halves, and the logit
cotangents of one vocabulary chunk); `xla_chunked` builds them from `lax` loops, `pallas` from
kernels. `vocab_gradients` is the backward pass of both: one loop over vocabulary chunks that
recomputes the logits of the chunk (never the whole [N, V]), turns them into cotangents and
contracts them with the unembedding and the hidden states, as flash attention recomputes its
attention blocks.
"""

from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
from jax import lax
from rljax.kernels.tile_math import RowCotangent


class GradSide(NamedTuple):
    """One family of rows (student or teacher) in the backward sweep.

    Attributes:
        rows: [N, H] hidden states.
        targets: [N] int32 target ids (global vocabulary indices).
        lse: [N] float32 log-sum-exp of the rows' logits.
        cotangent: per-row constants, or None when the side is swept only to form the JSD
            mixture and receives no gradient.
    """

    rows: jax.Array
    targets: jax.Array
    lse: jax.Array
    cotangent: RowCotangent | None


# (sides, w_chunk [H, C], chunk_start int32 scalar) -> one [N, C] cotangent (or None) per side,
# already multiplied by 1 / temperature.
LogitCotangentFn = Callable[[Sequence[GradSide], jax.Array, jax.Array], list[jax.Array | None]]


class Engine(NamedTuple):
    """The tile passes of one implementation, with temperature and tile sizes bound.

    Attributes:
        row_multiple: the engine needs N to be a multiple of this (rows are zero-padded).
        chunk_v: vocabulary columns per step of `vocab_gradients`.
        softmax_stats: (rows [R, H], w [H, V]) -> (lse [R], entropy [R]).
        kl_to_mixture: (hidden, teacher_hidden, w, lse_s, lse_t) -> (KL(p||M) [N], KL(q||M) [N]).
        logit_cotangents: see LogitCotangentFn.
    """

    row_multiple: int
    chunk_v: int
    softmax_stats: Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
    kl_to_mixture: Callable[..., tuple[jax.Array, jax.Array]]
    logit_cotangents: LogitCotangentFn


def vocab_gradients(
    sides: Sequence[GradSide], w: jax.Array, engine: Engine
) -> tuple[list[jax.Array | None], jax.Array]:
    """Gradients of sum_n (cotangent-weighted statistics) w.r.t. the rows and the unembedding.

    One pass over vocabulary chunks of width engine.chunk_v (a static tail handles V not divisible
    by it): dz = cotangent of the chunk's logits, d_rows += dz @ w_chunk^T, d_w[:, chunk] =
    sum_sides rows^T @ dz. dz is cast to w's dtype for the two matmuls (bf16 tensor-core inputs
    for bf16 models), which accumulate in float32.

    Args:
        sides: one or two GradSide (student first); all rows have the same shape [N, H].
        w: [H, V] unembedding.
        engine: the implementation's tile passes.

    Returns:
        (d_rows, d_w): per side a float32 [N, H] gradient (None for a side without cotangent),
        and d_w [H, V] in w's dtype.
    """
    chex.assert_rank(w, 2)
    chex.assert_equal_shape([side.rows for side in sides])
    hidden_size, vocab = w.shape
    num_rows = sides[0].rows.shape[0]
    chunk_v = engine.chunk_v
    num_full, tail = divmod(vocab, chunk_v)
    grad_sides = [side.cotangent is not None for side in sides]

    def chunk_grads(
        w_chunk: jax.Array, start: jax.Array
    ) -> tuple[list[jax.Array | None], jax.Array]:
        cotangents = engine.logit_cotangents(sides, w_chunk, start)
        d_rows, d_w_chunk = [], jnp.zeros((hidden_size, w_chunk.shape[1]), jnp.float32)
        for side, dz in zip(sides, cotangents):
            if dz is None:
                d_rows.append(None)
                continue
            dz = dz.astype(w.dtype)
            d_rows.append(
                lax.dot_general(
                    dz, w_chunk, (((1,), (1,)), ((), ())), preferred_element_type=jnp.float32
                )
            )
            d_w_chunk += lax.dot_general(
                side.rows, dz, (((0,), (0,)), ((), ())), preferred_element_type=jnp.float32
            )
        return d_rows, d_w_chunk.astype(w.dtype)

    def accumulate(carry, start, w_chunk):
        d_rows, d_w = carry
        chunk_d_rows, d_w_chunk = chunk_grads(w_chunk, start)
        d_rows = [acc if acc is None else acc + new for acc, new in zip(d_rows, chunk_d_rows)]
        return d_rows, lax.dynamic_update_slice_in_dim(d_w, d_w_chunk, start, axis=1)

    def body(index, carry):
        start = index * chunk_v
        return accumulate(carry, start, lax.dynamic_slice_in_dim(w, start, chunk_v, axis=1))

    carry = (
        [jnp.zeros((num_rows, hidden_size), jnp.float32) if g else None for g in grad_sides],
        jnp.zeros_like(w),
    )
    if num_full:
        carry = lax.fori_loop(0, num_full, body, carry)
    if tail:
        start = num_full * chunk_v
        carry = accumulate(carry, jnp.int32(start), w[:, start:])
    return carry
