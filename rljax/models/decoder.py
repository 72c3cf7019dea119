"""The decoder: one Flax NNX module for Llama 3, Qwen2 and Qwen3.

Shape letters: B batch, T tokens, S cache slots, H hidden size, V vocab, L layers.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rljax.models import cache as kv_cache
from rljax.models import segments
from rljax.models.config import ModelConfig
from rljax.models.layers import (
    DecoderLayer,
    KVStack,
    LayerInputs,
    RMSNorm,
    make_param,
    rope_inverse_frequencies,
)


class Decoder(nnx.Module):
    """Decoder-only transformer (RMSNorm, RoPE, grouped-query attention, SwiGLU).

    `model(tokens, *, positions=None, segment_ids=None, cache=None, check_capacity=True) -> (hidden,
    cache)`:
    - segment_ids [B, T] int32 (default all ones): 0 = padding; a token attends causally to the tokens of
      its own segment, so packed sequences and left or right padding all work.
    - positions [B, T] int32 (default: each token's 0-based index among the valid tokens of its segment;
      with a cache, a segment that continues the row's last cached segment continues its positions).
    - cache (a `KVCache` from `init_cache`): the valid new tokens of row b are written to slots
      `cache.end[b]`, `cache.end[b] + 1`, ... in order, and each attends to the cached slots of its own
      segment up to its own slot. Writing past `max_len` raises (see `cache.check_capacity`), unless
      `check_capacity=False` (the caller guarantees room; the compiled program then has no host
      callback and can be kept in the persistent compilation cache).
    - hidden [B, T, H] is the output of the final norm in `config.dtype`; values at padding are finite
      but meaningless. The returned cache is None when none was passed.

    Parameters carry logical axis names; with `config.scan_layers` the layers are stacked on a leading
    "layers" axis and run with `nnx.scan`; `config.remat` recomputes each layer in the backward pass.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        h, v, pd = config.hidden_size, config.vocab_size, config.param_dtype
        self.embedding = make_param(rngs, (v, h), ("vocab", "embed"), pd, h**-0.5)
        if config.scan_layers:
            self.layers = _stacked_layers(config, rngs)
        else:
            self.layers = nnx.List(
                [DecoderLayer(config, rngs=rngs) for _ in range(config.num_layers)]
            )
        self.final_norm = RMSNorm(
            h, eps=config.rms_norm_eps, dtype=config.dtype, param_dtype=pd, rngs=rngs
        )
        if not config.tie_embeddings:
            self.lm_head = make_param(rngs, (h, v), ("embed", "vocab"), pd, h**-0.5)

    @property
    def unembedding(self) -> jax.Array:
        """[H, V] output projection: the tied embedding transposed, or the lm_head."""
        if self.config.tie_embeddings:
            return self.embedding[...].T
        return self.lm_head[...]

    def __call__(
        self,
        tokens: jax.Array,
        *,
        positions: jax.Array | None = None,
        segment_ids: jax.Array | None = None,
        cache: kv_cache.KVCache | None = None,
        check_capacity: bool = True,
    ) -> tuple[jax.Array, kv_cache.KVCache | None]:
        """Runs the decoder on new tokens, optionally appending them to a KV cache.

        Args:
          tokens: [B, T] int token ids.
          positions: [B, T] int rotary positions, or None for the per-segment default.
          segment_ids: [B, T] int segment ids (0 = padding), or None for all ones.
          cache: a KVCache with B rows, or None.
          check_capacity: with a cache, raise when a row would be written past `max_len` (under
            `jit`, through a host callback). False: the caller guarantees room.

        Returns:
          (hidden [B, T, H] post final norm, the updated cache or None).
        """
        _check_tokens(tokens, self.config.vocab_size)
        segment_ids = jnp.ones_like(tokens, jnp.int32) if segment_ids is None else segment_ids
        _check_like("segment_ids", segment_ids, tokens)
        segment_ids = segment_ids.astype(jnp.int32)
        if positions is not None:
            _check_like("positions", positions, tokens)
        batch, length = tokens.shape
        if cache is None:
            if positions is None:
                zeros = jnp.zeros((batch,), jnp.int32)
                positions = segments.default_positions(segment_ids, zeros, zeros)
            index = jnp.broadcast_to(jnp.arange(length, dtype=jnp.int32)[None, :], (batch, length))
            mask = segments.attention_mask(segment_ids, index, segment_ids)
            slots, kv = None, None
        else:
            _check_cache(cache, batch, length, self.config)
            if positions is None:
                positions = segments.default_positions(
                    segment_ids, cache.last_segment(), cache.next_position
                )
            write = kv_cache.plan_write(cache, segment_ids, checked=check_capacity)
            mask = segments.attention_mask(segment_ids, write.slots, write.segment_ids)
            slots, kv = write.slots, (cache.k, cache.v)
        positions = positions.astype(jnp.int32)
        inv_freq = rope_inverse_frequencies(
            self.config.head_dim, self.config.rope_theta, self.config.rope_scaling
        )
        angles = positions.astype(jnp.float32)[:, :, None] * jnp.asarray(inv_freq)[None, None, :]
        inputs = LayerInputs(cos=jnp.cos(angles), sin=jnp.sin(angles), mask=mask, slots=slots)
        x = self.embedding[...][tokens].astype(self.config.dtype)
        x, kv = self._run_layers(x, inputs, kv)
        hidden = self.final_norm(x)
        if cache is None:
            return hidden, None
        return hidden, kv_cache.commit(cache, write, kv, segment_ids, positions)

    def logits(self, tokens: jax.Array, **kwargs: Any) -> jax.Array:
        """[B, T, V] float32 logits; takes the same keyword arguments as `__call__` (the cache is dropped)."""
        hidden, _ = self(tokens, **kwargs)
        return jnp.einsum(
            "BTH,HV->BTV",
            hidden,
            self.unembedding.astype(hidden.dtype),
            preferred_element_type=jnp.float32,
        )

    def _run_layers(
        self, x: jax.Array, inputs: LayerInputs, kv: KVStack | None
    ) -> tuple[jax.Array, KVStack | None]:
        # Rematerialisation saves activation memory for a backward pass; a forward with a KV
        # cache (sampling) never has one, and nnx.remat inside the decode loop's trace fails.
        step = nnx.remat(_layer_step) if self.config.remat and kv is None else _layer_step
        if self.config.scan_layers:
            scan = nnx.scan(step, in_axes=(0, nnx.Carry, None, 0), out_axes=nnx.Carry)
            return scan(self.layers, (x, kv), inputs, jnp.arange(self.config.num_layers))
        carry = (x, kv)
        for index, layer in enumerate(self.layers):
            carry = step(layer, carry, inputs, index)
        return carry


def _layer_step(
    layer: DecoderLayer,
    carry: tuple[jax.Array, KVStack | None],
    inputs: LayerInputs,
    index: jax.Array | int,
) -> tuple[jax.Array, KVStack | None]:
    x, kv = carry
    return layer(x, inputs, kv, index)


def _stacked_layers(config: ModelConfig, rngs: nnx.Rngs) -> DecoderLayer:
    """One DecoderLayer whose parameters are stacked on a leading "layers" axis."""

    @nnx.split_rngs(splits=config.num_layers)
    @nnx.vmap(in_axes=(0,), out_axes=0, transform_metadata={nnx.PARTITION_NAME: "layers"})
    def make(layer_rngs: nnx.Rngs) -> DecoderLayer:
        return DecoderLayer(config, rngs=layer_rngs)

    return make(rngs)


def _check_tokens(tokens: jax.Array, vocab_size: int) -> None:
    """Shape and dtype always; the id range too when the tokens are concrete (not traced)."""
    if tokens.ndim != 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
        raise ValueError(
            f"tokens must be a [B, T] integer array, got shape {tokens.shape} dtype {tokens.dtype}"
        )
    concrete = not isinstance(tokens, jax.core.Tracer) and getattr(
        tokens, "is_fully_addressable", True
    )
    if concrete and tokens.size:
        values = np.asarray(tokens)
        low, high = int(values.min()), int(values.max())
        if low < 0 or high >= vocab_size:
            raise ValueError(f"tokens must lie in [0, {vocab_size}), got values in [{low}, {high}]")


def _check_like(name: str, value: jax.Array, tokens: jax.Array) -> None:
    if value.shape != tokens.shape or not jnp.issubdtype(value.dtype, jnp.integer):
        raise ValueError(
            f"{name} must be an integer array shaped like tokens {tokens.shape}, "
            f"got shape {value.shape} dtype {value.dtype}"
        )


def _check_cache(cache: kv_cache.KVCache, batch: int, length: int, config: ModelConfig) -> None:
    expected = (config.num_layers, batch, config.num_kv_heads, cache.max_len, config.head_dim)
    if cache.k.shape != expected or cache.v.shape != expected:
        raise ValueError(
            f"cache k/v must have shape {expected} (L, B, K, S, D), got {cache.k.shape}"
        )
    if length > cache.max_len:
        raise ValueError(
            f"{length} new tokens cannot fit a cache with max_len={cache.max_len} slots"
        )
