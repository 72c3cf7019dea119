"""Partition rules on hand-annotated toy modules: specs, placement, errors, batch helpers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import PartitionSpec as P

from rljax.parallel import (
    DEFAULT_RULES,
    batch_sharding,
    check_batch_size,
    data_parallel_size,
    logical_to_mesh_sharding,
    make_mesh,
    shard_batch,
    shard_model,
)


def annotated(value, axes):
    return nnx.Param(value, out_sharding=axes, eager_sharding=False)


class Toy(nnx.Module):
    def __init__(self, dims=(8, 12)):
        self.kernel = annotated(
            jnp.arange(dims[0] * dims[1], dtype=jnp.float32).reshape(dims), ("embed", "mlp")
        )
        self.scale = annotated(jnp.ones((dims[0],)), ("norm",))
        self.plain = nnx.Param(jnp.zeros((3,)))


def test_default_rules_cover_the_model_names():
    names = {name for name, _ in DEFAULT_RULES}
    assert {"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "layers", "norm"} <= names


def test_specs_follow_the_rules():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    shardings = logical_to_mesh_sharding(nnx.state(Toy()), mesh)
    assert shardings["kernel"].get_value().spec == P("fsdp", "tensor")
    assert shardings["scale"].get_value().spec == P(None)
    assert shardings["plain"].get_value().spec == P()
    custom = (("embed", None), ("mlp", ("fsdp", "tensor")), ("norm", "data"))
    shardings = logical_to_mesh_sharding(nnx.state(Toy()), mesh, custom)
    assert shardings["kernel"].get_value().spec == P(None, ("fsdp", "tensor"))
    assert shardings["scale"].get_value().spec == P("data")


def test_abstract_state_is_enough():
    mesh = make_mesh("fsdp=4,tensor=2")
    abstract = nnx.state(nnx.eval_shape(Toy))
    assert logical_to_mesh_sharding(abstract, mesh)["kernel"].get_value().spec == P(
        "fsdp", "tensor"
    )


def test_shard_model_distributes_and_keeps_values():
    mesh = make_mesh("fsdp=4,tensor=2")
    model = shard_model(Toy(), mesh)
    kernel = model.kernel[...]
    assert kernel.sharding.spec == P("fsdp", "tensor") and len(kernel.sharding.device_set) == 8
    assert {shard.data.shape for shard in kernel.addressable_shards} == {(2, 6)}
    np.testing.assert_array_equal(np.asarray(kernel), np.arange(96).reshape(8, 12))


@pytest.mark.parametrize(
    "rules,dims,match",
    [
        (
            (("embed", "fsdp"), ("norm", None)),
            (8, 12),
            r"parameter kernel: dimension 1 is annotated 'mlp'.*nor a logical name covered by the partition rules",
        ),
        (
            DEFAULT_RULES,
            (6, 12),
            r"parameter kernel: dimension 0 of size 6 is split over mesh axes \('fsdp',\) \(4 ways\)",
        ),
        (
            (("embed", "fsdp"), ("mlp", "fsdp"), ("norm", None)),
            (8, 12),
            r"mesh axes \['fsdp'\] are used by more than one",
        ),
    ],
)
def test_rule_errors_name_the_parameter(rules, dims, match):
    mesh = make_mesh("fsdp=4,tensor=2")
    with pytest.raises(ValueError, match=match):
        logical_to_mesh_sharding(nnx.state(Toy(dims)), mesh, rules)


def test_batch_size_must_divide_the_data_axes():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    assert data_parallel_size(mesh) == 4
    check_batch_size(8, mesh)
    expected = r"batch size 6 is not divisible by the data-parallel size 4 \(mesh data=2 x fsdp=2\)"
    with pytest.raises(ValueError, match=expected):
        check_batch_size(6, mesh)


def test_shard_batch_splits_rows_over_data_axes():
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    batch = {"tokens": np.arange(32).reshape(8, 4), "mask": np.ones((8,), bool)}
    placed = shard_batch(batch, mesh)
    assert placed["tokens"].sharding == batch_sharding(mesh)
    np.testing.assert_array_equal(np.asarray(placed["tokens"]), batch["tokens"])
    assert {shard.data.shape for shard in placed["tokens"].addressable_shards} == {(2, 4)}
    with pytest.raises(ValueError, match="batch size 6 is not divisible"):
        shard_batch(np.zeros((6, 2)), mesh)
    with pytest.raises(ValueError, match="scalar"):
        shard_batch(np.float32(1.0), mesh)


def test_jax_arrays_in_a_sharded_jit_keep_the_rule_shardings():
    mesh = make_mesh("fsdp=4,tensor=2")
    model = shard_model(Toy(), mesh)
    graphdef, state = nnx.split(model)
    shardings = logical_to_mesh_sharding(state, mesh)
    double = jax.jit(
        lambda s: jax.tree.map(lambda x: 2 * x, s),
        in_shardings=(shardings,),
        out_shardings=shardings,
    )
    assert double(state)["kernel"][...].sharding.spec == P("fsdp", "tensor")
