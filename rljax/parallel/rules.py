"""Logical-axis partition rules: parameter metadata names -> mesh axes -> `NamedSharding`s."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rljax.parallel import multihost
from rljax.parallel.mesh import DATA_AXES

LogicalRules = Sequence[tuple[str, str | tuple[str, ...] | None]]

# Logical name -> mesh axis. Weights are split over "fsdp" along the model dimension and over
# "tensor" along heads / MLP / vocabulary (Megatron-style); "batch" is the activations' leading
# dimension, split over both data-parallel axes.
DEFAULT_RULES: tuple[tuple[str, str | tuple[str, ...] | None], ...] = (
    ("batch", DATA_AXES),
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("mlp", "tensor"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("layers", None),
    ("norm", None),
)


def _spec_axes(entry: Any) -> tuple[Any, ...]:
    if entry is None:
        return ()
    return tuple(entry) if isinstance(entry, tuple) else (entry,)


def _path_name(path: tuple[Any, ...]) -> str:
    """ "layers/0/attn/q_proj" from a pytree key path (the Variable's trailing `.value` dropped)."""
    names = [
        str(getattr(key, "key", getattr(key, "name", getattr(key, "idx", key)))) for key in path
    ]
    if names and names[-1] == "value":
        names = names[:-1]
    return "/".join(names)


def _check_spec(path: str, shape: tuple[int, ...], spec: PartitionSpec, mesh: Mesh) -> None:
    if len(spec) > len(shape):
        raise ValueError(
            f"parameter {path}: partition spec {spec} has more entries than its shape {shape}"
        )
    used: list[str] = []
    for dim, (size, entry) in enumerate(zip(shape, spec)):
        axes = _spec_axes(entry)
        for axis in axes:
            if axis not in mesh.shape:
                raise ValueError(
                    f"parameter {path}: dimension {dim} is annotated {axis!r}, which is neither a mesh axis "
                    f"{tuple(mesh.shape)} nor a logical name covered by the partition rules"
                )
        if axis_dup := sorted(set(axes) & set(used)):
            raise ValueError(
                f"parameter {path}: mesh axes {axis_dup} are used by more than one dimension ({spec})"
            )
        used.extend(axes)
        ways = int(np.prod([mesh.shape[a] for a in axes])) if axes else 1
        if size % ways:
            raise ValueError(
                f"parameter {path}: dimension {dim} of size {size} is split over mesh axes {axes} "
                f"({ways} ways), which does not divide it; change the mesh or the rules"
            )


def logical_to_mesh_sharding(
    abstract_state: nnx.State, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES
) -> nnx.State:
    """Maps an nnx state's logical partitioning metadata to `NamedSharding`s on `mesh`.

    The logical names a parameter carries (its `out_sharding` metadata, e.g. ("embed", "mlp")) are
    translated by `rules` with flax's own logical-axis machinery (`nnx.logical_axis_rules` +
    `nnx.get_partition_spec`); parameters without metadata are replicated.

    Args:
        abstract_state: an nnx `State` (concrete or from `nnx.eval_shape`) whose leaves have shapes.
        mesh: the mesh to place on (axes "data", "fsdp", "tensor").
        rules: (logical name, mesh axis or tuple of axes or None) pairs.

    Returns:
        A `State` of the same structure holding one `NamedSharding` per array.

    Raises:
        ValueError: a logical name has no rule, a mesh axis is used twice in one parameter, or a
            dimension is not divisible by the number of devices it is split over.
    """
    with nnx.logical_axis_rules(tuple(rules)):
        specs = nnx.get_partition_spec(abstract_state)

    def to_sharding(path: tuple[Any, ...], spec: PartitionSpec, leaf: Any) -> NamedSharding:
        _check_spec(_path_name(path), tuple(leaf.shape), spec, mesh)
        return NamedSharding(mesh, spec)

    return jax.tree_util.tree_map_with_path(
        to_sharding, specs, abstract_state, is_leaf=lambda x: isinstance(x, PartitionSpec)
    )


def shard_model(model: nnx.Module, mesh: Mesh, rules: LogicalRules = DEFAULT_RULES) -> nnx.Module:
    """Places every array of `model` on `mesh` as its logical metadata and `rules` prescribe.

    The model is updated in place (and returned for chaining). In a multi-process run every process
    must hold the same values (e.g. built from the same seed or loaded from the same checkpoint).

    Args:
        model: an NNX module whose parameters carry logical partitioning metadata.
        mesh: the target mesh.
        rules: logical-name rules, as in `logical_to_mesh_sharding`.

    Returns:
        `model`, with its state replaced by sharded arrays.
    """
    state = nnx.state(model)
    shardings = logical_to_mesh_sharding(state, mesh, rules)
    nnx.update(model, jax.device_put(state, shardings))
    return model


def data_parallel_size(mesh: Mesh) -> int:
    """Number of ways a batch is split: the product of the "data" and "fsdp" axis sizes."""
    return int(np.prod([mesh.shape[axis] for axis in DATA_AXES]))


def check_batch_size(batch_size: int, mesh: Mesh) -> None:
    """Raises a ValueError unless `batch_size` divides evenly over the mesh's data-parallel axes.

    Args:
        batch_size: the global batch dimension (rows over all processes).
        mesh: mesh with axes "data" and "fsdp".
    """
    ways = data_parallel_size(mesh)
    if batch_size % ways:
        raise ValueError(
            f"batch size {batch_size} is not divisible by the data-parallel size {ways} "
            f"(mesh data={mesh.shape['data']} x fsdp={mesh.shape['fsdp']})"
        )


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Sharding of a batch-major array: leading dimension over ("data", "fsdp"), the rest replicated."""
    return NamedSharding(mesh, PartitionSpec(DATA_AXES))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Assembles global batch-major arrays from each process's local rows.

    With one process this is a `device_put`; with several, process i contributes its own contiguous
    slice of rows (`jax.make_array_from_process_local_data`).

    Args:
        batch: a pytree of host arrays [B_local, ...] (the same B_local in every leaf).
        mesh: the mesh; the global batch B_local * process_count must divide over its data axes.

    Returns:
        The same pytree of global `jax.Array`s [B, ...] sharded by `batch_sharding(mesh)`.
    """
    sharding = batch_sharding(mesh)

    def place(leaf: Any) -> jax.Array:
        leaf = np.asarray(leaf)
        if leaf.ndim == 0:
            raise ValueError(
                f"shard_batch: leaves must have a batch dimension, got a scalar {leaf!r}"
            )
        check_batch_size(leaf.shape[0] * jax.process_count(), mesh)
        return jax.make_array_from_process_local_data(sharding, leaf)

    return jax.tree.map(place, batch)


def place_batch(batch: Any, mesh: Mesh) -> Any:
    """Global arrays [B, ...] sharded by `batch_sharding(mesh)` from a batch every process holds
    whole (host arrays with the same values on every process, or global arrays of any sharding).

    Unlike `shard_batch`, which assembles the global batch from each process's own rows, every
    process passes all B rows here and keeps only the shards its devices hold. None leaves (absent
    optional fields) stay None.

    Args:
        batch: a pytree of arrays [B, ...] (B divisible over the mesh's data axes).
        mesh: the mesh.

    Returns:
        The same pytree of global `jax.Array`s.
    """
    sharding = batch_sharding(mesh)

    def place(leaf: Any) -> jax.Array:
        if isinstance(leaf, jax.Array) and leaf.sharding == sharding:
            return leaf
        if np.ndim(leaf) == 0:
            raise ValueError(f"place_batch: leaves must have a batch dimension, got {leaf!r}")
        check_batch_size(np.shape(leaf)[0], mesh)
        return multihost.place(leaf, sharding)

    return jax.tree.map(place, batch)
