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

from rljax.models import KVCache
from rljax.sampling.placement import Placement
from rljax.sampling.sampler import bucket_size, pad_chunks, pad_stop_tokens
from rljax.sampling.strategies import Strategy

# Chunks (prompts, observations) are padded to a power of two of at least 4 tokens: a short
# prompt prefilled at width 16 cost 2.7x the CPU time of width 4 (0.040 vs 0.015 CPU-s for 64
# 4-token prompts on the RL-step benchmark's model), for one or two more compiled widths.
MIN_CHUNK_BUCKET = 4
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


class DecodeSession:
    """Batch of B independent conversations decoded with one KV cache.

    The model's parameters are captured at construction (`nnx.split`); build a new session after
    updating the model. Compiled functions are shared between sessions with the same model graph,
    strategy and shape buckets. A model sharded on a mesh (`rljax.parallel.shard_model`) decodes on
    that mesh with explicit shardings, rows split over the data-parallel axes when they divide them
    (`rljax.sampling.placement`).

    In a multi-process run every call is a collective that all processes make together. Without
    `shard_rows` each process passes the whole batch (the same values everywhere). With
    `shard_rows`, the B rows of each process are its block of a global batch of B x process count
    rows (process i: rows [i * B, (i + 1) * B), `rljax.parallel.multihost.process_block`): each
    process runs the environments of its own rows only, and the compiled prefill and decode see
    the global batch.

    Args:
        model: the decoder.
        batch_size: B, the number of rows (conversations).
        max_len: the cache length; no row's context may exceed it.
        strategy: sampling strategy, e.g. `Temperature(1.0)`.
        key: PRNG key; each `generate` call consumes a fresh split of it (the same on every
            process).
        shard_rows: the rows are this process's block of a batch split over the processes.
    """

    def __init__(
        self,
        model: nnx.Module,
        *,
        batch_size: int,
        max_len: int,
        strategy: Strategy,
        key: jax.Array,
        shard_rows: bool = False,
    ) -> None:
        if batch_size < 1 or max_len < 1:
            raise ValueError(f"batch_size={batch_size} and max_len={max_len} must both be positive")
        self._graphdef, self._state = nnx.split(model)
        self._config = model.config
        self._hidden_size, self._vocab_size = jnp.shape(model.unembedding)
        self._batch_size = batch_size
        # A batch split over processes is not padded: every process's block must be whole rows.
        self._padded_batch = batch_size if shard_rows else bucket_size(batch_size, 1)
        self._placement = Placement(self._state, self._padded_batch, shard_rows=shard_rows)
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
        """The KV cache of the padded (global) batch (rows >= batch_size are padding); read-only."""
        return self._cache

    @property
    def batch_size(self) -> int:
        """B, the number of rows."""
        return self._batch_size

    @property
    def max_len(self) -> int:
        """The cache length."""
        return self._max_len

    def any_active(self, active: Sequence[bool]) -> bool:
        """Whether any row of the batch is active, given `active` of this process's rows (with
        `shard_rows`, a collective over the processes).

        Args:
            active: B flags.
        """
        self._check_rows("active", active)
        return bool(self._placement.agree([int(any(active))])[0])

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
        (longest,) = self._placement.agree([max(len(chunk) for chunk in chunks)])
        if longest == 0:
            return
        width = bucket_size(longest, MIN_CHUNK_BUCKET, self._max_len)
        tokens, segment_ids = pad_chunks(chunks, self._padded_batch, width, self._vocab_size)
        self._cache, self._last_hidden = self._placement.extend(
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
        stops = pad_stop_tokens(stop_tokens, self._padded_batch, self._vocab_size)
        most, stop_width = self._placement.agree([int(budget.max()), stops.shape[1]])
        if most == 0:
            return [Generation([], [], False) for _ in range(self._batch_size)]
        if stop_width != stops.shape[1]:  # another process's rows have larger stop sets
            stops = pad_stop_tokens(stop_tokens, self._padded_batch, self._vocab_size, stop_width)
        padded_budget = np.zeros((self._padded_batch,), np.int32)
        padded_budget[: self._batch_size] = budget
        self._key, key = jax.random.split(self._key)
        result = self._placement.decode(
            self._graphdef,
            self._state,
            self._cache,
            self._last_hidden,
            key,
            padded_budget,
            stops,
            strategy=self._strategy,
            steps=bucket_size(most, MIN_STEP_BUCKET, self._max_len),
        )
        self._cache, self._last_hidden = result.cache, result.last_hidden
        tokens, logprobs, lengths, stopped = (
            self._placement.read(x)
            for x in (result.tokens, result.logprobs, result.lengths, result.stopped)
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
        self._cache, self._last_hidden = self._placement.init(self._config, self._max_len)
        self._lengths = np.zeros((self._batch_size,), np.int64)

    def _check_rows(self, name: str, values: Sequence[object]) -> None:
        if len(values) != self._batch_size:
            raise ValueError(
                f"{name} has {len(values)} rows; expected batch_size={self._batch_size}"
            )
