"""Where a decode session's arrays live: one device, or the mesh of sharded parameters.

On a mesh, the session's cache and per-row inputs are global arrays whose rows are split over the
data-parallel axes ("data", "fsdp") when the batch divides them (replicated otherwise), and prefill
and decode are `jax.jit`s with explicit in/out shardings. In a multi-process run the rows can also
be split over the processes (`shard_rows`): each process passes only its own block of rows, the
global arrays are assembled from those blocks (`jax.make_array_from_process_local_data`), each
process reads back only its rows, and host-side choices that shape a compiled call (a chunk width,
a decode length) are agreed between the processes first. Without `shard_rows`, every process
passes the whole batch (the same values) and reads the whole batch back.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rljax.models import KVCache, init_cache
from rljax.parallel import DATA_AXES, data_parallel_size, multihost
from rljax.sampling import sampler
from rljax.sampling.strategies import Strategy


def params_mesh(state: nnx.State) -> Mesh | None:
    """The one mesh the model's arrays are sharded on (None for an unsharded model)."""
    meshes = {
        leaf.sharding.mesh
        for leaf in jax.tree.leaves(state)
        if isinstance(getattr(leaf, "sharding", None), NamedSharding)
    }
    if len(meshes) > 1:
        raise ValueError(
            f"the model's parameters live on {len(meshes)} different meshes; expected one"
        )
    return meshes.pop() if meshes else None


@dataclasses.dataclass(frozen=True)
class _Shardings:
    """Hashable shardings of one compiled prefill/decode (the key of the jit caches below)."""

    state_leaves: tuple[NamedSharding, ...]
    state_treedef: Any
    cache: KVCache
    rows: NamedSharding
    replicated: NamedSharding

    @property
    def state(self) -> Any:
        return jax.tree.unflatten(self.state_treedef, self.state_leaves)


@functools.lru_cache(maxsize=32)
def _sharded_extend(graphdef: nnx.GraphDef, sh: _Shardings):
    return jax.jit(
        functools.partial(sampler.extend_fn, graphdef),
        in_shardings=(sh.state, sh.cache, sh.rows, sh.rows, sh.rows),
        out_shardings=(sh.cache, sh.rows),
        donate_argnums=(1, 2),
    )


@functools.lru_cache(maxsize=64)
def _sharded_decode(graphdef: nnx.GraphDef, sh: _Shardings, strategy: Strategy, num_steps: int):
    rows = sh.rows
    return jax.jit(
        functools.partial(sampler.decode_fn, graphdef, strategy=strategy, num_steps=num_steps),
        in_shardings=(sh.state, sh.cache, rows, sh.replicated, rows, rows),
        out_shardings=sampler.DecodeResult(rows, rows, rows, rows, sh.cache, rows),
        donate_argnums=(1, 2),
    )


@functools.lru_cache(maxsize=32)
def _sharded_init(config: Any, batch: int, max_len: int, sh: _Shardings):
    def init():
        cache = init_cache(config, batch, max_len)
        return cache, jnp.zeros((batch, config.hidden_size), jnp.float32)

    return jax.jit(init, out_shardings=(sh.cache, sh.rows))


class Placement:
    """The device side of a `DecodeSession` of `local_rows` rows (see the module docstring).

    Args:
        state: the model's arrays (`nnx.split(model)[1]`).
        local_rows: this process's padded rows (the whole padded batch without `shard_rows`).
        shard_rows: the rows are this process's block of a batch split over the processes.
    """

    def __init__(self, state: nnx.State, local_rows: int, *, shard_rows: bool):
        self.mesh = params_mesh(state)
        self.split = shard_rows and jax.process_count() > 1
        self.global_rows = local_rows * (jax.process_count() if self.split else 1)
        self._sh = None
        if self.mesh is None:
            if self.split:
                raise ValueError("shard_rows needs a model whose parameters are on a global mesh")
            return
        divides = self.global_rows % data_parallel_size(self.mesh) == 0
        if self.split:
            block = multihost.process_block(self.global_rows, self.mesh)
            if not divides or block is None:
                raise ValueError(
                    f"shard_rows: {self.global_rows} rows ({local_rows} per process) must split "
                    f"over the processes and the data-parallel axes of mesh {dict(self.mesh.shape)}"
                )
        rows = PartitionSpec(DATA_AXES if divides else None)
        by_row = NamedSharding(self.mesh, rows)
        kv = NamedSharding(self.mesh, PartitionSpec(None, *rows))
        replicated = NamedSharding(self.mesh, PartitionSpec())

        def own(leaf):
            sharding = getattr(leaf, "sharding", None)
            if isinstance(sharding, NamedSharding) and sharding.mesh == self.mesh:
                return sharding
            return replicated

        leaves, treedef = jax.tree.flatten(jax.tree.map(own, state))
        cache = KVCache(k=kv, v=kv, segment_ids=by_row, end=by_row, next_position=by_row)
        self._sh = _Shardings(tuple(leaves), treedef, cache, by_row, replicated)

    def init(self, config: Any, max_len: int) -> tuple[KVCache, jax.Array]:
        """An empty cache and last hidden state [rows, H] for the global batch, placed."""
        if self._sh is None:
            cache = init_cache(config, self.global_rows, max_len)
            return cache, jnp.zeros((self.global_rows, config.hidden_size), jnp.float32)
        return self.init_fn(config, max_len)()

    def init_fn(self, config: Any, max_len: int):
        """The jitted `() -> (cache, last_hidden)` of a mesh placement (what `init` calls)."""
        return _sharded_init(config, self.global_rows, max_len, self._mesh_shardings())

    def extend_fn(self, graphdef: nnx.GraphDef):
        """The jitted `sampler.extend_fn(graphdef, ...)` of a mesh placement, with explicit in/out
        shardings (what `extend` calls; `jax.eval_shape` traces it on an abstract mesh)."""
        return _sharded_extend(graphdef, self._mesh_shardings())

    def decode_fn(self, graphdef: nnx.GraphDef, strategy: Strategy, steps: int):
        """The jitted `sampler.decode_fn` of a mesh placement for `steps` decode steps."""
        return _sharded_decode(graphdef, self._mesh_shardings(), strategy, steps)

    def _mesh_shardings(self) -> _Shardings:
        if self._sh is None:
            raise ValueError("the model's parameters are on no mesh: there are no shardings")
        return self._sh

    def agree(self, values: list[int]) -> list[int]:
        """Element-wise maxima over the processes that share the rows (identity otherwise)."""
        return multihost.global_max(values) if self.split else [int(v) for v in values]

    def rows(self, host: np.ndarray) -> Any:
        """A row-major host array of this process's rows as the global array the jits read."""
        if self._sh is None:
            return host
        if self.split:
            shape = (self.global_rows, *host.shape[1:])
            return jax.make_array_from_process_local_data(self._sh.rows, host, shape)
        return multihost.place(host, self._sh.rows)

    def read(self, array: jax.Array) -> np.ndarray:
        """This process's rows of a row-major global output, on the host."""
        if self.split:
            return multihost.local_rows(array)
        return multihost.to_host(array)

    def key(self, key: jax.Array) -> jax.Array:
        """A PRNG key placed for the jits (replicated on the mesh)."""
        return key if self._sh is None else multihost.place(key, self._sh.replicated)

    def extend(self, graphdef, state, cache, last_hidden, tokens, segment_ids):
        """`sampler.extend` with this placement's shardings."""
        if self._sh is None:
            return sampler.extend(graphdef, state, cache, last_hidden, tokens, segment_ids)
        fn = self.extend_fn(graphdef)
        return fn(state, cache, last_hidden, self.rows(tokens), self.rows(segment_ids))

    def decode(self, graphdef, state, cache, last_hidden, key, budget, stops, *, strategy, steps):
        """`sampler.decode` with this placement's shardings."""
        if self._sh is None:
            return sampler.decode(
                graphdef,
                state,
                cache,
                last_hidden,
                key,
                budget,
                stops,
                strategy=strategy,
                num_steps=steps,
            )
        fn = self.decode_fn(graphdef, strategy, steps)
        return fn(state, cache, last_hidden, self.key(key), self.rows(budget), self.rows(stops))
