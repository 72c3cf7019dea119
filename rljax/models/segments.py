"""Segment bookkeeping shared by the cached and uncached forward: default positions and attention masks.

Segment ids mark which tokens belong together: 0 is padding, and each nonzero id is one sequence.
Segments are contiguous runs of valid tokens (padding may sit anywhere between them), so packed
sequences, left padding and right padding all use the same rules:
- a token attends to the tokens of its own segment at or before itself;
- its default position is its 0-based index among the valid tokens of its segment.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp


def default_positions(
    segment_ids: jax.Array, prev_segment: jax.Array, prev_next_position: jax.Array
) -> jax.Array:
    """Per-segment running index of the valid tokens, continuing a segment already in the cache.

    Args:
      segment_ids: [B, T] int32, 0 = padding.
      prev_segment: [B] int32 segment id of the row's last cached token (0 when there is none).
      prev_next_position: [B] int32 position that token's successor would get.

    Returns:
      [B, T] int32 positions; a segment that continues `prev_segment` starts at `prev_next_position`,
      every other segment at 0; padding gets 0.
    """
    chex.assert_rank([segment_ids, prev_segment, prev_next_position], [2, 1, 1])
    batch, tokens = segment_ids.shape
    chex.assert_shape([prev_segment, prev_next_position], (batch,))
    valid = segment_ids != 0
    index = jnp.broadcast_to(jnp.arange(tokens, dtype=jnp.int32)[None, :], (batch, tokens))
    rank = jnp.cumsum(valid, axis=1, dtype=jnp.int32) - valid.astype(jnp.int32)
    last_valid = jax.lax.cummax(jnp.where(valid, index, -1), axis=1)
    before = jnp.concatenate([jnp.full((batch, 1), -1, jnp.int32), last_valid[:, :-1]], axis=1)
    prev = jnp.take_along_axis(segment_ids, jnp.maximum(before, 0), axis=1)
    prev = jnp.where(before >= 0, prev, prev_segment[:, None])
    starts = valid & (segment_ids != prev)
    start_rank = jax.lax.cummax(jnp.where(starts, rank, -1), axis=1)
    positions = jnp.where(start_rank >= 0, rank - start_rank, prev_next_position[:, None] + rank)
    return jnp.where(valid, positions, 0).astype(jnp.int32)


def attention_mask(
    query_segments: jax.Array, query_index: jax.Array, key_segments: jax.Array
) -> jax.Array:
    """Which keys each query sees: same nonzero segment, key index at or before the query's.

    Args:
      query_segments: [B, T] int32 segment ids of the queries (0 = padding, sees nothing).
      query_index: [B, T] int32 index of each query among the keys (its own slot).
      key_segments: [B, S] int32 segment ids of the keys (0 = padding or empty slot).

    Returns:
      [B, T, S] bool mask.
    """
    chex.assert_rank([query_segments, query_index, key_segments], 2)
    chex.assert_equal_shape([query_segments, query_index])
    key_index = jnp.arange(key_segments.shape[1], dtype=jnp.int32)[None, None, :]
    same = query_segments[:, :, None] == key_segments[:, None, :]
    return same & (query_segments[:, :, None] != 0) & (key_index <= query_index[:, :, None])
