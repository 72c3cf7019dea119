"""Shape dry run: check a paper-scale config without a pod and without materialising anything.

Builds the policy with `nnx.eval_shape`, places its parameters on an abstract mesh of the config's
shape with the partition rules (which checks that every split divides), traces the whole train
step (forward, token statistics, the method's loss, gradients, the optimiser update) with
`jax.eval_shape` on a batch of the config's shape, and reports parameter counts and the per-device
memory of parameters and optimiser state.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rljax import methods as methods_lib
from rljax.methods import TrainBatch
from rljax.models import PRESETS, Decoder
from rljax.parallel import DATA_AXES, MESH_AXES, logical_to_mesh_sharding, parse_mesh_spec
from rljax.train.config import ExperimentConfig
from rljax.train.optim import make_optimizer
from rljax.train.step import TrainState, make_update_fn, split_model


def _per_device_bytes(tree, shardings, mesh_sizes: dict[str, int]) -> int:
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings)):
        ways = 1
        for entry in sharding.spec:
            axes = () if entry is None else (entry if isinstance(entry, tuple) else (entry,))
            ways *= math.prod(mesh_sizes[a] for a in axes)
        total += leaf.size * jnp.dtype(leaf.dtype).itemsize // ways
    return total


def check(config: ExperimentConfig) -> dict:
    """Runs the dry run; raises ValueError on any inconsistency and returns a summary dict."""
    if config.model.hf_path is not None:
        raise ValueError("the dry run builds models from presets; unset model.hf_path")
    if config.train.mesh == "auto":
        raise ValueError("the dry run needs an explicit mesh shape (train.mesh), not 'auto'")
    sizes = parse_mesh_spec(config.train.mesh)
    mesh = jax.sharding.AbstractMesh(tuple(sizes.values()), MESH_AXES)
    model_config = PRESETS[config.model.preset](dtype=config.model.dtype, **config.model.overrides)
    abstract = nnx.eval_shape(lambda: Decoder(model_config, rngs=nnx.Rngs(0)))
    graphdef, params, rest = split_model(abstract)
    param_shardings = logical_to_mesh_sharding(params, mesh)

    cfg = config.task
    rows = cfg.prompts_per_step * cfg.group_size // config.train.minibatches
    data_ways = math.prod(sizes[a] for a in DATA_AXES)
    if rows % data_ways:
        raise ValueError(
            f"mini-batch of {rows} sequences does not divide over the data axes "
            f"({data_ways} ways, mesh {config.train.mesh})"
        )
    method = methods_lib.make_method(config.method.name, **config.method.kwargs)
    optimizer = make_optimizer(config.optim, config.train.steps * config.train.minibatches)
    opt_state = jax.eval_shape(optimizer.init, params)
    state = TrainState(
        params=params,
        opt_state=opt_state,
        step=jax.ShapeDtypeStruct((), jnp.int32),
        key=jax.ShapeDtypeStruct((2,), jnp.uint32),
        method_state=jax.eval_shape(method.init_state),
    )
    t = cfg.max_len
    tok = jax.ShapeDtypeStruct((rows, t), jnp.int32)
    flt = jax.ShapeDtypeStruct((rows, t), jnp.float32)
    batch = TrainBatch(
        tokens=tok,
        positions=tok,
        segment_ids=tok,
        stage_ids=tok,
        action_mask=flt,
        env_mask=flt,
        warning_mask=flt,
        old_logprobs=flt,
        advantages=flt,
        ref_logprobs=flt,
    )
    update = make_update_fn(
        graphdef,
        method,
        optimizer,
        temperature=cfg.temperature,
        impl=config.train.kernel_impl,
        microbatches=config.train.microbatches,
    )
    new_state, metrics = jax.eval_shape(update, state, rest, batch)
    if jax.tree.structure(new_state.params) != jax.tree.structure(params):
        raise ValueError("the train step changed the parameter structure")

    num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
    param_bytes = _per_device_bytes(params, param_shardings, sizes)
    # AdamW keeps two moments per parameter, created under jit with the parameter's sharding.
    moment_elems = sum(x.size for x in jax.tree.leaves(opt_state) if x.ndim > 0)
    if moment_elems != 2 * num_params:
        raise ValueError(
            f"optimizer state holds {moment_elems} elements, expected 2 x {num_params}"
        )
    opt_bytes = 2 * param_bytes
    return {
        "experiment": config.name,
        "model": config.model.preset,
        "num_params": num_params,
        "mesh": sizes,
        "devices": math.prod(sizes.values()),
        "batch": {"sequences_per_update": rows, "tokens": t},
        "per_device_param_gib": param_bytes / 2**30,
        "per_device_optimizer_gib": opt_bytes / 2**30,
        "loss_metrics": sorted(metrics),
    }
