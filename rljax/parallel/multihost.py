"""What every process of a multi-controller run shares: objects, agreements and its rows.

In a multi-process run (one process per host, `rljax.parallel.initialize`) every process runs the
same program. Host-side values that must agree (the config, a chunk width, the stop of a decode
loop) are exchanged here; host-side objects that each process produced for its own rows (rollout
records, prompts) are gathered here, so that statistics spanning the batch are computed on the
same global data by every process. With one process every function is the identity.
"""

from __future__ import annotations

import hashlib
import pickle
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rljax.parallel.mesh import DATA_AXES


def is_primary() -> bool:
    """True on process 0, the one that writes metrics, evaluations, reports and run metadata."""
    return jax.process_index() == 0


def allgather_objects(obj: Any) -> list[Any]:
    """Every process's `obj` (any picklable value), in process order, on every process.

    A collective: every process must call it, in the same order.
    """
    if jax.process_count() == 1:
        return [obj]
    payload = np.frombuffer(pickle.dumps(obj), np.uint8)
    sizes = multihost_utils.process_allgather(np.asarray([payload.size], np.int64))
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: payload.size] = payload
    gathered = multihost_utils.process_allgather(padded)
    return [
        pickle.loads(gathered[i, : int(sizes.reshape(-1)[i])].tobytes())
        for i in range(jax.process_count())
    ]


def global_max(values: Sequence[int]) -> list[int]:
    """The element-wise maximum of integer `values` over all processes (a collective)."""
    if jax.process_count() == 1:
        return [int(v) for v in values]
    gathered = multihost_utils.process_allgather(np.asarray(values, np.int64))
    return [int(v) for v in np.asarray(gathered).reshape(jax.process_count(), -1).max(axis=0)]


def sync(name: str) -> None:
    """Waits until every process reaches this point (a barrier; a no-op with one process)."""
    if jax.process_count() > 1:
        multihost_utils.sync_global_devices(name)


def fingerprint(text: str) -> str:
    """A short SHA-256 hex digest of `text` (what processes compare instead of whole configs)."""
    return hashlib.sha256(text.encode()).hexdigest()[:16]


class ConfigMismatchError(RuntimeError):
    """The processes of one run were started with different configurations."""


def check_same_config(config_json: str) -> str:
    """Refuses to run unless every process resolved the same config; returns its fingerprint.

    Args:
        config_json: this process's resolved config as canonical JSON.

    Raises:
        ConfigMismatchError: naming the processes whose config hash differs from process 0's.
    """
    mine = fingerprint(config_json)
    hashes = allgather_objects(mine)
    differing = [i for i, h in enumerate(hashes) if h != hashes[0]]
    if differing:
        listing = ", ".join(f"process {i}: {h}" for i, h in enumerate(hashes))
        raise ConfigMismatchError(
            f"the processes of this run resolved different configs (hash of the resolved config "
            f"per process: {listing}); processes {differing} differ from process 0. Start every "
            "process with the same preset and --set overrides."
        )
    return mine


def process_block(rows: int, mesh: Mesh) -> slice | None:
    """The contiguous rows of a [rows, ...] batch that this process's devices hold, when the batch
    is split over the processes; None when it is not (one process, or rows that do not divide).

    The batch is laid out by `rules.batch_sharding(mesh)` (rows over the data axes). It is split over the processes when `rows`
    divides over the mesh's data-parallel axes and the processes' devices hold disjoint blocks of
    rows in process order (process i holds rows [i * rows / n, (i + 1) * rows / n)), as the "auto"
    mesh and any mesh whose data axes span the hosts do.

    Raises:
        ValueError: the rows split over the processes, but not as contiguous blocks in process order
            (a mesh whose device order interleaves the hosts).
    """
    count = jax.process_count()
    if count == 1:
        return None
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXES))
    try:
        indices = sharding.addressable_devices_indices_map((rows,))
    except ValueError:  # the rows do not divide over the data axes
        return None
    starts = sorted({index[0].indices(rows)[:2] for index in indices.values()})
    covered = sum(stop - start for start, stop in starts)
    if covered == rows:  # every process holds every row: the data axes stay inside a host
        return None
    block = rows // count
    want = slice(jax.process_index() * block, (jax.process_index() + 1) * block)
    contiguous = all(a[1] == b[0] for a, b in zip(starts, starts[1:]))
    if covered != block or not contiguous or starts[0][0] != want.start:
        raise ValueError(
            f"process {jax.process_index()} holds rows {starts} of a batch of {rows}; expected the "
            f"block [{want.start}, {want.stop}) (mesh {dict(mesh.shape)} must put the hosts in "
            "order along its data axes)"
        )
    return want


def place(value: Any, sharding: NamedSharding) -> jax.Array:
    """`value` as a global array with `sharding`: a host array (or a local `jax.Array`, PRNG keys
    included) that every process holds whole, with the same contents, or a global array (resharded).

    Each process transfers only the shards its devices hold (`jax.make_array_from_callback`); the
    contents are not compared across processes.
    """
    if isinstance(value, jax.Array):
        if not value.is_fully_addressable:
            return value if value.sharding == sharding else jax.device_put(value, sharding)
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            data = place(jax.random.key_data(value), sharding)
            return jax.random.wrap_key_data(data, impl=jax.random.key_impl(value))
    if jax.process_count() == 1:
        return jax.device_put(value, sharding)
    host = np.asarray(value)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def local_rows(array: jax.Array) -> np.ndarray:
    """This process's rows of a row-sharded global array, as a host array in row order."""
    shards = {}
    for shard in array.addressable_shards:
        start = (shard.index[0].start or 0) if shard.index else 0
        shards.setdefault(start, shard.data)
    return np.concatenate([np.asarray(shards[start]) for start in sorted(shards)])


def to_host(array: jax.Array) -> np.ndarray:
    """The whole value of a global array on every process (an allgather when it spans processes)."""
    if array.is_fully_addressable or array.is_fully_replicated:
        return np.asarray(jax.device_get(array))
    return np.asarray(multihost_utils.process_allgather(array, tiled=True))
