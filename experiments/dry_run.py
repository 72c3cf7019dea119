"""Shape dry run: check a paper-scale config without a pod and without materialising anything.

Builds the policy with `nnx.eval_shape`, places its parameters on an abstract mesh of the config's
shape with the partition rules (which checks that every split divides), and traces, with
`jax.eval_shape`, every compiled call of one RL step exactly as the trainer builds it for that
mesh (the same jits with the same explicit in/out shardings, so a batch or cache that does not
split over the mesh fails here as it would on the pod):

    rollout_prefill  the sampler's prefill of a prompt chunk into the KV cache (`Placement`),
    rollout_decode   the sampler's decode loop over the response budget,
    forward          the no-grad forward pass (log-probs, entropies, hidden / teacher statistics),
    prepare          `method.prepare` on the whole batch,
    update           one optimiser step on a mini-batch (forward, token statistics, the method's
                     loss, gradients, the optimiser).

For each call it reports the memory per device of the arrays live during it: the resident train
state (parameters, optimiser moments, reference copy) plus the call's other inputs and outputs,
donated buffers counted once. XLA's temporaries (activations, vocabulary chunks) are not included:
they are known only after compiling for the target chips. Shapes are the largest the config
allows: the prefill chunk is the longest prompt that leaves room for `task.max_new_tokens`, the
decode runs for the whole response budget, and the Anti-SD teacher sequence (task, a verified
solution and the response) is taken as 2 x `task.max_len` tokens.
"""

from __future__ import annotations

import math
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import AbstractMesh, NamedSharding, PartitionSpec

from rljax import methods as methods_lib
from rljax.data import load_tokenizer
from rljax.envs.base import StagedFamily
from rljax.methods import PrepareInputs, TrainBatch
from rljax.models import PRESETS, Decoder
from rljax.parallel import DATA_AXES, MESH_AXES, logical_to_mesh_sharding, parse_mesh_spec
from rljax.sampling.placement import Placement
from rljax.sampling.sampler import bucket_size
from rljax.sampling.session import MIN_CHUNK_BUCKET, MIN_STEP_BUCKET
from rljax.train.collect import sampling_strategy
from rljax.train.components import build_family
from rljax.train.config import ExperimentConfig
from rljax.train.optim import make_optimizer
from rljax.train.step import (
    TrainState,
    make_forward_fn,
    make_prepare_fn,
    make_update_fn,
    split_model,
)

GIB = 2**30


def device_bytes(tree: Any) -> int:
    """Bytes one device holds of a pytree of `jax.ShapeDtypeStruct`s (a leaf without a sharding is
    replicated); PRNG keys count their key data."""
    total = 0
    for leaf in jax.tree.leaves(tree):
        dtype = leaf.dtype
        shape = tuple(leaf.shape)
        if jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
            shape, dtype = shape + (2,), jnp.uint32
        sharding = getattr(leaf, "sharding", None)
        if sharding is not None:
            shape = sharding.shard_shape(shape[: len(leaf.shape)]) + shape[len(leaf.shape) :]
        total += math.prod(shape) * jnp.dtype(dtype).itemsize
    return total


def _placed(tree: Any, shardings: Any) -> Any:
    """`tree`'s shapes and dtypes with `shardings` attached (one sharding, or a matching pytree)."""
    if isinstance(shardings, NamedSharding):
        return jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=shardings), tree
        )
    return jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), tree, shardings
    )


def _sds(shape: tuple[int, ...], dtype: Any) -> jax.ShapeDtypeStruct:
    return jax.ShapeDtypeStruct(shape, dtype)


def _train_state(params, param_shardings, mesh, method, optimizer):
    """The abstract TrainState with the trainer's shardings (moments follow their parameter)."""
    replicated = NamedSharding(mesh, PartitionSpec())
    opt_state = jax.eval_shape(optimizer.init, params)
    opt_shardings = optax.tree_map_params(
        optimizer,
        lambda _, s: s,
        opt_state,
        param_shardings,
        transform_non_params=lambda _: replicated,
    )
    reference = "reference" in method.needs
    state = TrainState(
        params=params,
        opt_state=opt_state,
        step=_sds((), jnp.int32),
        key=_sds((2,), jnp.uint32),
        method_state=jax.eval_shape(method.init_state),
        ref_params=params if reference else None,
    )
    shardings = TrainState(
        params=param_shardings,
        opt_state=opt_shardings,
        step=replicated,
        key=replicated,
        method_state=jax.tree.map(lambda _: replicated, state.method_state),
        ref_params=param_shardings if reference else None,
    )
    return _placed(state, shardings), shardings


def _rollout(config, model_config, abstract, mesh, rows: int) -> dict[str, tuple]:
    """(inputs, outputs, donated inputs) of the sampler's prefill and decode for `rows` rows."""
    cfg = config.task
    graphdef, state = nnx.split(abstract)
    state = _placed(state, logical_to_mesh_sharding(state, mesh))
    placement = Placement(state, bucket_size(rows, 1), shard_rows=False)
    cache, last_hidden = jax.eval_shape(placement.init_fn(model_config, cfg.max_len))
    by_row = last_hidden.sharding  # rows over the data axes when they divide, else replicated
    prompt = bucket_size(cfg.max_len - cfg.max_new_tokens, MIN_CHUNK_BUCKET, cfg.max_len)
    chunk = _placed(_sds((placement.global_rows, prompt), jnp.int32), by_row)
    extend_in = (state, cache, last_hidden, chunk, chunk)
    extend_out = jax.eval_shape(placement.extend_fn(graphdef), *extend_in)
    steps = bucket_size(cfg.max_new_tokens, MIN_STEP_BUCKET, cfg.max_len)
    decode = placement.decode_fn(graphdef, sampling_strategy(cfg), steps)
    budget = _placed(_sds((placement.global_rows,), jnp.int32), by_row)
    stops = _placed(_sds((placement.global_rows, 8), jnp.int32), by_row)
    key = jax.eval_shape(lambda: jax.random.key(0))
    decode_in = (state, *extend_out, key, budget, stops)
    decode_out = jax.eval_shape(decode, *decode_in)
    return {
        "rollout_prefill": ((cache, last_hidden, chunk, chunk), extend_out, (cache, last_hidden)),
        "rollout_decode": ((*extend_out, key, budget, stops), decode_out, extend_out),
    }


def _batch(rows: int, t: int, by_row: NamedSharding) -> TrainBatch:
    tok = _placed(_sds((rows, t), jnp.int32), by_row)
    flt = _placed(_sds((rows, t), jnp.float32), by_row)
    return TrainBatch(
        tokens=tok,
        positions=tok,
        segment_ids=tok,
        stage_ids=tok,
        action_mask=flt,
        env_mask=flt,
        warning_mask=flt,
    )


def _num_stages(config: ExperimentConfig) -> int:
    """K, the stage rewards per response of a staged family (0 otherwise). The family counts
    tokens with the built-in tokenizer (its prompts are not used)."""
    family = build_family(config.task, load_tokenizer())
    if not isinstance(family, StagedFamily):
        return 0
    return len(family.verify(family.generate("train", 0), "").info["stage_rewards"])


def check(config: ExperimentConfig) -> dict:
    """Runs the dry run; raises ValueError on any inconsistency and returns a summary dict.

    The summary holds parameter counts, the mesh, the batch, the per-device memory of parameters
    and optimiser state, the update's metric names and, under "step", each traced call's
    per-device memory in GiB (see the module docstring).
    """
    if config.model.hf_path is not None:
        raise ValueError("the dry run builds models from presets; unset model.hf_path")
    if config.train.mesh == "auto":
        raise ValueError("the dry run needs an explicit mesh shape (train.mesh), not 'auto'")
    sizes = parse_mesh_spec(config.train.mesh)
    mesh = AbstractMesh(tuple(sizes.values()), MESH_AXES)
    model_config = PRESETS[config.model.preset](dtype=config.model.dtype, **config.model.overrides)
    abstract = nnx.eval_shape(lambda: Decoder(model_config, rngs=nnx.Rngs(0)))
    graphdef, params, rest = split_model(abstract)
    param_shardings = logical_to_mesh_sharding(params, mesh)
    params = _placed(params, param_shardings)

    cfg = config.task
    batch_rows = cfg.prompts_per_step * cfg.group_size
    rows = batch_rows // config.train.minibatches
    data_ways = math.prod(sizes[a] for a in DATA_AXES)
    for what, n in (("batch", batch_rows), ("mini-batch", rows)):
        if n % data_ways:
            raise ValueError(
                f"{what} of {n} sequences does not divide over the data axes "
                f"({data_ways} ways, mesh {config.train.mesh})"
            )
    method = methods_lib.make_method(config.method.name, **config.method.kwargs)
    optimizer = make_optimizer(config.optim, config.train.steps * config.train.minibatches)
    state, state_sharding = _train_state(params, param_shardings, mesh, method, optimizer)
    by_row = NamedSharding(mesh, PartitionSpec(DATA_AXES))
    t = cfg.max_len
    calls = _rollout(config, model_config, abstract, mesh, batch_rows)

    # The no-grad forward pass on the whole batch (with the teacher context for Anti-SD).
    passes = dict(temperature=cfg.temperature, impl=config.train.kernel_impl)
    forward = make_forward_fn(
        graphdef,
        with_hidden="hidden" in method.needs,
        with_teacher="teacher" in method.needs,
        mesh=mesh,
        param_sharding=param_shardings,
        **passes,
    )
    batch = _batch(batch_rows, t, by_row)
    teacher = None
    if "teacher" in method.needs:
        wide = _placed(_sds((batch_rows, 2 * t), jnp.int32), by_row)
        teacher = {
            "teacher_tokens": wide,
            "teacher_positions": wide,
            "teacher_segment_ids": wide,
            "teacher_index": batch.tokens,
        }
    # Its outputs are split by rows like its batch (`make_forward_fn`'s out_shardings).
    fwd = _placed(jax.eval_shape(forward, params, rest, batch, teacher), by_row)
    calls["forward"] = ((batch, teacher), fwd, ())

    # method.prepare on the whole batch.
    p, g = cfg.prompts_per_step, cfg.group_size
    replicated = NamedSharding(mesh, PartitionSpec())
    inputs = PrepareInputs(
        rewards=_placed(_sds((p, g), jnp.float32), replicated),
        task_ids=_placed(_sds((p,), jnp.int32), replicated),
        group_mask=_placed(_sds((p,), jnp.bool_), replicated),
        action_mask=batch.action_mask,
        env_mask=batch.env_mask,
        warning_mask=batch.warning_mask,
        stage_ids=batch.stage_ids,
        stage_rewards=_placed(_sds((p, g, _num_stages(config)), jnp.float32), replicated),
        cluster_ids=_placed(_sds((p, g), jnp.int32), replicated),
        old_logprobs=fwd.logprobs,
        old_entropy=fwd.entropy,
        lengths=_placed(_sds((batch_rows,), jnp.int32), by_row),
        hidden=fwd.hidden,
        teacher_logprobs=fwd.teacher_logprobs,
        teacher_entropy=fwd.teacher_entropy,
    )
    advantages, method_state, prep_metrics = jax.eval_shape(
        make_prepare_fn(method, mesh), inputs, state.method_state
    )
    # Advantages split by rows, the rest replicated (`make_prepare_fn`'s out_shardings).
    prepared = (
        _placed(advantages, by_row),
        _placed((method_state, prep_metrics), replicated),
    )
    calls["prepare"] = ((inputs,), prepared, ())

    # One optimiser step on a mini-batch.
    mini = _batch(rows, t, by_row)
    per_token = _placed(_sds((rows, t), jnp.float32), by_row)
    adv_shape = (rows, *advantages.shape[1:])
    mini = mini.replace(
        old_logprobs=per_token,
        advantages=_placed(_sds(adv_shape, advantages.dtype), by_row),
        ref_logprobs=per_token if "reference" in method.needs else None,
    )
    update = make_update_fn(
        graphdef,
        method,
        optimizer,
        microbatches=config.train.microbatches,
        mesh=mesh,
        state_sharding=state_sharding,
        **passes,
    )
    new_state, metrics = jax.eval_shape(update, state, rest, mini)
    if jax.tree.structure(new_state.params) != jax.tree.structure(params):
        raise ValueError("the train step changed the parameter structure")
    calls["update"] = ((mini,), metrics, ())

    num_params = int(sum(np.prod(x.shape) for x in jax.tree.leaves(params)))
    moment_elems = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
    if moment_elems != 2 * num_params:
        raise ValueError(
            f"optimizer state holds {moment_elems} elements, expected 2 x {num_params}"
        )
    resident = device_bytes(state)
    step = {
        name: round(
            (resident + device_bytes(ins) + device_bytes(outs) - device_bytes(donated)) / GIB, 3
        )
        for name, (ins, outs, donated) in calls.items()
    }
    return {
        "experiment": config.name,
        "model": config.model.preset,
        "num_params": num_params,
        "mesh": sizes,
        "devices": math.prod(sizes.values()),
        "batch": {"sequences_per_update": rows, "tokens": t},
        "per_device_param_gib": device_bytes(params) / GIB,
        "per_device_optimizer_gib": device_bytes(state.opt_state) / GIB,
        "per_device_train_state_gib": resident / GIB,
        "step": {"traced": list(calls), "per_device_gib": step},
        "loss_metrics": sorted(metrics),
    }
