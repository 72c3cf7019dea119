"""`DecodeSession`: host-level multi-turn decoding over one persistent KV cache.

A multi-turn agent alternates model turns (`generate`) with environment observations (`append`).
The session keeps each row's whole context in the cache, so a turn costs only its new tokens; rows
advance independently (different prompt lengths, budgets, stop sets, some rows idle).
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from rljax.models import KVCache, init_cache
from rljax.parallel import DATA_AXES, data_parallel_size
from rljax.sampling.sampler import bucket_size, decode, extend, pad_chunks, pad_stop_tokens
from rljax.sampling.strategies import Strategy

MIN_CHUNK_BUCKET = 16
MIN_STEP_BUCKET = 16


class Generation(NamedTuple):
    """One row's output of `DecodeSession.generate` (the rollout's `Generation` record).

    Attributes:
        tokens: the generated token ids, ending with the stop token when one was hit.
        logprobs: log-prob of each token under the sampling distribution (same length as tokens).
        stopped: True if the row ended on a stop token, False if it used its whole budget or was
            inactive.
    """

    tokens: list[int]
    logprobs: list[float]
    stopped: bool


def place_like_params(
    state: nnx.State, cache: KVCache, last_hidden: jax.Array
) -> tuple[KVCache, jax.Array]:
    """Puts the decoding state on the mesh of sharded parameters (unchanged for unsharded ones).

    Rows are split over the data-parallel axes ("data", "fsdp") when the batch divides them, and
    replicated otherwise; the compiler propagates the parameters' shardings from there.

    Args:
        state: the model's arrays.
        cache: a fresh KV cache for B rows.
        last_hidden: [B, H] float32.

    Returns:
        (cache, last_hidden), placed.
    """
    meshes = {
        leaf.sharding.mesh
        for leaf in jax.tree.leaves(state)
        if isinstance(getattr(leaf, "sharding", None), NamedSharding)
    }
    if not meshes:
        return cache, last_hidden
    if len(meshes) > 1:
        raise ValueError(
            f"the model's parameters live on {len(meshes)} different meshes; expected one"
        )
    mesh = meshes.pop()
    rows = DATA_AXES if last_hidden.shape[0] % data_parallel_size(mesh) == 0 else None
    by_row, kv_by_row = (
        NamedSharding(mesh, PartitionSpec(rows)),
        NamedSharding(mesh, PartitionSpec(None, rows)),
    )
    cache = KVCache(
        k=jax.device_put(cache.k, kv_by_row),
        v=jax.device_put(cache.v, kv_by_row),
        segment_ids=jax.device_put(cache.segment_ids, by_row),
        end=jax.device_put(cache.end, by_row),
        next_position=jax.device_put(cache.next_position, by_row),
    )
    return cache, jax.device_put(last_hidden, by_row)


class DecodeSession:
    """Batch of B independent conversations decoded with one KV cache.

    The model's parameters are captured at construction (`nnx.split`); build a new session after
    updating the model. Compiled functions are shared between sessions with the same model graph,
    strategy and shape buckets. A model sharded on a mesh (`rljax.parallel.shard_model`) decodes on
    that mesh, rows split over the data-parallel axes (single process only: the token inputs are host
    arrays).

    Args:
        model: the decoder.
        batch_size: B, the number of rows (conversations).
        max_len: the cache length; no row's context may exceed it.
        strategy: sampling strategy, e.g. `Temperature(1.0)`.
        key: PRNG key; each `generate` call consumes a fresh split of it.
    """

    def __init__(
        self,
        model: nnx.Module,
        *,
        batch_size: int,
        max_len: int,
        strategy: Strategy,
        key: jax.Array,
    ) -> None:
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"batch_size={batch_size} and max_len={max_len} must both be positive")
        self._graphdef, self._state = nnx.split(model)
        self._config = model.config
        self._hidden_size, self._vocab_size = jnp.shape(model.unembedding)
        self._batch_size = batch_size
        self._padded_batch = bucket_size(batch_size, 1)
        self._max_len = max_len
        self._strategy = strategy
        self._key = key
        self._reset()

    @property
    def lengths(self) -> list[int]:
        """Tokens in each row's context so far (prompt + appended chunks + generated tokens)."""
        return [int(n) for n in self._lengths]

    @property
    def cache(self) -> KVCache:
        """The KV cache of the padded batch (rows >= batch_size are padding); read-only use."""
        return self._cache

    @property
    def batch_size(self) -> int:
        """B, the number of rows."""
        return self._batch_size

    @property
    def max_len(self) -> int:
        """The cache length."""
        return self._max_len

    def prefill(self, prompts: list[Sequence[int]]) -> None:
        """Starts every row afresh from its prompt (the previous contexts are discarded).

        Args:
            prompts: B token sequences; each non-empty for rows that will generate.
        """
        self._check_rows("prompts", prompts)
        self._reset()
        self.append(prompts)

    def append(self, chunks: list[Sequence[int]]) -> None:
        """Appends a token chunk (e.g. an environment observation) to each row's context.

        Args:
            chunks: B token sequences; an empty chunk leaves its row unchanged.
        """
        self._check_rows("chunks", chunks)
        for row, chunk in enumerate(chunks):
            if self._lengths[row] + len(chunk) > self._max_len:
                raise ValueError(
                    f"row {row}: context of {self._lengths[row]} tokens + chunk of {len(chunk)} "
                    f"exceeds max_len={self._max_len}"
                )
        longest = max(len(chunk) for chunk in chunks)
        if longest == 0:
            return
        width = bucket_size(longest, MIN_CHUNK_BUCKET, self._max_len)
        tokens, segment_ids = pad_chunks(chunks, self._padded_batch, width, self._vocab_size)
        self._cache, self._last_hidden = extend(
            self._graphdef, self._state, self._cache, self._last_hidden, tokens, segment_ids
        )
        self._lengths += np.array([len(chunk) for chunk in chunks], np.int64)

    def generate(
        self,
        *,
        max_new_tokens: int | Sequence[int],
        stop_tokens: Collection[int] | Sequence[Collection[int]] = (),
        active: bool | Sequence[bool] = True,
    ) -> list[Generation]:
        """Samples a turn for each active row; the generated tokens join the rows' contexts.

        Each argument takes one value for every row or B per-row values.

        Args:
            max_new_tokens: the budget (>= 0), or B per-row budgets.
            stop_tokens: stop ids (a collection of ints, shared by every row; default none), or B
                collections; a row stops after sampling one (it is kept).
            active: whether rows generate (default all), or B flags; inactive rows generate
                nothing and keep their context.

        Returns:
            B `Generation`s (empty for inactive rows).

        Raises:
            ValueError: an active row has no context yet, or would exceed max_len.
        """
        rows = self._batch_size
        if isinstance(max_new_tokens, (int, np.integer)):
            max_new_tokens = [int(max_new_tokens)] * rows
        if all(isinstance(t, (int, np.integer)) for t in stop_tokens):
            stop_tokens = [tuple(stop_tokens)] * rows
        if isinstance(active, (bool, np.bool_)):
            active = [bool(active)] * rows
        for name, values in (
            ("max_new_tokens", max_new_tokens),
            ("stop_tokens", stop_tokens),
            ("active", active),
        ):
            self._check_rows(name, values)
        budget = np.where(np.asarray(active, bool), np.asarray(max_new_tokens, np.int64), 0)
        for row in np.flatnonzero(budget):
            if budget[row] < 0:
                raise ValueError(f"max_new_tokens[{row}] = {budget[row]}; expected >= 0")
            if self._lengths[row] == 0:
                raise ValueError(f"row {row} is active but has an empty context; prefill it first")
            if self._lengths[row] + budget[row] > self._max_len:
                raise ValueError(
                    f"row {row}: context of {self._lengths[row]} tokens + max_new_tokens "
                    f"{budget[row]} exceeds max_len={self._max_len}"
                )
        if not budget.any():
            return [Generation([], [], False) for _ in range(self._batch_size)]
        padded_budget = np.zeros((self._padded_batch,), np.int32)
        padded_budget[: self._batch_size] = budget
        stops = pad_stop_tokens(stop_tokens, self._padded_batch, self._vocab_size)
        self._key, key = jax.random.split(self._key)
        result = decode(
            self._graphdef,
            self._state,
            self._cache,
            self._last_hidden,
            key,
            padded_budget,
            stops,
            strategy=self._strategy,
            num_steps=bucket_size(int(budget.max()), MIN_STEP_BUCKET, self._max_len),
        )
        self._cache, self._last_hidden = result.cache, result.last_hidden
        tokens, logprobs, lengths, stopped = jax.device_get(
            (result.tokens, result.logprobs, result.lengths, result.stopped)
        )
        self._lengths += lengths[: self._batch_size]
        return [
            Generation(
                tokens[row, : lengths[row]].tolist(),
                logprobs[row, : lengths[row]].tolist(),
                bool(stopped[row]),
            )
            for row in range(self._batch_size)
        ]

    def _reset(self) -> None:
        cache = init_cache(self._config, self._padded_batch, self._max_len)
        last_hidden = jnp.zeros((self._padded_batch, self._hidden_size), jnp.float32)
        self._cache, self._last_hidden = place_like_params(self._state, cache, last_hidden)
        self._lengths = np.zeros((self._batch_size,), np.int64)

    def _check_rows(self, name: str, values: Sequence[object]) -> None:
        if len(values) != self._batch_size:
            raise ValueError(
                f"{name} has {len(values)} rows; expected batch_size={self._batch_size}"
            )
