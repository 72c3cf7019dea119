"""The differentiated train step and the no-grad forward passes around it.

Log-probs and entropies always come from `kernels.token_stats` on the final hidden states and the
unembedding, so full [B, T, V] logits are never materialised (unless `impl="reference"`).
The update is one `jax.jit` with explicit shardings and a donated state; gradient accumulation over
micro-batches weights each by its share of the method's normaliser, so the accumulated gradient is
exactly the gradient of the full mini-batch loss.
"""

from __future__ import annotations

from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from rljax import kernels, parallel
from rljax.methods import Method

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


def split_model(model: nnx.Module) -> tuple[nnx.GraphDef, Any, Any]:
    """(graphdef, params, rest): trainable parameters apart from any other state."""
    return nnx.split(model, nnx.Param, ...)


def shift_right(x: Array) -> Array:
    """[B, T-1, ...] values predicted for tokens 1..T-1 -> [B, T, ...] aligned with tokens (col 0 = 0)."""
    pad = [(0, 0), (1, 0)] + [(0, 0)] * (x.ndim - 2)
    return jnp.pad(x, pad)


def sequence_stats(
    model: nnx.Module, batch: dict, *, temperature: float, impl: str, tokens_key: str = "tokens"
) -> tuple[Array, Array, Array]:
    """Per-token log-probs, entropies [B, T] and the predicting hidden states [B, T, H].

    Args:
        model: the policy (an `rljax.models.Decoder`).
        batch: holds `tokens`, `positions`, `segment_ids` ([B, T]; prefixed by `tokens_key`'s
            prefix for the teacher batch, see `teacher_stats`).
        temperature: logits are divided by it (same tau as sampling).
        impl: the `kernels.token_stats` implementation.

    Returns:
        logprobs [B, T] (column 0 is 0), entropy [B, T], hidden [B, T, H] where hidden[:, t] is the
        state that predicts token t (hidden[:, 0] = 0).
    """
    prefix = tokens_key[: -len("tokens")]
    tokens = batch[tokens_key]
    hidden, _ = model(
        tokens, positions=batch[prefix + "positions"], segment_ids=batch[prefix + "segment_ids"]
    )
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
    model: nnx.Module, batch: dict, *, temperature: float, impl: str
) -> tuple[Array, Array]:
    """The student's tokens scored under the teacher context, gathered back to student positions.

    `batch["teacher_tokens"]` [B, T'] holds teacher context + the same response tokens, and
    `batch["teacher_index"]` [B, T] gives, for each student position, the teacher position of the
    same token (-1 where there is none: prompt and padding). Returns (logprobs, entropy) [B, T].
    """
    lp, ent, _ = sequence_stats(
        model, batch, temperature=temperature, impl=impl, tokens_key="teacher_tokens"
    )
    index = batch["teacher_index"]

    def take(x):
        return jnp.where(index >= 0, jnp.take_along_axis(x, jnp.maximum(index, 0), 1), 0.0)

    return take(lp), take(ent)


def make_forward_fn(
    graphdef: nnx.GraphDef, *, temperature: float, impl: str, with_hidden: bool, with_teacher: bool
) -> Callable[..., dict]:
    """A jitted no-grad pass returning old log-probs/entropy (+ hidden, + teacher stats)."""

    @jax.jit
    def forward(params: Any, rest: Any, batch: dict) -> dict:
        model = nnx.merge(graphdef, params, rest)
        lp, ent, hidden = sequence_stats(model, batch, temperature=temperature, impl=impl)
        out = {"logprobs": lp, "entropy": ent}
        if with_hidden:
            out["hidden"] = hidden.astype(jnp.float32)
        if with_teacher:
            out["teacher_logprobs"], out["teacher_entropy"] = teacher_stats(
                model, batch, temperature=temperature, impl=impl
            )
        return jax.lax.stop_gradient(out)

    return forward


def _split_micro(batch: dict, microbatches: int) -> dict:
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
    mesh: Mesh | None = None,
    state_sharding: Any = None,
) -> Callable[[TrainState, Any, dict], tuple[TrainState, dict]]:
    """Builds `update(state, rest, batch) -> (state, metrics)`: one optimiser step on a mini-batch.

    Args:
        graphdef: the policy's graph definition (from `split_model`).
        method: supplies `loss(logprobs, batch)` and `normalizer(batch)`.
        optimizer: an optax transformation (`rljax.train.optim.make_optimizer`).
        temperature: logits temperature (same as sampling).
        impl: `kernels.token_stats` implementation.
        microbatches: gradient-accumulation chunks; micro-batch losses are weighted by
            normalizer(micro) / normalizer(full), so the result is the full-batch gradient.
        mesh, state_sharding: with a mesh, the update is compiled with explicit shardings: the
            state as `state_sharding`, the batch's rows over the data axes, the rest replicated.

    Returns:
        The jitted update, compiled once per batch shape, with the state donated.
    """

    def loss_fn(params, rest, batch):
        model = nnx.merge(graphdef, params, rest)
        lp, ent, _ = sequence_stats(model, batch, temperature=temperature, impl=impl)
        loss, metrics = method.loss(lp, batch)
        mask = batch["action_mask"]
        metrics = {**metrics, "entropy": (ent * mask).sum() / jnp.maximum(mask.sum(), 1)}
        return loss, metrics

    grad_fn = jax.value_and_grad(loss_fn, has_aux=True)

    def update(state: TrainState, rest: Any, batch: dict) -> tuple[TrainState, dict]:
        total = method.normalizer(batch)
        micro = _split_micro(batch, microbatches)

        def accumulate(carry, mb):
            grads_acc, loss_acc, metrics_acc = carry
            weight = method.normalizer(mb) / total
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
        metrics = {
            **metrics,
            "loss": loss,
            "grad_norm": optax.global_norm(grads),
            "skipped_updates": opt_state.total_notfinite,
        }
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
