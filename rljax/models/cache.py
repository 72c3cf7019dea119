"""The key/value cache: an explicit pytree threaded into and out of `Decoder.__call__`.

Each row of the cache is a sequence of slots. A call with a cache writes the valid (nonzero segment id)
new tokens of row b, in order, to slots `end[b], end[b] + 1, ...` and advances `end[b]` by their count,
so rows may append different numbers of tokens (a multi-turn agent appends an observation to some rows
while others keep decoding). Shape letters: L layers, B rows, S slots, K kv heads, D head dim, T new tokens.
Keys and values are stored [L, B, K, S, D].
"""

from __future__ import annotations

from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct

from rljax.models.config import ModelConfig


@struct.dataclass
class KVCache:
    """Per-layer keys and values (post-RoPE) plus per-slot and per-row bookkeeping.

    Attributes:
      k: [L, B, K, S, D] keys (kv heads before slots: a decode step's attention contracts each
        layer's [B, K, S, D] block with the queries directly, with no transposed copy).
      v: [L, B, K, S, D] values.
      segment_ids: [B, S] int32 segment id of each slot; 0 = empty.
      end: [B] int32 number of slots written so far in each row.
      next_position: [B] int32 position the row's next token gets by default.
    """

    k: jax.Array
    v: jax.Array
    segment_ids: jax.Array
    end: jax.Array
    next_position: jax.Array

    @property
    def batch_size(self) -> int:
        """Number of rows B."""
        return self.segment_ids.shape[0]

    @property
    def max_len(self) -> int:
        """Number of slots S per row."""
        return self.segment_ids.shape[1]

    def last_segment(self) -> jax.Array:
        """[B] int32 segment id of each row's last written slot (0 for an empty row)."""
        last = jnp.take_along_axis(self.segment_ids, jnp.maximum(self.end - 1, 0)[:, None], axis=1)[
            :, 0
        ]
        return jnp.where(self.end > 0, last, 0)


def init_cache(
    config: ModelConfig, batch_size: int, max_len: int, dtype: str | None = None
) -> KVCache:
    """Returns an empty cache for `batch_size` rows of `max_len` slots.

    Args:
      config: the model's config (layers, kv heads, head dim).
      batch_size: number of rows B.
      max_len: number of slots S per row: the longest sequence (prompt + all appended tokens) a row holds.
      dtype: storage dtype of keys and values; defaults to `config.dtype`.

    Returns:
      A KVCache with zero keys/values, all slots empty, `end` and `next_position` zero.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be a positive int, got {batch_size}")
    if max_len <= 0:
        raise ValueError(f"max_len must be a positive int, got {max_len}")
    kv_shape = (config.num_layers, batch_size, config.num_kv_heads, max_len, config.head_dim)
    kv_dtype = jnp.dtype(dtype or config.dtype)
    return KVCache(
        k=jnp.zeros(kv_shape, kv_dtype),
        v=jnp.zeros(kv_shape, kv_dtype),
        segment_ids=jnp.zeros((batch_size, max_len), jnp.int32),
        end=jnp.zeros((batch_size,), jnp.int32),
        next_position=jnp.zeros((batch_size,), jnp.int32),
    )


class CacheWrite(NamedTuple):
    """Where a call's new tokens go.

    Attributes:
      slots: [B, T] int32 slot of each valid new token, -1 for padding.
      segment_ids: [B, S] int32 slot segment ids after the write.
      end: [B] int32 rows' `end` after the write.
    """

    slots: jax.Array
    segment_ids: jax.Array
    end: jax.Array


def plan_write(cache: KVCache, segment_ids: jax.Array, *, checked: bool = True) -> CacheWrite:
    """Assigns the valid new tokens of each row to the slots after its `end`, in order.

    Args:
      cache: the cache before the write.
      segment_ids: [B, T] int32 segment ids of the new tokens (0 = padding, not written).
      checked: raise (see `check_capacity`) if a row would overflow its slots. False: the caller
        guarantees room (tokens past `max_len` would be dropped silently).

    Returns:
      The CacheWrite.
    """
    chex.assert_shape(segment_ids, (cache.batch_size, None))
    valid = segment_ids != 0
    rank = jnp.cumsum(valid, axis=1, dtype=jnp.int32) - valid.astype(jnp.int32)
    slots = jnp.where(valid, cache.end[:, None] + rank, -1)
    new_end = cache.end + jnp.sum(valid, axis=1, dtype=jnp.int32)
    if checked:
        check_capacity(new_end, cache.max_len)
    batch, tokens = segment_ids.shape
    rows = jnp.broadcast_to(jnp.arange(batch)[:, None], (batch, tokens))
    target = jnp.where(valid, slots, cache.max_len)
    slot_segments = cache.segment_ids.at[rows, target].set(segment_ids, mode="drop")
    return CacheWrite(slots=slots, segment_ids=slot_segments, end=new_end)


def check_capacity(new_end: jax.Array, max_len: int) -> None:
    """Raises if a row would be written past its last slot.

    With concrete values the ValueError is raised at once. Under `jit` a host callback raises it
    (surfacing as a runtime error carrying the same message when the computation runs); the callback
    sits behind a `lax.cond`, so it only runs when a row actually overflows. A program holding a
    host callback is not kept in JAX's persistent compilation cache, so callers that check on the
    host (`DecodeSession`) write with `checked=False`.
    """

    def _raise_if_full(end: np.ndarray) -> None:
        rows = np.flatnonzero(np.asarray(end) > max_len)
        if rows.size:
            raise ValueError(
                f"KV cache overflow: rows {rows.tolist()} would hold {np.asarray(end)[rows].tolist()} "
                f"tokens but the cache has max_len={max_len} slots"
            )

    if isinstance(new_end, jax.core.Tracer) or not new_end.is_fully_addressable:
        jax.lax.cond(
            jnp.any(new_end > max_len),
            lambda end: jax.debug.callback(_raise_if_full, end),
            lambda end: None,
            new_end,
        )
    else:
        _raise_if_full(np.asarray(new_end))


def write_rows(
    stack: jax.Array, layer: jax.Array | int, slots: jax.Array, values: jax.Array
) -> jax.Array:
    """Writes one layer's new keys (or values) into their slots; padding tokens are not written.

    Args:
      stack: [L, B, K, S, D] cached keys or values of all layers.
      layer: index of the layer to write.
      slots: [B, T] int32 slot per token, -1 for padding.
      values: [B, T, K, D] the new keys or values.

    Returns:
      The updated [L, B, K, S, D] array.
    """
    chex.assert_rank([stack, slots, values], [5, 2, 4])
    batch, tokens = slots.shape
    chex.assert_shape(values, (batch, tokens, stack.shape[2], stack.shape[4]))
    rows = jnp.broadcast_to(jnp.arange(batch)[:, None], (batch, tokens))
    target = jnp.where(slots >= 0, slots, stack.shape[3])
    # The advanced indices (layer, rows, target) are split by the kv-head slice, so the indexed
    # block is [B, T, K, D] (numpy's rule), the layout of `values`.
    return stack.at[layer, rows, :, target].set(values.astype(stack.dtype), mode="drop")


def commit(
    cache: KVCache,
    write: CacheWrite,
    kv: tuple[jax.Array, jax.Array],
    segment_ids: jax.Array,
    positions: jax.Array,
) -> KVCache:
    """Returns the cache after a call: new keys/values, slot segment ids, `end` and `next_position`.

    Args:
      cache: the cache before the call.
      write: the call's CacheWrite.
      kv: ([L, B, K, S, D], [L, B, K, S, D]) keys and values with the new tokens written.
      segment_ids: [B, T] segment ids of the new tokens.
      positions: [B, T] positions of the new tokens.

    Returns:
      The updated KVCache; `next_position` of a row is its last valid new token's position + 1
      (unchanged for a row without valid new tokens).
    """
    chex.assert_equal_shape([segment_ids, positions, write.slots])
    tokens = segment_ids.shape[1]
    last = jnp.max(jnp.where(segment_ids != 0, jnp.arange(tokens)[None, :], -1), axis=1)
    last_position = jnp.take_along_axis(positions, jnp.maximum(last, 0)[:, None], axis=1)[:, 0]
    next_position = jnp.where(last >= 0, last_position + 1, cache.next_position).astype(jnp.int32)
    return cache.replace(
        k=kv[0], v=kv[1], segment_ids=write.segment_ids, end=write.end, next_position=next_position
    )
