"""Hugging Face checkpoint import/export: `config.json` + safetensors (single file or sharded index).

Tensors are read one at a time with the safetensors numpy API straight into the parameters of an
abstract (never randomly initialised) `Decoder`, so loading an 8B model needs no extra copy of it.
Layouts: a torch `Linear` weight is [out, in]; ours keeps the input axes first and splits heads, e.g.
q_proj [N * D, H] <-> [H, N, D] and o_proj [H, N * D] <-> [N, D, H].
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
from collections.abc import Iterator
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import save_file

from rljax.models.config import ModelConfig
from rljax.models.decoder import Decoder

CONFIG_FILE = "config.json"
SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Buffers some older exports carry; they are recomputed from the config, never loaded.
_IGNORED_SUFFIXES = ("rotary_emb.inv_freq",)


@dataclasses.dataclass(frozen=True)
class _Layout:
    """How one parameter relates to its HF tensor.

    kind "copy": same shape; "flat": ours is the HF vector reshaped (qkv biases [N * D] <-> [N, D]);
    "linear": HF is a torch Linear weight [out, in] whose `in` is our first `input_axes` axes.
    """

    kind: str
    input_axes: int = 1

    def hf_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        if self.kind == "copy":
            return shape
        if self.kind == "flat":
            return (math.prod(shape),)
        return (math.prod(shape[self.input_axes :]), math.prod(shape[: self.input_axes]))

    def to_model(self, tensor: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        if self.kind == "linear":
            tensor = tensor.T
        return tensor.reshape(shape)

    def to_hf(self, array: np.ndarray) -> np.ndarray:
        if self.kind == "copy":
            return array
        if self.kind == "flat":
            return array.reshape(-1)
        return array.reshape(math.prod(array.shape[: self.input_axes]), -1).T


_COPY, _FLAT, _LINEAR, _LINEAR_2 = (
    _Layout("copy"),
    _Layout("flat"),
    _Layout("linear"),
    _Layout("linear", 2),
)
_TOP = {
    ("embedding",): ("model.embed_tokens.weight", _COPY),
    ("final_norm", "scale"): ("model.norm.weight", _COPY),
    ("lm_head",): ("lm_head.weight", _LINEAR),
}
_LAYER = {
    ("input_norm", "scale"): ("input_layernorm.weight", _COPY),
    ("post_attn_norm", "scale"): ("post_attention_layernorm.weight", _COPY),
    ("attn", "q_proj"): ("self_attn.q_proj.weight", _LINEAR),
    ("attn", "k_proj"): ("self_attn.k_proj.weight", _LINEAR),
    ("attn", "v_proj"): ("self_attn.v_proj.weight", _LINEAR),
    ("attn", "o_proj"): ("self_attn.o_proj.weight", _LINEAR_2),
    ("attn", "q_bias"): ("self_attn.q_proj.bias", _FLAT),
    ("attn", "k_bias"): ("self_attn.k_proj.bias", _FLAT),
    ("attn", "v_bias"): ("self_attn.v_proj.bias", _FLAT),
    ("attn", "q_norm", "scale"): ("self_attn.q_norm.weight", _COPY),
    ("attn", "k_norm", "scale"): ("self_attn.k_norm.weight", _COPY),
    ("mlp", "gate_proj"): ("mlp.gate_proj.weight", _LINEAR),
    ("mlp", "up_proj"): ("mlp.up_proj.weight", _LINEAR),
    ("mlp", "down_proj"): ("mlp.down_proj.weight", _LINEAR),
}


@dataclasses.dataclass(frozen=True)
class _Entry:
    """One parameter of the model and the HF tensors it is made of (several when layers are stacked)."""

    names: tuple[str | int, ...]
    keys: tuple[str, ...]
    layout: _Layout
    stacked: bool


def _entry(names: tuple[str | int, ...], config: ModelConfig) -> _Entry:
    if names[0] != "layers":
        key, layout = _TOP[names]
        return _Entry(names, (key,), layout, stacked=False)
    if config.scan_layers:
        suffix, layout = _LAYER[names[1:]]
        keys = tuple(f"model.layers.{i}.{suffix}" for i in range(config.num_layers))
        return _Entry(names, keys, layout, stacked=True)
    suffix, layout = _LAYER[names[2:]]
    return _Entry(names, (f"model.layers.{names[1]}.{suffix}",), layout, stacked=False)


def _names(key_path: tuple) -> tuple[str | int, ...]:
    """('layers', 0, 'attn', 'q_proj') from a jax key path into an nnx.State (drops the trailing `.value`)."""
    return tuple(k.key for k in key_path if isinstance(k, jax.tree_util.DictKey))


class _Checkpoint:
    """The tensors of a safetensors checkpoint directory, opened lazily file by file."""

    def __init__(self, directory: Path, stack: contextlib.ExitStack):
        self._directory, self._stack, self._open = directory, stack, {}
        if (directory / INDEX_FILE).exists():
            self.files = dict(json.loads((directory / INDEX_FILE).read_text())["weight_map"])
        elif (directory / SINGLE_FILE).exists():
            self.files = dict.fromkeys(self._handle(SINGLE_FILE).keys(), SINGLE_FILE)
        else:
            raise FileNotFoundError(f"{directory} has neither {SINGLE_FILE} nor {INDEX_FILE}")

    def _handle(self, filename: str):
        if filename not in self._open:
            path = self._directory / filename
            if not path.exists():
                raise FileNotFoundError(
                    f"checkpoint file {path} (named in {INDEX_FILE}) does not exist"
                )
            self._open[filename] = self._stack.enter_context(safe_open(str(path), framework="np"))
        return self._open[filename]

    def shape(self, key: str) -> tuple[int, ...]:
        return tuple(self._handle(self.files[key]).get_slice(key).get_shape())

    def read(self, key: str) -> np.ndarray:
        return self._handle(self.files[key]).get_tensor(key)


def load_hf(
    path: str | os.PathLike,
    *,
    dtype: str = "float32",
    mesh: jax.sharding.Mesh | None = None,
    remat: bool = False,
    scan_layers: bool = False,
) -> Decoder:
    """Loads an HF Llama/Qwen2/Qwen3 checkpoint directory into a Decoder.

    Args:
      path: directory with `config.json` and `model.safetensors` or `model.safetensors.index.json`.
      dtype: parameter and compute dtype ("float32", "bfloat16", "float16").
      mesh: if given, each parameter is placed with the NamedSharding that
        `rljax.parallel.rules.logical_to_mesh_sharding` derives from its logical axes.
      remat, scan_layers: ModelConfig switches of the returned model.

    Returns:
      The Decoder. Raises FileNotFoundError for a missing file and ValueError naming the key for a
      missing, unexpected or wrongly shaped tensor.
    """
    directory = Path(path)
    if not (directory / CONFIG_FILE).exists():
        raise FileNotFoundError(f"{directory / CONFIG_FILE} does not exist")
    hf_config = json.loads((directory / CONFIG_FILE).read_text())
    config = ModelConfig.from_hf_config(
        hf_config, dtype=dtype, param_dtype=dtype, remat=remat, scan_layers=scan_layers
    )
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0))))
    leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
    shardings = _shardings(state, mesh, len(leaves))
    with contextlib.ExitStack() as stack:
        checkpoint = _Checkpoint(directory, stack)
        entries = [_entry(_names(key_path), config) for key_path, _ in leaves]
        _check_keys(checkpoint, entries, config)
        arrays = []
        for entry, (_, abstract), sharding in zip(entries, leaves, shardings):
            host = _read_entry(checkpoint, entry, abstract.shape).astype(abstract.dtype)
            arrays.append(
                jax.device_put(host, sharding) if sharding is not None else jnp.asarray(host)
            )
    return nnx.merge(graphdef, jax.tree_util.tree_unflatten(treedef, arrays))


def _shardings(state: nnx.State, mesh: jax.sharding.Mesh | None, count: int) -> list:
    if mesh is None:
        return [None] * count
    from rljax.parallel.rules import (
        logical_to_mesh_sharding,
    )  # the parallel package is optional here

    shardings = jax.tree.leaves(logical_to_mesh_sharding(state, mesh))
    if len(shardings) != count:
        raise ValueError(
            f"logical_to_mesh_sharding returned {len(shardings)} shardings for {count} parameters"
        )
    return shardings


def _check_keys(checkpoint: _Checkpoint, entries: list[_Entry], config: ModelConfig) -> None:
    expected = {key for entry in entries for key in entry.keys}
    missing = sorted(expected - checkpoint.files.keys())
    if missing:
        raise ValueError(
            f"checkpoint is missing tensor {missing[0]!r} ({len(missing)} missing in all)"
        )
    unexpected = sorted(
        key
        for key in checkpoint.files.keys() - expected
        if not key.endswith(_IGNORED_SUFFIXES)
        and not (config.tie_embeddings and key == "lm_head.weight")
    )
    if unexpected:
        raise ValueError(
            f"checkpoint has unexpected tensor {unexpected[0]!r} ({len(unexpected)} in all); "
            f"is config.json ({config.family}) the right architecture?"
        )
    if config.tie_embeddings and "lm_head.weight" in checkpoint.files:
        if not np.array_equal(
            checkpoint.read("lm_head.weight"), checkpoint.read("model.embed_tokens.weight")
        ):
            raise ValueError(
                "tie_word_embeddings is true but lm_head.weight differs from model.embed_tokens.weight"
            )


def _read_entry(checkpoint: _Checkpoint, entry: _Entry, shape: tuple[int, ...]) -> np.ndarray:
    layer_shape = shape[1:] if entry.stacked else shape
    expected = entry.layout.hf_shape(layer_shape)
    tensors = []
    for key in entry.keys:
        found = checkpoint.shape(key)
        if found != expected:
            raise ValueError(
                f"tensor {key!r} has shape {found} in the checkpoint, the model expects {expected}"
            )
        tensors.append(entry.layout.to_model(checkpoint.read(key), layer_shape))
    return np.stack(tensors) if entry.stacked else tensors[0]


def save_hf(model: Decoder, path: str | os.PathLike, *, max_shard_bytes: int = 5 * 2**30) -> None:
    """Writes `config.json` and safetensors that `transformers` (and `load_hf`) read back exactly.

    Args:
      model: the Decoder; its parameters must be addressable from this process.
      path: output directory (created if needed).
      max_shard_bytes: above this total size the tensors are split into
        `model-0000k-of-0000n.safetensors` files with a `model.safetensors.index.json`.

    Returns:
      None. Raises ValueError when the config cannot be expressed by its HF family.
    """
    if max_shard_bytes <= 0:
        raise ValueError(f"max_shard_bytes must be > 0, got {max_shard_bytes}")
    config = model.config
    hf_config = config.to_hf_config()
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True)
    params = [
        (_entry(_names(key_path), config), array)
        for key_path, array in jax.tree_util.tree_flatten_with_path(nnx.state(model, nnx.Param))[0]
    ]
    shards = _plan_shards(params, max_shard_bytes)
    weight_map = {}
    for number, shard in enumerate(shards, start=1):
        filename = (
            SINGLE_FILE
            if len(shards) == 1
            else f"model-{number:05d}-of-{len(shards):05d}.safetensors"
        )
        tensors = dict(_hf_tensors(shard))
        save_file(tensors, str(directory / filename), metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(tensors, filename))
    if len(shards) > 1:
        total = sum(array.nbytes for _, array in params)
        index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
        (directory / INDEX_FILE).write_text(json.dumps(index, indent=2))
    (directory / CONFIG_FILE).write_text(json.dumps(hf_config, indent=2, sort_keys=True))


def _plan_shards(params: list, max_shard_bytes: int) -> list[list]:
    """Groups parameters, in order, into shards of at most max_shard_bytes (a larger one stands alone)."""
    shards, size = [[]], 0
    for entry, array in params:
        if shards[-1] and size + array.nbytes > max_shard_bytes:
            shards, size = shards + [[]], 0
        shards[-1].append((entry, array))
        size += array.nbytes
    return shards


def _hf_tensors(shard: list) -> Iterator[tuple[str, np.ndarray]]:
    for entry, array in shard:
        host = np.asarray(jax.device_get(array))
        layers = list(host) if entry.stacked else [host]
        for key, layer in zip(entry.keys, layers):
            yield key, np.ascontiguousarray(entry.layout.to_hf(layer))
