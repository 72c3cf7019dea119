"""The `xla_chunked` implementation: `lax.fori_loop` sweeps over vocabulary chunks, any backend.

Each step holds one [N, chunk_v] float32 logit block; the running row statistics are merged with
the online log-sum-exp of `tile_math`. V need not be a multiple of chunk_v: the last, narrower
chunk is a static slice after the loop, so no column is padded or masked.
"""

from collections.abc import Callable, Sequence

import chex
import jax
import jax.numpy as jnp
from jax import lax
from rljax.kernels import tile_math
from rljax.kernels.vocab_sweep import Engine, GradSide


def _logits(rows: jax.Array, w_chunk: jax.Array, inv_temperature: float) -> jax.Array:
    return jnp.dot(rows, w_chunk, preferred_element_type=jnp.float32) * inv_temperature


def _fold_chunks(w: jax.Array, chunk_v: int, init, step: Callable):
    """Folds step(carry, w_chunk) over the column chunks of w (full chunks in a loop, then tail)."""
    num_full, tail = divmod(w.shape[1], chunk_v)

    def body(index, carry):
        return step(carry, lax.dynamic_slice_in_dim(w, index * chunk_v, chunk_v, axis=1))

    carry = lax.fori_loop(0, num_full, body, init) if num_full else init
    if tail:
        carry = step(carry, w[:, num_full * chunk_v :])
    return carry


def softmax_stats(
    rows: jax.Array, w: jax.Array, *, inv_temperature: float, chunk_v: int
) -> tuple[jax.Array, jax.Array]:
    """Log-sum-exp and entropy of softmax(rows @ w / tau) in one sweep over vocabulary chunks.

    Args:
        rows: [R, H] hidden states.
        w: [H, V] unembedding.
        inv_temperature: 1 / tau.
        chunk_v: vocabulary columns per step.

    Returns:
        (lse [R], entropy [R]) float32.
    """
    chex.assert_rank([rows, w], 2)
    column = (rows.shape[0], 1)
    init = (
        jnp.full(column, tile_math.MASK_VALUE, jnp.float32),
        jnp.zeros(column, jnp.float32),
        jnp.zeros(column, jnp.float32),
    )

    def step(carry, w_chunk):
        chunk = tile_math.softmax_stats(_logits(rows, w_chunk, inv_temperature), None)
        stacked = [jnp.stack([old, new]) for old, new in zip(carry, chunk)]
        return tile_math.merge_softmax_stats(*stacked)

    lse, entropy = tile_math.lse_and_entropy(*_fold_chunks(w, chunk_v, init, step))
    return lse[:, 0], entropy[:, 0]


def kl_to_mixture(
    hidden: jax.Array,
    teacher_hidden: jax.Array,
    w: jax.Array,
    lse_s: jax.Array,
    lse_t: jax.Array,
    *,
    inv_temperature: float,
    chunk_v: int,
) -> tuple[jax.Array, jax.Array]:
    """KL(p || M) and KL(q || M) per row, p and q the student and teacher softmaxes, M = (p+q)/2.

    Args:
        hidden, teacher_hidden: [N, H].
        w: [H, V].
        lse_s, lse_t: [N] log-sum-exps from `softmax_stats`.
        inv_temperature: 1 / tau.
        chunk_v: vocabulary columns per step.

    Returns:
        Two [N] float32 arrays; JSD = their mean.
    """
    chex.assert_rank([hidden, teacher_hidden, w, lse_s, lse_t], [2, 2, 2, 1, 1])
    chex.assert_equal_shape([hidden, teacher_hidden])
    zeros = jnp.zeros((hidden.shape[0], 1), jnp.float32)

    def step(carry, w_chunk):
        parts = tile_math.kl_to_mixture(
            _logits(hidden, w_chunk, inv_temperature),
            _logits(teacher_hidden, w_chunk, inv_temperature),
            lse_s[:, None],
            lse_t[:, None],
            None,
        )
        return carry[0] + parts[0], carry[1] + parts[1]

    kl_s, kl_t = _fold_chunks(w, chunk_v, (zeros, zeros), step)
    return kl_s[:, 0], kl_t[:, 0]


def logit_cotangents(
    sides: Sequence[GradSide], w_chunk: jax.Array, start: jax.Array, *, inv_temperature: float
) -> list[jax.Array | None]:
    """Cotangents of one chunk's logits per side (see `vocab_sweep.LogitCotangentFn`).

    Args:
        sides: one or two GradSide with [N, H] rows (student first when two).
        w_chunk: [H, C] columns start .. start + C of the unembedding.
        start: int32 scalar, the chunk's first vocabulary index.
        inv_temperature: 1 / tau.

    Returns:
        Per side a [N, C] float32 cotangent (already times 1 / tau), or None for a side without
        cotangent.
    """
    logits = [_logits(side.rows, w_chunk, inv_temperature) for side in sides]
    lse = [side.lse[:, None] for side in sides]
    log_m = None
    if any(side.cotangent is not None and side.cotangent.half_g_jsd is not None for side in sides):
        log_m = tile_math.log_mixture(logits[0] - lse[0], logits[1] - lse[1])
    columns = start + lax.broadcasted_iota(jnp.int32, (1, w_chunk.shape[1]), 1)
    out = []
    for side, z, side_lse in zip(sides, logits, lse):
        if side.cotangent is None:
            out.append(None)
            continue
        row = jax.tree.map(lambda x: x[:, None], side.cotangent)
        is_target = columns == side.targets[:, None]
        dz = tile_math.logit_cotangent(z, side_lse, row, is_target, None, log_m)
        out.append(dz * inv_temperature)
    return out


def make_engine(*, inv_temperature: float, chunk_v: int) -> Engine:
    """The `xla_chunked` Engine with temperature and chunk width bound.

    Args:
        inv_temperature: 1 / tau.
        chunk_v: vocabulary columns per loop step.

    Returns:
        An Engine whose passes are lax loops over vocabulary chunks.
    """
    return Engine(
        row_multiple=1,
        chunk_v=chunk_v,
        softmax_stats=lambda rows, w: softmax_stats(
            rows, w, inv_temperature=inv_temperature, chunk_v=chunk_v
        ),
        kl_to_mixture=lambda *args: kl_to_mixture(
            *args, inv_temperature=inv_temperature, chunk_v=chunk_v
        ),
        logit_cotangents=lambda sides, w_chunk, start: logit_cotangents(
            sides, w_chunk, start, inv_temperature=inv_temperature
        ),
    )
