"""The pure step layer: train state, the jitted update, the jitted prepare, the no-grad forward.

Nothing here knows about runs, families or checkpoints: every function takes arrays, a graph
definition, a method and an optimiser, and returns arrays and metrics.

Log-probs and entropies always come from `kernels.token_stats` on the final hidden states and the
unembedding, so full [B, T, V] logits are never materialised (unless `impl="reference"`).
The update is one `jax.jit` with explicit shardings and a donated state; gradient accumulation over
micro-batches weights each by its share of the method's normaliser, so the accumulated gradient is
exactly the gradient of the full mini-batch loss.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rljax import kernels, losses, parallel
from rljax.methods import Method, PrepareInputs, TrainBatch

Array = jax.Array


@flax.struct.dataclass
class TrainState:
    """Everything a run needs to continue exactly: one pytree (checkpointed whole)."""

    params: Any  # nnx.State of the policy's nnx.Param variables
    opt_state: Any
    step: Array  # int32 scalar: RL steps completed
    key: Array  # PRNG key data (uint32), the run's only randomness
    method_state: Any  # e.g. the Anti-SD gate
    ref_params: Any = None  # the frozen reference policy, for methods with a KL term


class ForwardOutputs(NamedTuple):
    """The no-grad forward pass on a batch ([B, T] aligned with its tokens; None when not asked)."""

    logprobs: Array
    entropy: Array
    hidden: Array | None = None  # [B, T, H] float32
    teacher_logprobs: Array | None = None
    teacher_entropy: Array | None = None


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Any, Any]:
    """(graphdef, params, rest): trainable parameters apart from any other state."""
    return nnx.split(model, nnx.Param, ...)


def shift_right(x: Array) -> Array:
    """[B, T-1, ...] values predicted for tokens 1..T-1 -> [B, T, ...] aligned with tokens (col 0 = 0)."""
    pad = [(0, 0), (1, 0)] + [(0, 0)] * (x.ndim - 2)
    return jnp.pad(x, pad)


def policy_model(graphdef: nnx.GraphDef, params: Any, rest: Any) -> nnx.Module:
    """The policy as an nnx module (for sampling and evaluation) from its split parts."""
    return nnx.merge(graphdef, params, rest)


def init_state(
    params: Any,
    optimizer: optax.GradientTransformation,
    method: Method,
    mesh: Mesh | None = None,
    *,
    seed: int,
) -> tuple[TrainState, Any]:
    """A fresh TrainState (on `mesh` when given) and its shardings.

    Parameters keep the shardings the partition rules gave them; the optimiser state is created
    under `jax.jit`, so its moments inherit their parameter's sharding; scalars, the PRNG key and
    the method state are replicated.

    Args:
        params: the policy's trainable parameters (`split_model(model)[1]`).
        optimizer: any optax transformation.
        method: supplies `init_state()` and whether a frozen reference copy is kept.
        mesh: the device mesh (None: the default device, shardings None).
        seed: the run's seed; the state's PRNG key derives from it.

    Returns:
        (state, shardings): shardings is a pytree like `state` (None without a mesh).
    """
    opt_state = jax.jit(optimizer.init)(params)
    state = TrainState(
        params=params,
        opt_state=opt_state,
        step=jnp.zeros((), jnp.int32),
        key=jax.random.key_data(jax.random.key(seed)),
        method_state=method.init_state(),
        ref_params=(jax.tree.map(jnp.copy, params) if "reference" in method.needs else None),
    )
    if mesh is None:
        return state, None
    replicated = NamedSharding(mesh, PartitionSpec())

    def sharding_of(x):
        sharding = x.sharding if isinstance(x, jax.Array) else None
        if isinstance(sharding, NamedSharding) and sharding.mesh == mesh:
            return sharding
        return replicated

    shardings = jax.tree.map(sharding_of, state)
    return jax.device_put(state, shardings), shardings


def sequence_stats(
    model: nnx.Module,
    tokens: Array,
    positions: Array,
    segment_ids: Array,
    *,
    temperature: float,
    impl: str,
) -> tuple[Array, Array, Array]:
    """Per-token log-probs, entropies [B, T] and the predicting hidden states [B, T, H].

    Args:
        model: the policy (an `rljax.models.Decoder`).
        tokens, positions, segment_ids: [B, T] model inputs.
        temperature: logits are divided by it (same tau as sampling).
        impl: the `kernels.token_stats` implementation.

    Returns:
        logprobs [B, T] (column 0 is 0), entropy [B, T], hidden [B, T, H] where hidden[:, t] is the
        state that predicts token t (hidden[:, 0] = 0).
    """
    hidden, _ = model(tokens, positions=positions, segment_ids=segment_ids)
    b, t, h = hidden.shape
    # Mixed precision: the unembedding is used in the compute dtype of the hidden states; the
    # kernel accumulates in float32.
    w_unembed = model.unembedding.astype(hidden.dtype)
    stats = kernels.token_stats(
        hidden[:, :-1].reshape(b * (t - 1), h),
        w_unembed,
        tokens[:, 1:].reshape(-1),
        temperature=temperature,
        impl=impl,
    )
    logprobs = shift_right(stats.logprob.reshape(b, t - 1))
    entropy = shift_right(stats.entropy.reshape(b, t - 1))
    return logprobs, entropy, shift_right(hidden[:, :-1])


def teacher_stats(
    model: nnx.Module, teacher: dict, *, temperature: float, impl: str
) -> tuple[Array, Array]:
    """The student's tokens scored under the teacher context, gathered back to student positions.

    `teacher["teacher_tokens"]` [B, T'] (with `teacher_positions`, `teacher_segment_ids`) holds
    teacher context + the same response tokens, and `teacher["teacher_index"]` [B, T] gives, for
    each student position, the teacher position of the same token (-1 where there is none: prompt
    and padding). Returns (logprobs, entropy) [B, T].
    """
    lp, ent, _ = sequence_stats(
        model,
        teacher["teacher_tokens"],
        teacher["teacher_positions"],
        teacher["teacher_segment_ids"],
        temperature=temperature,
        impl=impl,
    )
    index = teacher["teacher_index"]

    def take(x):
        return jnp.where(index >= 0, jnp.take_along_axis(x, jnp.maximum(index, 0), 1), 0.0)

    return take(lp), take(ent)


def make_forward_fn(
    graphdef: nnx.GraphDef,
    *,
    temperature: float,
    impl: str,
    with_hidden: bool,
    with_teacher: bool,
    mesh: Mesh | None = None,
    param_sharding: Any = None,
) -> Callable[..., ForwardOutputs]:
    """A jitted no-grad pass `forward(params, rest, batch, teacher=None) -> ForwardOutputs`.

    Args:
        graphdef: the policy's graph definition (from `split_model`).
        temperature: logits temperature (same as sampling).
        impl: `kernels.token_stats` implementation.
        with_hidden: also return the predicting hidden states (DelTA).
        with_teacher: also score the tokens under `teacher` (Anti-SD; see `teacher_stats`).
        mesh, param_sharding: with a mesh, the pass is compiled with explicit shardings: the
            parameters as `param_sharding`, the rest replicated, the batch's and the teacher's rows
            (and the outputs' rows) over the data axes.

    Returns:
        The jitted forward pass (compiled once per batch shape).
    """

    def forward(
        params: Any, rest: Any, batch: TrainBatch, teacher: dict | None = None
    ) -> ForwardOutputs:
        model = nnx.merge(graphdef, params, rest)
        lp, ent, hidden = sequence_stats(
            model,
            batch.tokens,
            batch.positions,
            batch.segment_ids,
            temperature=temperature,
            impl=impl,
        )
        out = ForwardOutputs(lp, ent, hidden.astype(jnp.float32) if with_hidden else None)
        if with_teacher:
            t_lp, t_ent = teacher_stats(model, teacher, temperature=temperature, impl=impl)
            out = out._replace(teacher_logprobs=t_lp, teacher_entropy=t_ent)
        return jax.lax.stop_gradient(out)

    if mesh is None:
        jitted = jax.jit(forward)
    else:
        rows = parallel.batch_sharding(mesh)
        replicated = NamedSharding(mesh, PartitionSpec())
        jitted = jax.jit(
            forward,
            in_shardings=(param_sharding, replicated, rows, rows),
            out_shardings=rows,
        )

    def call(params: Any, rest: Any, batch: TrainBatch, teacher: dict | None = None):
        return jitted(params, rest, batch, teacher)

    return call


# PrepareInputs fields with one row per sequence [B, ...]; the others have one per prompt [P, ...].
ROW_FIELDS = frozenset(
    {
        "action_mask",
        "env_mask",
        "warning_mask",
        "stage_ids",
        "old_logprobs",
        "old_entropy",
        "lengths",
        "hidden",
        "teacher_logprobs",
        "teacher_entropy",
    }
)


def make_prepare_fn(
    method: Method, mesh: Mesh | None = None
) -> Callable[[PrepareInputs, Any], tuple[Array, Any, dict]]:
    """`method.prepare` under `jax.jit`: compiled once per batch shape, like the update.

    With a mesh, it is compiled with explicit shardings: per-sequence inputs and the advantages
    split by rows over the data axes, per-prompt inputs (rewards, task ids, clusters, stage
    rewards, the group mask), the method state and the metrics replicated. Statistics that span the
    batch (group advantages, centroids, task scales, medians) are computed on the global arrays, so
    they do not depend on how the rows are spread over devices or processes.

    Args:
        method: the method whose prepare to compile.
        mesh: the device mesh (None: shardings follow the inputs).

    Returns:
        prepare(inputs, state) -> (advantages, state, metrics).
    """
    if mesh is None:
        return jax.jit(method.prepare)
    rows = parallel.batch_sharding(mesh)
    replicated = NamedSharding(mesh, PartitionSpec())
    compiled = {}

    def prepare(inputs: PrepareInputs, state: Any) -> tuple[Array, Any, dict]:
        present = tuple(
            name for name in PrepareInputs.__dataclass_fields__ if getattr(inputs, name) is not None
        )
        if present not in compiled:
            shardings = PrepareInputs(
                **{
                    name: (rows if name in ROW_FIELDS else replicated) if name in present else None
                    for name in PrepareInputs.__dataclass_fields__
                }
            )
            compiled[present] = jax.jit(
                method.prepare,
                in_shardings=(shardings, replicated),
                out_shardings=(rows, replicated, replicated),
            )
        return compiled[present](inputs, state)

    return prepare


def make_rollout_stats_fn(mesh: Mesh | None = None) -> Callable[..., dict]:
    """`stats(entropy, logprobs, sampler_logprobs, action_mask) -> {"rollout_entropy",
    "sampler_logprob_gap"}`: the token-mean entropy of the batch under the current policy and the
    token-mean |log-prob - sampler log-prob|, jitted (replicated scalars with a mesh)."""

    def stats(entropy, logprobs, sampler_logprobs, action_mask):
        gap = jnp.abs(logprobs - sampler_logprobs.astype(jnp.float32))
        return {
            "rollout_entropy": losses.aggregate(entropy, action_mask),
            "sampler_logprob_gap": losses.aggregate(gap, action_mask),
        }

    if mesh is None:
        return jax.jit(stats)
    rows = parallel.batch_sharding(mesh)
    return jax.jit(stats, in_shardings=rows, out_shardings=NamedSharding(mesh, PartitionSpec()))


# Where the update's old log-probs come from (`make_update_fn`).
OLD_LOGPROBS = ("batch", "current")


def _split_micro(batch: TrainBatch, microbatches: int) -> TrainBatch:
    def split(x):
        if x.shape[0] % microbatches:
            raise ValueError(
                f"batch of {x.shape[0]} rows does not split into train.microbatches={microbatches}"
            )
        return x.reshape(microbatches, x.shape[0] // microbatches, *x.shape[1:])

    return jax.tree.map(split, batch)


def make_update_fn(
    graphdef: nnx.GraphDef,
    method: Method,
    optimizer: optax.GradientTransformation,
    *,
    temperature: float,
    impl: str,
    microbatches: int = 1,
    old_logprobs: str = "batch",
    mesh: Mesh | None = None,
    state_sharding: Any = None,
) -> Callable[[TrainState, Any, TrainBatch], tuple[TrainState, dict]]:
    """Builds `update(state, rest, batch) -> (state, metrics)`: one optimiser step on a mini-batch.

    Args:
        graphdef: the policy's graph definition (from `split_model`).
        method: supplies `loss(logprobs, batch)` and `normalizer(action_mask)`.
        optimizer: any optax transformation; wrapped in `optax.apply_if_finite` (e.g. by
            `rljax.train.optim.guard_nonfinite`), the metrics count skipped non-finite steps.
        temperature: logits temperature (same as sampling).
        impl: `kernels.token_stats` implementation.
        microbatches: gradient-accumulation chunks; micro-batch losses are weighted by
            normalizer(micro) / normalizer(full), so the result is the full-batch gradient.
        old_logprobs: "batch" reads `batch.old_logprobs`; "current" uses the log-probs this update
            computes, under `stop_gradient` (the batch's field is ignored), which saves the no-grad
            forward pass. "current" is exact only when the batch's old policy is the state's
            parameters, i.e. one optimiser step per rollout batch (`update_minibatches` with
            minibatches=1): the same loss and gradient as "batch" with `forward(params).logprobs`.
        mesh, state_sharding: with a mesh, the update is compiled with explicit shardings: the
            state as `state_sharding`, the batch's rows over the data axes, the rest replicated.

    Returns:
        The jitted update, compiled once per batch shape, with the state donated.
    """

    if old_logprobs not in OLD_LOGPROBS:
        raise ValueError(f"old_logprobs={old_logprobs!r} is not one of {list(OLD_LOGPROBS)}")

    def loss_fn(params, rest, batch: TrainBatch):
        model = nnx.merge(graphdef, params, rest)
        lp, ent, _ = sequence_stats(
            model,
            batch.tokens,
            batch.positions,
            batch.segment_ids,
            temperature=temperature,
            impl=impl,
        )
        if old_logprobs == "current":
            batch = batch.replace(old_logprobs=jax.lax.stop_gradient(lp))
        loss, metrics = method.loss(lp, batch)
        metrics = {**metrics, "entropy": losses.aggregate(ent, batch.action_mask)}
        return loss, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(state: TrainState, rest: Any, batch: TrainBatch) -> tuple[TrainState, dict]:
        total = jnp.maximum(method.normalizer(batch.action_mask), 1.0)
        micro = _split_micro(batch, microbatches)

        def accumulate(carry, mb):
            grads_acc, loss_acc, metrics_acc = carry
            weight = method.normalizer(mb.action_mask) / total
            (loss, metrics), grads = grad_fn(state.params, rest, mb)
            grads_acc = jax.tree.map(lambda a, g: a + weight * g, grads_acc, grads)
            metrics_acc = jax.tree.map(lambda a, m: a + weight * m, metrics_acc, metrics)
            return (grads_acc, loss_acc + weight * loss, metrics_acc), None

        zeros = jax.tree.map(jnp.zeros_like, state.params)
        first = jax.tree.map(lambda x: x[0], micro)
        metric_zeros = jax.tree.map(
            lambda m: jnp.zeros_like(m, jnp.float32),
            jax.eval_shape(loss_fn, state.params, rest, first)[1],
        )
        (grads, loss, metrics), _ = jax.lax.scan(accumulate, (zeros, 0.0, metric_zeros), micro)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        metrics = {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}
        if isinstance(opt_state, optax.ApplyIfFiniteState):
            metrics["skipped_updates"] = opt_state.total_notfinite
        new_state = state.replace(params=params, opt_state=opt_state)
        return new_state, metrics

    if mesh is None:
        return jax.jit(update, donate_argnums=(0,))
    replicated = NamedSharding(mesh, PartitionSpec())
    rows = NamedSharding(mesh, PartitionSpec(parallel.DATA_AXES))
    return jax.jit(
        update,
        donate_argnums=(0,),
        in_shardings=(state_sharding, replicated, rows),
        out_shardings=(state_sharding, replicated),
    )


def update_minibatches(
    update: Callable[[TrainState, Any, TrainBatch], tuple[TrainState, dict]],
    state: TrainState,
    rest: Any,
    batch: TrainBatch,
    *,
    minibatches: int,
    mesh: Mesh | None = None,
) -> tuple[TrainState, dict]:
    """Runs `update` on `minibatches` consecutive row slices of `batch` (one optimiser step each).

    Args:
        update: from `make_update_fn`.
        state: the train state (donated to each update).
        rest: the policy's non-parameter state.
        batch: B rows; `minibatches` must divide B.
        minibatches: optimiser steps per batch.
        mesh: with a mesh, the batch (host arrays every process holds whole, or global arrays)
            is placed by rows over the data axes and each mini-batch sliced from it on the mesh.

    Returns:
        (state, metrics averaged over the mini-batches).
    """
    rows = batch.tokens.shape[0] // minibatches
    if mesh is not None:
        batch = parallel.place_batch(batch, mesh)
    metrics = []
    for i in range(minibatches):
        if minibatches == 1:
            part = batch
        elif mesh is None:
            part = jax.tree.map(lambda x: np.asarray(x[i * rows : (i + 1) * rows]), batch)
        else:
            part = _take_rows(batch, i * rows, rows, parallel.batch_sharding(mesh))
        state, m = update(state, rest, part)
        metrics.append(m)
    return state, jax.tree.map(lambda *xs: jnp.mean(jnp.stack(xs)), *metrics)


@functools.partial(jax.jit, static_argnums=(1, 2, 3))
def _take_rows(batch: TrainBatch, start: int, size: int, sharding: NamedSharding) -> TrainBatch:
    """Rows [start, start + size) of a global batch, split by rows again (a mini-batch)."""
    part = jax.tree.map(lambda x: x[start : start + size], batch)
    return jax.lax.with_sharding_constraint(part, sharding)
