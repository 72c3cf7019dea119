"""Jitted prefill and `lax.while_loop` decode over an explicit KV-cache pytree.

The model is split once into a static `GraphDef` and a `State` of arrays (`nnx.split`); the two
compiled functions below merge them inside the trace, so a trained model only needs a fresh
`nnx.split` -- never a recompile -- to be sampled again. The cache and the last hidden state are
donated: XLA updates them in place instead of copying max_len-sized buffers every call.

Decoding state between calls is (cache, last_hidden): the cache holds every token of each row's
context, and last_hidden [B, H] is the final-layer state of each row's last context token, from
which the next token's logits (hidden @ unembedding, float32) are computed. Every sampled token is
fed back before the call returns, so the state is always "context complete, next token pending" and
a later append (an observation chunk) or decode continues exactly where this one stopped.

Shapes are padded to buckets (powers of two) so each compiled function is traced once per
(batch, chunk width, decode steps, stop-set width) bucket, not once per call. The cache writes are
unchecked (the caller guarantees room; `DecodeSession` checks every row on the host), so the
programs hold no host callback and JAX's persistent compilation cache keeps them: a new process
loads the sampler instead of compiling it (about 4.5 s on the RL-step benchmark's model).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rljax.sampling.strategies import Strategy

NO_STOP = -1  # padding value of the stop-token array; never equals a token id


def bucket_size(n: int, minimum: int = 8, maximum: int | None = None) -> int:
    """The smallest power of two >= max(n, minimum), capped at `maximum` (which must be >= n)."""
    size = max(int(minimum), 1)
    while size < n:
        size *= 2
    if maximum is not None:
        if n > maximum:
            raise ValueError(f"size {n} exceeds the maximum {maximum}")
        size = min(size, maximum)
    return size


def pad_chunks(
    chunks: Sequence[Sequence[int]], batch: int, width: int, vocab_size: int
) -> tuple[np.ndarray, np.ndarray]:
    """Right-pads token chunks into tokens and segment ids [batch, width] (rows past the chunks: empty).

    Args:
        chunks: one token sequence per row (len(chunks) <= batch), each of length <= width.
        batch: number of rows of the output.
        width: number of columns of the output.
        vocab_size: V; every token id must lie in [0, V).

    Returns:
        (tokens [batch, width] int32 with 0 padding, segment_ids [batch, width] int32, 1 on tokens).
    """
    tokens = np.zeros((batch, width), np.int32)
    segment_ids = np.zeros((batch, width), np.int32)
    for row, chunk in enumerate(chunks):
        ids = np.asarray(chunk, np.int64).reshape(-1)
        if ids.size and not (0 <= ids.min() and ids.max() < vocab_size):
            raise ValueError(
                f"chunk {row} has token ids outside the vocabulary [0, {vocab_size}): "
                f"min {ids.min()}, max {ids.max()}"
            )
        tokens[row, : ids.size] = ids
        segment_ids[row, : ids.size] = 1
    return tokens, segment_ids


def pad_stop_tokens(
    stop_tokens: Sequence[Collection[int]], batch: int, vocab_size: int, minimum: int = 4
) -> np.ndarray:
    """Packs per-row stop-token sets into a [batch, S] int32 array padded with NO_STOP (-1).

    Args:
        stop_tokens: one collection of token ids per row (len <= batch; missing rows: no stops).
        batch: number of rows of the output.
        vocab_size: V; every id must lie in [0, V).
        minimum: smallest bucket for S.

    Returns:
        [batch, S] int32, S = bucket_size(largest set size, minimum).
    """
    sets = [sorted({int(t) for t in row}) for row in stop_tokens]
    for row, ids in enumerate(sets):
        bad = [t for t in ids if not 0 <= t < vocab_size]
        if bad:
            raise ValueError(
                f"stop_tokens[{row}] has ids {bad} outside the vocabulary [0, {vocab_size})"
            )
    width = bucket_size(max((len(s) for s in sets), default=0), minimum)
    packed = np.full((batch, width), NO_STOP, np.int32)
    for row, ids in enumerate(sets):
        packed[row, : len(ids)] = ids
    return packed


def next_token_logits(model: nnx.Module, last_hidden: jax.Array) -> jax.Array:
    """Float32 logits [B, V] = last_hidden [B, H] @ unembedding [H, V]."""
    unembedding = jnp.asarray(model.unembedding, jnp.float32)
    return last_hidden.astype(jnp.float32) @ unembedding


def extend_fn(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    cache: Any,
    last_hidden: jax.Array,
    tokens: jax.Array,
    segment_ids: jax.Array,
) -> tuple[Any, jax.Array]:
    """Appends one right-padded chunk per row to the cache (prefill and observation appends).

    Args:
        graphdef: the model's static graph (`nnx.split(model)[0]`).
        state: the model's arrays (`nnx.split(model)[1]`).
        cache: the model's KV cache for B rows (donated); the caller guarantees room for the chunk
            (`DecodeSession` checks on the host).
        last_hidden: [B, H] float32 last-token hidden state of each row so far (donated).
        tokens: [B, T] int32 chunk tokens, right-padded.
        segment_ids: [B, T] int32, nonzero on the chunk's tokens; a row of zeros leaves the row as is.

    Returns:
        (cache, last_hidden [B, H]) with each non-empty row's last hidden state updated.
    """
    chex.assert_rank([last_hidden, tokens, segment_ids], [2, 2, 2])
    chex.assert_equal_shape([tokens, segment_ids])
    model = nnx.merge(graphdef, state)
    hidden, cache = model(tokens, segment_ids=segment_ids, cache=cache, check_capacity=False)
    counts = jnp.sum(segment_ids != 0, axis=-1)
    last = jnp.take_along_axis(hidden, jnp.maximum(counts - 1, 0)[:, None, None], axis=1)[:, 0]
    last_hidden = jnp.where((counts > 0)[:, None], last.astype(jnp.float32), last_hidden)
    return cache, last_hidden


class DecodeResult(NamedTuple):
    """Output of `decode` for B rows and a buffer of N steps.

    Attributes:
        tokens: [B, N] int32 generated tokens (0 past each row's length).
        logprobs: [B, N] float32 log-probs of those tokens under the sampling distribution (0 past
            the length).
        lengths: [B] int32 tokens generated per row (the stop token included when hit).
        stopped: [B] bool, the row ended on one of its stop tokens.
        cache: the cache with every generated token written.
        last_hidden: [B, H] float32 hidden state of each row's last token.
    """

    tokens: jax.Array
    logprobs: jax.Array
    lengths: jax.Array
    stopped: jax.Array
    cache: Any
    last_hidden: jax.Array


def decode_fn(
    graphdef: nnx.GraphDef,
    state: nnx.State,
    cache: Any,
    last_hidden: jax.Array,
    key: jax.Array,
    max_new_tokens: jax.Array,
    stop_tokens: jax.Array,
    *,
    strategy: Strategy,
    num_steps: int,
) -> DecodeResult:
    """Samples up to `max_new_tokens[b]` tokens per row in one `lax.while_loop`.

    Step i samples a token for every unfinished row from its pending logits with key
    `fold_in(key, i)`, writes it to the cache (finished rows pass padding, so their cache is left
    alone) and takes the new last hidden state. A row finishes after sampling one of its stop
    tokens or its `max_new_tokens[b]`-th token; the loop ends when every row has finished.

    Args:
        graphdef: the model's static graph.
        state: the model's arrays.
        cache: KV cache for B rows (donated); the caller guarantees room for the new tokens.
        last_hidden: [B, H] float32 hidden state of each row's last context token (donated).
        key: PRNG key of this call.
        max_new_tokens: [B] int32 per-row budget in [0, num_steps]; 0 = row generates nothing.
        stop_tokens: [B, S] int32 per-row stop ids padded with NO_STOP (-1).
        strategy: the sampling strategy (static).
        num_steps: N, the width of the output buffers (static; a bucket >= max(max_new_tokens)).

    Returns:
        DecodeResult with tokens/logprobs [B, N], lengths [B], stopped [B], cache, last_hidden.
    """
    chex.assert_rank([last_hidden, max_new_tokens, stop_tokens], [2, 1, 2])
    batch = last_hidden.shape[0]
    chex.assert_shape([max_new_tokens], (batch,))
    chex.assert_shape([stop_tokens], (batch, None))

    def cond(carry: tuple[Any, ...]) -> jax.Array:
        step, done = carry[0], carry[5]
        return (step < num_steps) & ~jnp.all(done)

    # The model's arrays ride in the carry (unchanged): a model merged from arrays closed over
    # from outside the loop cannot run an nnx transform inside it (the layer scan of a
    # `scan_layers` model fails with "Cannot extract graph node from different trace level").
    def body(carry: tuple[Any, ...]) -> tuple[Any, ...]:
        step, cache, hidden_last, tokens, logprobs, done, lengths, stopped, params = carry
        model = nnx.merge(graphdef, params)
        sample = strategy(next_token_logits(model, hidden_last), jax.random.fold_in(key, step))
        active = ~done
        new_tokens = jnp.where(active, sample.tokens, 0)
        tokens = tokens.at[:, step].set(new_tokens)
        logprobs = logprobs.at[:, step].set(jnp.where(active, sample.logprobs, 0.0))
        hidden, cache = model(
            new_tokens[:, None],
            segment_ids=active[:, None].astype(jnp.int32),
            cache=cache,
            check_capacity=False,
        )
        hidden_last = jnp.where(active[:, None], hidden[:, 0].astype(jnp.float32), hidden_last)
        lengths = lengths + active.astype(jnp.int32)
        hit = active & jnp.any(new_tokens[:, None] == stop_tokens, axis=-1)
        stopped = stopped | hit
        done = done | hit | (lengths >= max_new_tokens)
        return step + 1, cache, hidden_last, tokens, logprobs, done, lengths, stopped, params

    zeros = jnp.zeros((batch,), jnp.int32)
    carry = (
        jnp.int32(0),
        cache,
        last_hidden,
        jnp.zeros((batch, num_steps), jnp.int32),
        jnp.zeros((batch, num_steps), jnp.float32),
        max_new_tokens <= 0,
        zeros,
        jnp.zeros((batch,), bool),
        state,
    )
    _, cache, last_hidden, tokens, logprobs, _, lengths, stopped, _ = jax.lax.while_loop(
        cond, body, carry
    )
    return DecodeResult(tokens, logprobs, lengths, stopped, cache, last_hidden)


# The jitted forms for an unsharded model (shardings follow the inputs); a model on a mesh is
# decoded with explicit shardings (`rljax.sampling.placement`).
extend = jax.jit(extend_fn, static_argnames=("graphdef",), donate_argnames=("cache", "last_hidden"))
decode = jax.jit(
    decode_fn,
    static_argnames=("graphdef", "strategy", "num_steps"),
    donate_argnames=("cache", "last_hidden"),
)
