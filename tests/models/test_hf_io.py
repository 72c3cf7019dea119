"""save_hf -> load_hf round trips bit-exactly; bad checkpoints fail naming the tensor; mesh placement."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from safetensors.numpy import load_file, save_file

from rljax.models import load_hf, save_hf


def _params(model) -> dict:
    return {
        path: np.asarray(var.get_value())
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param))
    }


def _assert_same_params(a, b):
    pa, pb = _params(a), _params(b)
    assert pa.keys() == pb.keys()
    for path in pa:
        assert pa[path].dtype == pb[path].dtype, path
        np.testing.assert_array_equal(pa[path], pb[path], err_msg=str(path))


@pytest.mark.parametrize(
    "overrides",
    [
        dict(),
        dict(family="qwen2", qkv_bias=True, qk_norm=False, tie_embeddings=False),
        dict(
            family="llama",
            qk_norm=False,
            tie_embeddings=False,
            rms_norm_eps=1e-5,
            rope_scaling=dict(
                factor=8.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=32,
            ),
        ),
    ],
    ids=["qwen3-tied", "qwen2", "llama3"],
)
def test_export_then_import_is_bit_exact(make_config, make_model, tmp_path, overrides):
    config = make_config(**overrides)
    model = make_model(config)
    save_hf(model, tmp_path)
    loaded = load_hf(tmp_path)
    assert loaded.config == config
    _assert_same_params(loaded, model)


def test_sharded_bfloat16_scanned_round_trip(make_config, make_model, tmp_path):
    config = make_config(
        family="qwen2",
        qkv_bias=True,
        qk_norm=False,
        tie_embeddings=False,
        dtype="bfloat16",
        param_dtype="bfloat16",
        scan_layers=True,
    )
    model = make_model(config)
    save_hf(model, tmp_path, max_shard_bytes=20_000)
    index = json.loads((tmp_path / "model.safetensors.index.json").read_text())
    assert len(set(index["weight_map"].values())) > 1
    assert json.loads((tmp_path / "config.json").read_text())["dtype"] == "bfloat16"
    _assert_same_params(load_hf(tmp_path, dtype="bfloat16", scan_layers=True), model)
    # The same checkpoint loads unscanned with layer i of every stacked parameter as its own module.
    plain = load_hf(tmp_path, dtype="bfloat16")
    np.testing.assert_array_equal(
        plain.layers[1].attn.q_bias[...], model.layers.attn.q_bias[...][1]
    )


def test_tied_checkpoint_with_an_lm_head_copy_loads(make_config, make_model, tmp_path):
    model = make_model(make_config())
    save_hf(model, tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    tensors["lm_head.weight"] = tensors["model.embed_tokens.weight"]
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    _assert_same_params(load_hf(tmp_path), model)
    tensors["lm_head.weight"] = tensors["lm_head.weight"] + 1
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match="lm_head.weight differs"):
        load_hf(tmp_path)


@pytest.mark.parametrize(
    "edit, message",
    [
        (
            lambda t: t.pop("model.layers.1.mlp.up_proj.weight"),
            "missing tensor 'model.layers.1.mlp.up_proj.weight'",
        ),
        (
            lambda t: t.update(
                {"model.layers.0.self_attn.k_proj.weight": np.zeros((16, 64), np.float32)}
            ),
            r"'model.layers.0.self_attn.k_proj.weight' has shape \(16, 64\) .* expects \(32, 64\)",
        ),
        (
            lambda t: t.update(
                {"model.layers.0.self_attn.o_proj.bias": np.zeros((64,), np.float32)}
            ),
            "unexpected tensor 'model.layers.0.self_attn.o_proj.bias'",
        ),
    ],
    ids=["missing", "wrong-shape", "unexpected"],
)
def test_bad_checkpoint_names_the_tensor(make_config, make_model, tmp_path, edit, message):
    save_hf(make_model(make_config()), tmp_path)
    tensors = load_file(tmp_path / "model.safetensors")
    edit(tensors)
    save_file(tensors, tmp_path / "model.safetensors", metadata={"format": "pt"})
    with pytest.raises(ValueError, match=message):
        load_hf(tmp_path)


def test_missing_files_raise(make_config, make_model, tmp_path):
    with pytest.raises(FileNotFoundError, match="config.json"):
        load_hf(tmp_path)
    save_hf(make_model(make_config()), tmp_path, max_shard_bytes=20_000)
    shard = sorted(tmp_path.glob("model-*.safetensors"))[-1]
    shard.unlink()
    with pytest.raises(FileNotFoundError, match=shard.name):
        load_hf(tmp_path)
    (tmp_path / "model.safetensors.index.json").unlink()
    with pytest.raises(FileNotFoundError, match="neither model.safetensors"):
        load_hf(tmp_path)


def test_load_on_a_mesh_places_parameters_by_logical_axes(make_config, make_model, tmp_path, run):
    pytest.importorskip("rljax.parallel.rules")
    from rljax.parallel import make_mesh

    config = make_config(vocab_size=62, tie_embeddings=False)
    model = make_model(config)
    save_hf(model, tmp_path)
    mesh = make_mesh({"data": 2, "fsdp": 2, "tensor": 2})
    sharded = load_hf(tmp_path, mesh=mesh)
    q_proj = sharded.layers[0].attn.q_proj[...]
    assert q_proj.sharding.mesh.shape == mesh.shape
    # "embed" -> fsdp, "heads" -> tensor, "head_dim" -> replicated (rljax.parallel.rules.DEFAULT_RULES)
    assert q_proj.sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor", None)
    assert sharded.lm_head[...].sharding.spec == jax.sharding.PartitionSpec("fsdp", "tensor")
    _assert_same_params(sharded, model)
    tokens = jnp.asarray(np.arange(16, dtype=np.int32).reshape(2, 8) % 62)
    np.testing.assert_allclose(run(sharded, tokens)[0], run(model, tokens)[0], atol=1e-5)
