"""The tiny decoder sharded over 8 fake CPU devices computes what one device computes."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from sharded_loss import TOKENS, mean_logprob_loss, tiny_config

from rljax.models import Decoder
from rljax.parallel import (
    batch_sharding,
    logical_to_mesh_sharding,
    make_mesh,
    shard_batch,
    shard_model,
)

# expected per-device shard shapes of two parameters: embedding [V=64, H=128] ("vocab", "embed") and
# layer-0 q_proj [H=128, N=4, D=32] ("embed", "heads", "head_dim"), under DEFAULT_RULES
MESHES = {
    "data=8": dict(embedding=(64, 128), q_proj=(128, 4, 32)),
    "fsdp=4,tensor=2": dict(embedding=(32, 32), q_proj=(32, 2, 32)),
    "data=2,fsdp=2,tensor=2": dict(embedding=(32, 64), q_proj=(64, 2, 32)),
}


def _loss_and_grads(graphdef):
    return jax.value_and_grad(
        lambda state, tokens: mean_logprob_loss(nnx.merge(graphdef, state), tokens)
    )


@pytest.fixture(scope="module")
def single_device():
    """Logits, loss and gradients of the unsharded model on one device."""
    graphdef, state = nnx.split(Decoder(tiny_config(), rngs=nnx.Rngs(0)))
    logits = jax.jit(lambda s, t: nnx.merge(graphdef, s).logits(t))(state, TOKENS)
    loss, grads = jax.jit(_loss_and_grads(graphdef))(state, TOKENS)
    assert len(logits.sharding.device_set) == 1
    return np.asarray(logits), float(loss), jax.tree.map(np.asarray, grads)


@pytest.mark.parametrize(
    "spec",
    # fsdp=4,tensor=2 is slow: the mixed mesh covers both of its axes in the default suite.
    [pytest.param(s, marks=pytest.mark.slow) if s == "fsdp=4,tensor=2" else s for s in MESHES],
)
def test_sharded_forward_and_gradient_equal_single_device(spec, single_device):
    want_logits, want_loss, want_grads = single_device
    mesh = make_mesh(spec)
    model = shard_model(Decoder(tiny_config(), rngs=nnx.Rngs(0)), mesh)
    graphdef, state = nnx.split(model)

    embedding, q_proj = model.embedding[...], model.layers[0].attn.q_proj[...]
    assert len(embedding.sharding.device_set) == 8
    assert {s.data.shape for s in embedding.addressable_shards} == {MESHES[spec]["embedding"]}
    assert {s.data.shape for s in q_proj.addressable_shards} == {MESHES[spec]["q_proj"]}

    shardings = logical_to_mesh_sharding(state, mesh)
    rows = batch_sharding(mesh)
    tokens = shard_batch(TOKENS, mesh)
    assert {s.data.shape for s in tokens.addressable_shards} == {
        (8 // (mesh.shape["data"] * mesh.shape["fsdp"]), 16)
    }
    logits = jax.jit(
        lambda s, t: nnx.merge(graphdef, s).logits(t),
        in_shardings=(shardings, rows),
        out_shardings=rows,
    )(state, tokens)
    np.testing.assert_allclose(np.asarray(logits), want_logits, atol=2e-5)

    step = jax.jit(
        _loss_and_grads(graphdef),
        in_shardings=(shardings, rows),
        out_shardings=(NamedSharding(mesh, P()), shardings),
    )
    loss, grads = step(state, tokens)
    np.testing.assert_allclose(float(loss), want_loss, rtol=1e-5)
    assert grads["embedding"].get_value().sharding.spec == embedding.sharding.spec
    jax.tree.map(
        lambda got, want: np.testing.assert_allclose(np.asarray(got), want, atol=1e-5),
        grads,
        want_grads,
    )
