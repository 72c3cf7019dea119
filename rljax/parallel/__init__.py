"""Meshes, logical partition rules and multi-host start-up."""

from rljax.parallel.distributed import initialize
from rljax.parallel.mesh import DATA_AXES, MESH_AXES, auto_mesh_shape, make_mesh, parse_mesh_spec
from rljax.parallel.rules import (
    DEFAULT_RULES,
    batch_sharding,
    check_batch_size,
    data_parallel_size,
    logical_to_mesh_sharding,
    place_batch,
    shard_batch,
    shard_model,
)

__all__ = [
    "DATA_AXES",
    "DEFAULT_RULES",
    "MESH_AXES",
    "auto_mesh_shape",
    "batch_sharding",
    "check_batch_size",
    "data_parallel_size",
    "initialize",
    "logical_to_mesh_sharding",
    "make_mesh",
    "parse_mesh_spec",
    "place_batch",
    "shard_batch",
    "shard_model",
]
