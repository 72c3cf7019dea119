"""Building blocks of the decoder: RMSNorm, rotary embeddings, grouped-query attention, SwiGLU MLP.

Every parameter carries logical sharding names (`out_sharding` metadata) drawn only from
"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "layers" and "norm"; `rljax.parallel.rules`
maps them to mesh axes. Shape letters: B batch, T new tokens, S key slots,
H hidden size, N query heads, K kv heads, G = N / K, D head dim, F MLP width, L layers.
Projections are 2-D matmuls over the flattened tokens (`dense`).
"""

from __future__ import annotations

import math
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rljax.models import cache as kv_cache
from rljax.models.config import ModelConfig, RopeScaling

_MASKED = float(jnp.finfo(jnp.float32).min)


def make_param(
    rngs: nnx.Rngs, shape: tuple[int, ...], axes: tuple[str, ...], dtype: str, stddev: float | None
) -> nnx.Param:
    """A parameter with logical axis names: normal(0, stddev) weights, or ones when stddev is None."""
    if stddev is None:
        value = jnp.ones(shape, dtype)
    else:
        value = stddev * jax.random.normal(rngs.params(), shape, jnp.float32)
    return nnx.Param(value.astype(dtype), out_sharding=axes, eager_sharding=False)


def zeros_param(shape: tuple[int, ...], axes: tuple[str, ...], dtype: str) -> nnx.Param:
    """A zero-initialised parameter (biases) with logical axis names."""
    return nnx.Param(jnp.zeros(shape, dtype), out_sharding=axes, eager_sharding=False)


class RMSNorm(nnx.Module):
    """Root-mean-square layer norm, y = scale * x / sqrt(mean(x^2) + eps), statistics in float32."""

    def __init__(self, size: int, *, eps: float, dtype: str, param_dtype: str, rngs: nnx.Rngs):
        self.scale = make_param(rngs, (size,), ("norm",), param_dtype, stddev=None)
        self.eps = eps
        self.dtype = dtype

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        normed = x32 * jax.lax.rsqrt(jnp.mean(jnp.square(x32), axis=-1, keepdims=True) + self.eps)
        scale = self.scale[...].astype(self.dtype).reshape((1,) * (x.ndim - 1) + (-1,))
        return scale * normed.astype(self.dtype)


def rope_inverse_frequencies(
    head_dim: int, theta: float, scaling: RopeScaling | None
) -> np.ndarray:
    """[D / 2] float32 inverse frequencies theta^(-2i/D), with Llama 3.1 scaling when given.

    Llama 3.1 (arXiv:2407.21783, `_compute_llama3_parameters` in transformers): wavelengths longer than
    original/low_freq_factor are divided by `factor`, shorter than original/high_freq_factor kept,
    and the band between interpolated with weight s = (original / wavelength - low) / (high - low).
    """
    inv_freq = 1.0 / theta ** (np.arange(0, head_dim, 2, dtype=np.float64) / head_dim)
    if scaling is not None:
        original = scaling.original_max_position_embeddings
        wavelength = 2 * math.pi / inv_freq
        scaled = np.where(
            wavelength > original / scaling.low_freq_factor, inv_freq / scaling.factor, inv_freq
        )
        smooth = (original / wavelength - scaling.low_freq_factor) / (
            scaling.high_freq_factor - scaling.low_freq_factor
        )
        smoothed = (1 - smooth) * scaled / scaling.factor + smooth * scaled
        medium = (wavelength >= original / scaling.high_freq_factor) & (
            wavelength <= original / scaling.low_freq_factor
        )
        inv_freq = np.where(medium, smoothed, scaled)
    return inv_freq.astype(np.float32)


def dense(x: jax.Array, kernel: jax.Array) -> jax.Array:
    """x [..., H] times kernel [H, *O] over H -> [..., *O], as one 2-D matmul over the flattened
    leading axes.

    The same products as `einsum("...H,HO->...O")`, but its autodiff transpose is a plain 2-D
    matmul too: the einsum's weight gradient contracts two batch axes, which XLA on CPU ran 1.7x
    slower (the SwiGLU projections of a [64, 36, 128] batch: 21.6 vs 12.5 ms, one core).
    """
    lead, out = x.shape[:-1], kernel.shape[1:]
    y = x.reshape(-1, x.shape[-1]) @ kernel.reshape(kernel.shape[0], -1)
    return y.reshape(*lead, *out)


def apply_rope(x: jax.Array, cos: jax.Array, sin: jax.Array) -> jax.Array:
    """Rotates the two halves of each head (the HF `rotate_half` layout), in float32.

    Args:
      x: [B, T, N, D] queries or keys.
      cos, sin: [B, T, D / 2] float32 of position * inverse frequency.

    Returns:
      [B, T, N, D] in x's dtype.
    """
    chex.assert_rank([x, cos, sin], [4, 3, 3])
    chex.assert_equal_shape([cos, sin])
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    cos, sin = cos[:, :, None, :], sin[:, :, None, :]
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


class LayerInputs(NamedTuple):
    """Per-call tensors shared by all layers.

    Attributes:
      cos, sin: [B, T, D / 2] float32 rotary tables of the new tokens.
      mask: [B, T, S] bool, which keys each query sees (S = T without a cache).
      slots: [B, T] int32 cache slot of each new token (-1 = padding), or None without a cache.
    """

    cos: jax.Array
    sin: jax.Array
    mask: jax.Array
    slots: jax.Array | None


KVStack = tuple[jax.Array, jax.Array]


def attend(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """Grouped-query softmax attention with float32 logits.

    Args:
      q: [B, T, N, D] queries.
      k, v: [B, S, K, D] keys and values, N a multiple of K.
      mask: [B, T, S] bool; a query with no visible key gets a uniform (finite) average.

    Returns:
      [B, T, N, D] in v's dtype.
    """
    chex.assert_rank([q, k, v, mask], [4, 4, 4, 3])
    chex.assert_equal_shape([k, v])
    batch, tokens = q.shape[:2]
    chex.assert_shape(mask, (batch, tokens, k.shape[1]))
    return _grouped_attention(q, k, v, mask, "BSKD")


def _grouped_attention(
    q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array, kv_axes: str
) -> jax.Array:
    """The einsums of `attend` for keys and values laid out as `kv_axes` ("BSKD" or "BKSD")."""
    batch, tokens, heads, head_dim = q.shape
    kv_heads = k.shape[kv_axes.index("K")]
    q = q.reshape(batch, tokens, kv_heads, heads // kv_heads, head_dim)
    logits = jnp.einsum(f"BTKGD,{kv_axes}->BKGTS", q, k, preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, None, None, :, :], logits * head_dim**-0.5, _MASKED)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum(f"BKGTS,{kv_axes}->BTKGD", probs.astype(v.dtype), v)
    return out.reshape(batch, tokens, heads, head_dim)


def attend_cache(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array) -> jax.Array:
    """`attend` over one layer's block of the KV cache, whose keys and values are [B, K, S, D].

    One new token per row (a decode step) contracts [B, K, G, D] queries with the block directly:
    no unit query-time axis and no transposed copy of the cache. XLA:CPU ran the general path's
    einsums with T = 1 1.27x slower, and a float32 multiply-and-sum 1.11x slower, than dots of this
    form (the RL-step benchmark's decode, 64 rows, 36 slots, interleaved in one process). Longer
    chunks (prefill, observations) take `attend`'s einsums, written for this layout.

    Args:
      q: [B, T, N, D] queries.
      k, v: [B, K, S, D] cached keys and values, N a multiple of K.
      mask: [B, T, S] bool; a query with no visible key gets a uniform (finite) average.

    Returns:
      [B, T, N, D] in v's dtype.
    """
    chex.assert_rank([q, k, v, mask], [4, 4, 4, 3])
    chex.assert_equal_shape([k, v])
    batch, tokens, heads, head_dim = q.shape
    kv_heads = k.shape[1]
    chex.assert_shape(mask, (batch, tokens, k.shape[2]))
    if tokens > 1:
        return _grouped_attention(q, k, v, mask, "BKSD")
    q = q.reshape(batch, kv_heads, heads // kv_heads, head_dim)
    logits = jnp.einsum("BKGD,BKSD->BKGS", q, k, preferred_element_type=jnp.float32)
    logits = jnp.where(mask[:, :, None, :], logits * head_dim**-0.5, _MASKED)
    probs = jax.nn.softmax(logits, axis=-1)
    out = jnp.einsum("BKGS,BKSD->BKGD", probs.astype(v.dtype), v)
    return out.reshape(batch, 1, heads, head_dim)


class Attention(nnx.Module):
    """Multi-head attention with grouped key/value heads, optional qkv bias (Qwen2) and qk-norm (Qwen3)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        h, n, k, d, pd = (
            config.hidden_size,
            config.num_heads,
            config.num_kv_heads,
            config.head_dim,
            config.param_dtype,
        )
        self.config = config
        self.q_proj = make_param(rngs, (h, n, d), ("embed", "heads", "head_dim"), pd, h**-0.5)
        self.k_proj = make_param(rngs, (h, k, d), ("embed", "kv_heads", "head_dim"), pd, h**-0.5)
        self.v_proj = make_param(rngs, (h, k, d), ("embed", "kv_heads", "head_dim"), pd, h**-0.5)
        self.o_proj = make_param(
            rngs, (n, d, h), ("heads", "head_dim", "embed"), pd, (n * d) ** -0.5
        )
        if config.qkv_bias:
            self.q_bias = zeros_param((n, d), ("heads", "head_dim"), pd)
            self.k_bias = zeros_param((k, d), ("kv_heads", "head_dim"), pd)
            self.v_bias = zeros_param((k, d), ("kv_heads", "head_dim"), pd)
        if config.qk_norm:
            norm = dict(eps=config.rms_norm_eps, dtype=config.dtype, param_dtype=pd, rngs=rngs)
            self.q_norm = RMSNorm(d, **norm)
            self.k_norm = RMSNorm(d, **norm)

    def _project(self, x: jax.Array, kernel: nnx.Param, bias_name: str) -> jax.Array:
        out = dense(x, kernel[...].astype(x.dtype))  # [B, T, N, D]
        if self.config.qkv_bias:
            out = out + getattr(self, bias_name)[...].astype(x.dtype)[None, None]
        return out

    def __call__(
        self, x: jax.Array, inputs: LayerInputs, kv: KVStack | None, layer: jax.Array | int
    ) -> tuple[jax.Array, KVStack | None]:
        """Attends the new tokens to themselves (no cache) or to the cache after writing them into it.

        Args:
          x: [B, T, H] normed hidden states.
          inputs: per-call rotary tables, mask and cache slots.
          kv: ([L, B, K, S, D], [L, B, K, S, D]) keys and values of all layers, or None.
          layer: this layer's index into kv.

        Returns:
          ([B, T, H] attention output, kv with this layer's new keys and values written).
        """
        q = self._project(x, self.q_proj, "q_bias")
        k = self._project(x, self.k_proj, "k_bias")
        v = self._project(x, self.v_proj, "v_bias")
        if self.config.qk_norm:
            q, k = self.q_norm(q), self.k_norm(k)
        q = apply_rope(q, inputs.cos, inputs.sin)
        k = apply_rope(k, inputs.cos, inputs.sin)
        if kv is not None:
            k_stack = kv_cache.write_rows(kv[0], layer, inputs.slots, k)
            v_stack = kv_cache.write_rows(kv[1], layer, inputs.slots, v)
            kv = (k_stack, v_stack)
            k, v = k_stack[layer].astype(x.dtype), v_stack[layer].astype(x.dtype)
            out = attend_cache(q, k, v, inputs.mask)
        else:
            out = attend(q, k, v, inputs.mask)
        out = out.reshape(*out.shape[:2], -1)  # [B, T, N * D]
        o_proj = self.o_proj[...].astype(x.dtype)
        return dense(out, o_proj.reshape(-1, o_proj.shape[-1])), kv


class MLP(nnx.Module):
    """SwiGLU feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        h, f, pd = config.hidden_size, config.intermediate_size, config.param_dtype
        self.gate_proj = make_param(rngs, (h, f), ("embed", "mlp"), pd, h**-0.5)
        self.up_proj = make_param(rngs, (h, f), ("embed", "mlp"), pd, h**-0.5)
        self.down_proj = make_param(rngs, (f, h), ("mlp", "embed"), pd, f**-0.5)

    def __call__(self, x: jax.Array) -> jax.Array:
        gate = dense(x, self.gate_proj[...].astype(x.dtype))  # [B, T, F]
        up = dense(x, self.up_proj[...].astype(x.dtype))
        return dense(jax.nn.silu(gate) * up, self.down_proj[...].astype(x.dtype))


class DecoderLayer(nnx.Module):
    """Pre-norm transformer block: x + attn(norm(x)), then + mlp(norm(x))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        norm = dict(
            eps=config.rms_norm_eps, dtype=config.dtype, param_dtype=config.param_dtype, rngs=rngs
        )
        self.input_norm = RMSNorm(config.hidden_size, **norm)
        self.attn = Attention(config, rngs=rngs)
        self.post_attn_norm = RMSNorm(config.hidden_size, **norm)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(
        self, x: jax.Array, inputs: LayerInputs, kv: KVStack | None, layer: jax.Array | int
    ) -> tuple[jax.Array, KVStack | None]:
        attn_out, kv = self.attn(self.input_norm(x), inputs, kv, layer)
        x = x + attn_out
        return x + self.mlp(self.post_attn_norm(x)), kv
