"""`kernels.fused_policy_loss`: the clipped policy loss and its gradient in the vocabulary sweep."""

import dataclasses
import functools

import jax
import jax.numpy as jnp
from rljax.kernels._validation import check_rank, check_shape, check_unembedding_inputs
from rljax.kernels.reference import token_stats_reference
from rljax.kernels.token_stats import SweepConfig, backward, forward, resolve_impl
from rljax.kernels.types import BlockSizes, TokenStats

from rljax.losses.aggregation import aggregate
from rljax.losses.policy import policy_loss


@dataclasses.dataclass(frozen=True)
class _FusedConfig:
    sweep: SweepConfig | None  # None for impl="reference" (autodiff, no sweep)
    policy_kwargs: tuple[tuple[str, object], ...]
    jsd_coef: float


def _objective(
    config: _FusedConfig,
    logprob: jax.Array,
    jsd: jax.Array | None,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    denominator: jax.Array | None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """policy_loss on [B, T] log-probs, plus jsd_coef * aggregate(jsd) when a JSD term is on."""
    kwargs = dict(config.policy_kwargs)
    loss, metrics = policy_loss(
        logprob, old_logprobs, advantages, mask, denominator=denominator, **kwargs
    )
    if jsd is not None:
        jsd_loss = config.jsd_coef * aggregate(
            jsd,
            mask,
            mode=kwargs.get("mode", "token-mean"),
            max_len=kwargs.get("max_len"),
            denominator=denominator,
        )
        loss = loss + jsd_loss
        metrics = {**metrics, "jsd_loss": jsd_loss}
    return loss, metrics


def _stats_metrics(stats: TokenStats, mask: jax.Array) -> dict[str, jax.Array]:
    """Per-token statistics ([B, T]) and their token means over the mask, for the trainer."""
    shape = mask.shape
    metrics = {
        "token_logprob": stats.logprob.reshape(shape),
        "token_entropy": stats.entropy.reshape(shape),
    }
    metrics["entropy"] = aggregate(metrics["token_entropy"], mask)
    if stats.jsd is not None:
        metrics["teacher_logprob"] = stats.teacher_logprob.reshape(shape)
        metrics["teacher_entropy"] = stats.teacher_entropy.reshape(shape)
        metrics["jsd"] = stats.jsd.reshape(shape)
        metrics["jsd_mean"] = aggregate(metrics["jsd"], mask)
    return jax.lax.stop_gradient(metrics)


@functools.lru_cache(maxsize=None)
def _fused_vjp(config: _FusedConfig):
    """custom_vjp whose forward runs the statistics sweep, takes d loss / d logprob (and d loss /
    d jsd) from the policy loss by jax.vjp (O(N)), and runs the gradient sweep; the backward only
    scales the stored gradients by the incoming cotangent. Undifferentiated calls skip the
    gradient sweep."""

    def statistics(
        hidden, w_unembed, targets, old_logprobs, advantages, mask, teacher_hidden, denominator
    ):
        stats, res = forward(config.sweep, hidden, w_unembed, targets, teacher_hidden)
        use_jsd = teacher_hidden is not None and config.jsd_coef != 0.0
        inputs = (
            stats.logprob.reshape(mask.shape),
            stats.jsd.reshape(mask.shape) if use_jsd else None,
        )
        objective = functools.partial(
            _objective,
            config,
            old_logprobs=old_logprobs,
            advantages=advantages,
            mask=mask,
            denominator=denominator,
        )
        return objective, inputs, res, _stats_metrics(stats, mask)

    @jax.custom_vjp
    def loss_fn(*args):
        objective, inputs, _, stats_metrics = statistics(*args)
        loss, metrics = objective(*inputs)
        return loss, {**metrics, **stats_metrics}

    def fwd(*args):
        objective, inputs, res, stats_metrics = statistics(*args)
        loss, pullback, metrics = jax.vjp(objective, *inputs, has_aux=True)
        g_logprob, g_jsd = pullback(jnp.ones_like(loss))
        cotangents = TokenStats(
            g_logprob.reshape(-1), None, None, None, None if g_jsd is None else g_jsd.reshape(-1)
        )
        d_hidden, d_w, _ = backward(config.sweep, res, cotangents)
        return (loss, {**metrics, **stats_metrics}), (d_hidden, d_w)

    def bwd(grads, cotangents):
        g_loss = cotangents[0]
        d_hidden, d_w = grads
        return (
            (g_loss * d_hidden).astype(d_hidden.dtype),
            (g_loss * d_w).astype(d_w.dtype),
            None,
            None,
            None,
            None,
            None,
            None,
        )

    loss_fn.defvjp(fwd, bwd)
    return loss_fn


def fused_policy_loss(
    hidden: jax.Array,
    w_unembed: jax.Array,
    targets: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    temperature: float = 1.0,
    teacher_hidden: jax.Array | None = None,
    jsd_coef: float = 0.0,
    impl: str = "auto",
    block_sizes: BlockSizes | None = None,
    **policy_loss_kwargs,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped policy loss on token log-probs computed from hidden states, gradients fused.

    Equals `policy_loss(token_stats(hidden, w, targets).logprob, old_logprobs, advantages, mask,
    **policy_loss_kwargs)` (grpo.md GRPO-1, GRPO-4..7; the surrogate is rljax.losses.policy_loss
    itself, differentiated by jax.vjp w.r.t. the [B, T] log-probs), plus with a teacher and
    jsd_coef != 0 the Anti-SD full-vocabulary term jsd_coef * aggregate(JSD(pi_S || pi_T), mask)
    with the teacher under stop-gradient (anti_sd.md ASD-3; jsd_coef < 0 ascends the divergence).
    Token-level credit (DelTA coefficients, Anti-SD penalties, RubricEM stage advantages) enters
    through `advantages` [B, T].

    For the blockwise implementations the gradient sweep over the vocabulary runs inside the
    forward call, right after the statistics sweep (the surrogate's d loss / d logprob is O(N)),
    so the backward pass does no vocabulary work: it scales the stored d hidden and d w_unembed by
    the incoming cotangent (Liger's fused linear GRPO loss, without [N, V] logits). impl
    "reference" composes token_stats and policy_loss under autodiff.

    Args:
        hidden: [B, T, H] hidden states predicting `targets`.
        w_unembed: [H, V] unembedding, same dtype as hidden.
        targets: [B, T] int token ids.
        old_logprobs: [B, T] sampling-policy log-probs (stop-gradient).
        advantages: [B] or [B, T] advantages or token-level credit (stop-gradient).
        mask: [B, T] loss-token mask.
        temperature: tau > 0.
        teacher_hidden: optional [B, T, H] teacher hidden states (stop-gradient): their log-prob,
            entropy and JSD are returned in the metrics.
        jsd_coef: weight of the aggregated full-vocabulary JSD (requires teacher_hidden).
        impl: "auto", "pallas", "xla_chunked" or "reference" (see `token_stats`).
        block_sizes: tile sizes; None uses the backend default.
        **policy_loss_kwargs: clip_low, clip_high, dual_clip, mode, max_len, log_ratio_clamp,
            denominator, as for rljax.losses.policy_loss.

    Returns:
        (loss, metrics): float32 scalar and a dict with policy_loss's metrics plus, without
        gradient, "entropy" (token mean over the mask), "token_logprob" and "token_entropy"
        [B, T] (DelTA's token probability is exp(token_logprob)), and with a teacher
        "teacher_logprob", "teacher_entropy", "jsd" [B, T] and "jsd_mean" ("jsd_loss" when the
        JSD term is on).
    """
    check_rank("hidden", hidden, 3)
    check_unembedding_inputs(hidden, w_unembed, targets, teacher_hidden, temperature)
    check_shape("old_logprobs", old_logprobs, targets.shape)
    check_shape("mask", mask, targets.shape)
    if jsd_coef != 0.0 and teacher_hidden is None:
        raise ValueError(f"jsd_coef={jsd_coef!r} needs teacher_hidden, got None")
    impl, platform = resolve_impl(impl)
    hidden_size = hidden.shape[-1]
    flat_hidden = hidden.reshape(-1, hidden_size)
    flat_teacher = None if teacher_hidden is None else teacher_hidden.reshape(-1, hidden_size)
    flat_targets = targets.reshape(-1).astype(jnp.int32)
    denominator = policy_loss_kwargs.pop("denominator", None)
    if impl == "reference":
        stats = token_stats_reference(
            flat_hidden,
            w_unembed,
            flat_targets,
            temperature=temperature,
            teacher_hidden=flat_teacher,
            stop_teacher_gradient=True,
        )
        config = _FusedConfig(None, tuple(sorted(policy_loss_kwargs.items())), float(jsd_coef))
        jsd = stats.jsd.reshape(mask.shape) if jsd_coef != 0.0 else None
        loss, metrics = _objective(
            config,
            stats.logprob.reshape(mask.shape),
            jsd,
            old_logprobs,
            advantages,
            mask,
            denominator,
        )
        return loss, {**metrics, **_stats_metrics(stats, mask)}
    if block_sizes is None:
        block_sizes = BlockSizes.get_default(platform)
    sweep = SweepConfig(impl, float(temperature), block_sizes, platform, stop_teacher_gradient=True)
    config = _FusedConfig(sweep, tuple(sorted(policy_loss_kwargs.items())), float(jsd_coef))
    return _fused_vjp(config)(
        flat_hidden,
        w_unembed,
        flat_targets,
        old_logprobs,
        advantages,
        mask,
        flat_teacher,
        denominator,
    )
