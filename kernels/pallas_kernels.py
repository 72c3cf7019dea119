"""The `pallas` implementation: one kernel source for Triton (GPU), Mosaic (TPU) and interpret mode.

Every kernel owns one [block_n, block_v] tile of logits z = h @ w / tau, computed in float32 from
`block_h`-wide slices of the hidden dimension, so no program depends on another and the grid is
fully parallel on every backend (no atomics, no sequential grid axis):
  * `softmax_stats`: per-tile (m, s, u) written as [V / block_v, N, 1] partials, merged by XLA with
    the same online log-sum-exp (`tile_math.merge_softmax_stats`); 3 floats per 128-wide tile
    instead of 128 logits.
  * `kl_to_mixture`: per-tile partial sums of KL(p || M) and KL(q || M), summed by XLA.
  * `logit_cotangents`: the backward tile, d objective / d z for one vocabulary chunk, which
    `vocab_sweep.vocab_gradients` contracts with w and h (cuBLAS / MXU matmuls).
The last vocabulary tile is ragged: its out-of-range columns are masked inside the kernel (Mosaic
and interpret mode pad edge blocks themselves; Triton does not, so on GPU the unembedding loads
and the cotangent stores are masked Triton loads/stores). Rows are zero-padded by the caller to
a multiple of block_n. Row vectors are [N, 1] columns (the (8, 128)-tiled layout Mosaic needs;
Triton takes the same blocks).
"""

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
from jax import lax
from jax.experimental import pallas as pl
from jax.experimental.pallas import tpu as pltpu
from jax.experimental.pallas import triton as pltriton
from rljax.kernels import tile_math
from rljax.kernels.types import BlockSizes
from rljax.kernels.vocab_sweep import Engine, GradSide

# Column layout of the per-side constants handed to the backward kernel ([N, 8] float32; 8
# columns so the block is a power of two for Triton and spans the array's last dim for Mosaic).
_LSE, _ENTROPY, _G_LOGPROB, _G_ENTROPY, _HALF_G_JSD, _KL = range(6)
_NUM_CONSTS = 8


# platform -> (interpret mode, masked Triton loads/stores at the vocabulary edge). "interpret-gpu"
# runs the GPU flavour of the kernels in interpret mode, so CPU tests cover the masked path.
PLATFORMS = {
    "cpu": (True, False),
    "gpu": (False, True),
    "tpu": (False, False),
    "interpret-gpu": (True, True),
}


def _compiler_params(platform: str):
    if platform == "gpu":
        return pltriton.CompilerParams(num_warps=4, num_stages=2)
    if platform == "tpu":
        return pltpu.CompilerParams(dimension_semantics=("parallel", "parallel"))
    return None


def _call(kernel, *, grid, in_specs, out_specs, out_shape, platform: str, name: str):
    return pl.pallas_call(
        kernel,
        grid=grid,
        in_specs=in_specs,
        out_specs=out_specs,
        out_shape=out_shape,
        interpret=PLATFORMS[platform][0],
        compiler_params=_compiler_params(platform),
        name=name,
    )


def _load_columns(ref, valid: jax.Array, masked: bool) -> jax.Array:
    """Loads a [k, block_v] view; with `masked`, columns outside the array read as 0."""
    if masked:
        return pltriton.load(ref, mask=valid, other=0)
    return ref[...]


def _store_columns(ref, value: jax.Array, valid: jax.Array, masked: bool) -> None:
    """Stores a [block_n, block_v] tile; with `masked`, columns outside the array are skipped."""
    if masked:
        pltriton.store(ref, value, mask=valid)
    else:
        ref[...] = value


def _tile_logits(
    h_ref, w_ref, valid: jax.Array, *, block_h: int, inv_temperature: float, masked: bool
) -> jax.Array:
    """[block_n, block_v] float32 logits of one tile, accumulated over hidden chunks of block_h
    (a divisor of H); `valid` [1, block_v] marks the columns inside the vocabulary."""
    rows, hidden = h_ref.shape
    if block_h == hidden:
        acc = jnp.dot(
            h_ref[...], _load_columns(w_ref, valid, masked), preferred_element_type=jnp.float32
        )
    else:

        def body(k, acc):
            chunk = pl.ds(pl.multiple_of(k * block_h, block_h), block_h)
            return acc + jnp.dot(
                h_ref[:, chunk],
                _load_columns(w_ref.at[chunk, :], valid, masked),
                preferred_element_type=jnp.float32,
            )

        acc = lax.fori_loop(
            0, hidden // block_h, body, jnp.zeros((rows, w_ref.shape[1]), jnp.float32)
        )
    return acc * inv_temperature


def _tile_columns(num_columns: int, block_v: int) -> tuple[jax.Array, jax.Array]:
    """([1, block_v] column ids of this tile, [1, block_v] mask of the ids < num_columns)."""
    columns = pl.program_id(1) * block_v + lax.broadcasted_iota(jnp.int32, (1, block_v), 1)
    return columns, columns < num_columns


def _row_spec(block_n: int, width: int) -> pl.BlockSpec:
    return pl.BlockSpec((block_n, width), lambda i, j: (i, 0))


def _column_spec(hidden: int, block_v: int) -> pl.BlockSpec:
    return pl.BlockSpec((hidden, block_v), lambda i, j: (0, j))


def _partial_spec(block_n: int) -> pl.BlockSpec:
    return pl.BlockSpec((None, block_n, 1), lambda i, j: (j, i, 0))


def _load_column(ref, index: int) -> jax.Array:
    """[block_n, 1] column `index` of a [block_n, k] ref."""
    return ref[:, index : index + 1]


def _check_rows(rows: jax.Array, block_sizes: BlockSizes) -> None:
    if rows.shape[0] % block_sizes.block_n:
        raise ValueError(
            f"rows {rows.shape[0]} must be a multiple of block_n "
            f"{block_sizes.block_n} (the caller pads them)"
        )


def softmax_stats(
    rows: jax.Array, w: jax.Array, *, inv_temperature: float, block_sizes: BlockSizes, platform: str
) -> tuple[jax.Array, jax.Array]:
    """Log-sum-exp and entropy per row from a grid of independent logit tiles.

    Args:
        rows: [R, H], R a multiple of block_n.
        w: [H, V].
        inv_temperature: 1 / tau.
        block_sizes: tile sizes.
        platform: a key of PLATFORMS.

    Returns:
        (lse [R], entropy [R]) float32.
    """
    chex.assert_rank([rows, w], 2)
    _check_rows(rows, block_sizes)
    (num_rows, hidden), vocab = rows.shape, w.shape[1]
    block_n, block_v = block_sizes.block_n, block_sizes.block_v

    def kernel(h_ref, w_ref, m_ref, s_ref, u_ref):
        _, valid = _tile_columns(vocab, block_v)
        z = _tile_logits(
            h_ref,
            w_ref,
            valid,
            block_h=block_sizes.hidden_chunk(hidden),
            inv_temperature=inv_temperature,
            masked=PLATFORMS[platform][1],
        )
        m_ref[...], s_ref[...], u_ref[...] = tile_math.softmax_stats(z, valid)

    grid = (num_rows // block_n, pl.cdiv(vocab, block_v))
    partial = jax.ShapeDtypeStruct((grid[1], num_rows, 1), jnp.float32)
    m, s, u = _call(
        kernel,
        grid=grid,
        in_specs=[_row_spec(block_n, hidden), _column_spec(hidden, block_v)],
        out_specs=[_partial_spec(block_n)] * 3,
        out_shape=[partial] * 3,
        platform=platform,
        name="token_stats_softmax",
    )(rows, w)
    lse, entropy = tile_math.lse_and_entropy(*tile_math.merge_softmax_stats(m, s, u))
    return lse[:, 0], entropy[:, 0]


def kl_to_mixture(
    hidden: jax.Array,
    teacher_hidden: jax.Array,
    w: jax.Array,
    lse_s: jax.Array,
    lse_t: jax.Array,
    *,
    inv_temperature: float,
    block_sizes: BlockSizes,
    platform: str,
) -> tuple[jax.Array, jax.Array]:
    """KL(p || M) and KL(q || M) per row from a grid of independent tile pairs.

    Args:
        hidden, teacher_hidden: [R, H], R a multiple of block_n.
        w: [H, V].
        lse_s, lse_t: [R] full-row log-sum-exps.
        inv_temperature: 1 / tau.
        block_sizes: tile sizes.
        platform: a key of PLATFORMS.

    Returns:
        Two [R] float32 arrays.
    """
    chex.assert_rank([hidden, teacher_hidden, w, lse_s, lse_t], [2, 2, 2, 1, 1])
    chex.assert_equal_shape([hidden, teacher_hidden])
    _check_rows(hidden, block_sizes)
    (num_rows, hidden_size), vocab = hidden.shape, w.shape[1]
    block_n, block_v = block_sizes.block_n, block_sizes.block_v
    logits = dict(
        block_h=block_sizes.hidden_chunk(hidden_size),
        inv_temperature=inv_temperature,
        masked=PLATFORMS[platform][1],
    )

    def kernel(h_ref, t_ref, w_ref, lse_s_ref, lse_t_ref, kl_s_ref, kl_t_ref):
        _, valid = _tile_columns(vocab, block_v)
        kl_s_ref[...], kl_t_ref[...] = tile_math.kl_to_mixture(
            _tile_logits(h_ref, w_ref, valid, **logits),
            _tile_logits(t_ref, w_ref, valid, **logits),
            lse_s_ref[...],
            lse_t_ref[...],
            valid,
        )

    grid = (num_rows // block_n, pl.cdiv(vocab, block_v))
    partial = jax.ShapeDtypeStruct((grid[1], num_rows, 1), jnp.float32)
    row, lse = _row_spec(block_n, hidden_size), _row_spec(block_n, 1)
    kl_s, kl_t = _call(
        kernel,
        grid=grid,
        in_specs=[row, row, _column_spec(hidden_size, block_v), lse, lse],
        out_specs=[_partial_spec(block_n)] * 2,
        out_shape=[partial] * 2,
        platform=platform,
        name="token_stats_jsd",
    )(hidden, teacher_hidden, w, lse_s[:, None], lse_t[:, None])
    return jnp.sum(kl_s, axis=0)[:, 0], jnp.sum(kl_t, axis=0)[:, 0]


def _side_constants(side: GradSide) -> jax.Array:
    """[R, 8] float32 columns: lse, entropy, g_logprob, g_entropy, half_g_jsd, kl, 0, 0."""
    zeros = jnp.zeros_like(side.lse)
    values = [side.lse]
    if side.cotangent is not None:
        c = side.cotangent
        values += [
            zeros if x is None else x
            for x in (c.entropy, c.g_logprob, c.g_entropy, c.half_g_jsd, c.kl_to_mixture)
        ]
    values += [zeros] * (_NUM_CONSTS - len(values))
    return jnp.stack(values, axis=1).astype(jnp.float32)


def logit_cotangents(
    sides: Sequence[GradSide],
    w_chunk: jax.Array,
    start: jax.Array,
    *,
    inv_temperature: float,
    block_sizes: BlockSizes,
    platform: str,
) -> list[jax.Array | None]:
    """Cotangents of one chunk's logits per side, from a grid of independent tiles.

    See `vocab_sweep.LogitCotangentFn`; the cotangents are written in w's dtype, the dtype of the
    matmuls that consume them.

    Args:
        sides: one or two GradSide with [R, H] rows, R a multiple of block_n.
        w_chunk: [H, C] columns start .. start + C of the unembedding.
        start: int32 scalar, the chunk's first vocabulary index.
        inv_temperature: 1 / tau.
        block_sizes: tile sizes.
        platform: a key of PLATFORMS.

    Returns:
        Per side a [R, C] cotangent in w_chunk's dtype (times 1 / tau), or None for a side
        without cotangent.
    """
    chex.assert_rank(w_chunk, 2)
    chex.assert_equal_shape([side.rows for side in sides])
    _check_rows(sides[0].rows, block_sizes)
    (num_rows, hidden), num_columns = sides[0].rows.shape, w_chunk.shape[1]
    block_n, block_v = block_sizes.block_n, block_sizes.block_v
    terms = [
        None
        if side.cotangent is None
        else tuple(
            getattr(side.cotangent, f) is not None for f in ("g_logprob", "g_entropy", "half_g_jsd")
        )
        for side in sides
    ]
    with_jsd = any(t is not None and t[2] for t in terms)
    num_sides, grad_sides = len(sides), [i for i, t in enumerate(terms) if t is not None]
    masked = PLATFORMS[platform][1]
    logits = dict(
        block_h=block_sizes.hidden_chunk(hidden), inv_temperature=inv_temperature, masked=masked
    )

    def kernel(*refs):
        row_refs, w_ref = refs[:num_sides], refs[num_sides]
        targets_ref = refs[num_sides + 1]
        const_refs = refs[num_sides + 2 : 2 * num_sides + 2]
        out_refs = refs[2 * num_sides + 2 :]
        columns, valid = _tile_columns(num_columns, block_v)
        z = [_tile_logits(r, w_ref, valid, **logits) for r in row_refs]
        lse = [_load_column(c, _LSE) for c in const_refs]
        log_m = None
        if with_jsd:
            log_m = tile_math.log_mixture(z[0] - lse[0], z[1] - lse[1])
        is_target = columns == targets_ref[...]
        for out_ref, i in zip(out_refs, grad_sides):
            c, (has_lp, has_ent, has_jsd) = const_refs[i], terms[i]
            row = tile_math.RowCotangent(
                entropy=_load_column(c, _ENTROPY),
                g_logprob=_load_column(c, _G_LOGPROB) if has_lp else None,
                g_entropy=_load_column(c, _G_ENTROPY) if has_ent else None,
                half_g_jsd=_load_column(c, _HALF_G_JSD) if has_jsd else None,
                kl_to_mixture=_load_column(c, _KL) if has_jsd else None,
            )
            dz = tile_math.logit_cotangent(z[i], lse[i], row, is_target, valid, log_m)
            _store_columns(out_ref, (dz * inv_temperature).astype(out_ref.dtype), valid, masked)

    grid = (num_rows // block_n, pl.cdiv(num_columns, block_v))
    out_spec = pl.BlockSpec((block_n, block_v), lambda i, j: (i, j))
    out = _call(
        kernel,
        grid=grid,
        in_specs=(
            [_row_spec(block_n, hidden)] * num_sides
            + [_column_spec(hidden, block_v), _row_spec(block_n, 1)]
            + [_row_spec(block_n, _NUM_CONSTS)] * num_sides
        ),
        out_specs=[out_spec] * len(grad_sides),
        out_shape=[jax.ShapeDtypeStruct((num_rows, num_columns), w_chunk.dtype)] * len(grad_sides),
        platform=platform,
        name="token_stats_logit_grad",
    )(
        *[side.rows for side in sides],
        w_chunk,
        (sides[0].targets - start)[:, None],
        *[_side_constants(side) for side in sides],
    )
    cotangents: list[jax.Array | None] = [None] * num_sides
    for i, dz in zip(grad_sides, out):
        cotangents[i] = dz
    return cotangents


def make_engine(
    *, inv_temperature: float, chunk_v: int, block_sizes: BlockSizes, platform: str
) -> Engine:
    """The `pallas` Engine with temperature, tile sizes and target platform bound.

    Args:
        inv_temperature: 1 / tau.
        chunk_v: vocabulary columns per backward step (a multiple of block_sizes.block_v).
        block_sizes: tile sizes.
        platform: a key of PLATFORMS.

    Returns:
        An Engine whose passes are Pallas kernels.
    """
    statics = dict(inv_temperature=inv_temperature, block_sizes=block_sizes, platform=platform)
    return Engine(
        row_multiple=block_sizes.block_n,
        chunk_v=chunk_v,
        softmax_stats=lambda rows, w: softmax_stats(rows, w, **statics),
        kl_to_mixture=lambda *args: kl_to_mixture(*args, **statics),
        logit_cotangents=lambda sides, w_chunk, start: logit_cotangents(
            sides, w_chunk, start, **statics
        ),
    )
