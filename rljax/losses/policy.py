"""The clipped policy-gradient surrogate of the GRPO family (methods/grpo.md, GRPO-3..7)."""

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_positive, check_rank, check_shape
from rljax.losses.aggregation import aggregate


def broadcast_advantages(advantages: jax.Array, shape: tuple[int, int]) -> jax.Array:
    """Token-level advantages: a [B] vector repeated over T, or a [B, T] array as given.

    grpo.md GRPO-3 (the mask is applied by the aggregation).

    Args:
        advantages: [B] per-sequence or [B, T] per-token advantages.
        shape: (B, T) of the per-token arrays.

    Returns:
        [B, T] float32 advantages (stop-gradient).
    """
    check_rank("advantages", advantages, {1, 2})
    advantages = jax.lax.stop_gradient(jnp.asarray(advantages, jnp.float32))
    if advantages.ndim == 1:
        check_shape("advantages", advantages, shape[:1])
        return jnp.broadcast_to(advantages[:, None], shape)
    check_shape("advantages", advantages, shape)
    return advantages


def clipped_surrogate(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    log_ratio_clamp: float = 20.0,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Per-token PPO loss with asymmetric clip and optional dual clip, before aggregation.

    PPO (Schulman et al., arXiv 1707.06347) with DAPO's clip-higher (Yu et al., arXiv 2503.14476)
    and dual clip (Ye et al., arXiv 1912.09729); grpo.md GRPO-4..6:
        delta = clip(where(mask, logp - sg(logp_old), 0), -c, c) ;  rho = exp(delta)
        l     = max(-A rho, -A clip(rho, 1 - eps_low, 1 + eps_high))
        l     = min(l, -A c_dual)  where A < 0   (dual clip, when enabled)
    d l / d logp is -A rho on the unclipped branch and 0 on a clipped one. Ties (the two branches
    equal, e.g. rho = 1 on a one-sided clip with eps_low = 0, or l = -A c_dual exactly) take the
    unclipped branch and its gradient -A rho, as verl does; the branch is chosen with `jnp.where`
    rather than by the subgradient convention of `max`/`clip`, which would split it.

    Args:
        logprobs: [B, T] current-policy token log-probs (carries the gradient).
        old_logprobs: [B, T] log-probs of the policy that sampled the batch (stop-gradient).
        advantages: [B] or [B, T] advantages (stop-gradient).
        mask: [B, T] loss-token mask.
        clip_low: eps_low, >= 0 and < 1.
        clip_high: eps_high, >= 0.
        dual_clip: c_dual > 1, or None to disable.
        log_ratio_clamp: c, the clamp on the log-ratio before exp, > 0.

    Returns:
        (losses [B, T] float32, zero at masked positions; per-token diagnostics as [B, T]
        float32 arrays: "ratio", "clipped" and "dual_clipped" indicators, "log_ratio").
    """
    check_rank("logprobs", logprobs, 2)
    check_shape("old_logprobs", old_logprobs, logprobs.shape)
    check_shape("mask", mask, logprobs.shape)
    if not 0.0 <= clip_low < 1.0:
        raise ValueError(f"clip_low must be in [0, 1), got {clip_low!r}")
    if not clip_high >= 0.0:
        raise ValueError(f"clip_high must be >= 0, got {clip_high!r}")
    if dual_clip is not None and not dual_clip > 1.0:
        raise ValueError(f"dual_clip must be None or > 1, got {dual_clip!r}")
    check_positive("log_ratio_clamp", log_ratio_clamp)
    valid = jnp.asarray(mask, bool)
    adv = broadcast_advantages(advantages, logprobs.shape)
    logprobs = jnp.asarray(logprobs, jnp.float32)
    old_logprobs = jax.lax.stop_gradient(jnp.asarray(old_logprobs, jnp.float32))
    log_ratio = jnp.where(valid, logprobs - old_logprobs, 0.0)
    log_ratio = jnp.clip(log_ratio, -log_ratio_clamp, log_ratio_clamp)
    ratio = jnp.exp(log_ratio)
    unclipped = -adv * ratio
    # The clipped branch is active only where it is strictly larger, i.e. where rho lies outside
    # [1 - eps_low, 1 + eps_high]; there its value is the constant bound (no gradient). Choosing the
    # branch with `jnp.where` instead of `jnp.maximum(., -adv * jnp.clip(ratio, ...))` gives ties
    # (rho on a bound, e.g. rho = 1 with eps_low = 0) the unclipped gradient -A rho: `jnp.maximum`
    # and `jnp.clip` each split a tie's gradient in half, which gave 0.75 * (-A) on-policy.
    clipped = -adv * jnp.clip(jax.lax.stop_gradient(ratio), 1.0 - clip_low, 1.0 + clip_high)
    is_clipped = clipped > unclipped
    losses = jnp.where(is_clipped, clipped, unclipped)
    is_dual_clipped = jnp.zeros_like(is_clipped)
    if dual_clip is not None:
        dual_bound = -adv * dual_clip
        is_dual_clipped = (adv < 0) & (losses > dual_bound)
        losses = jnp.where(is_dual_clipped, dual_bound, losses)
    losses = jnp.where(valid, losses, 0.0)
    diagnostics = {
        "ratio": ratio,
        "clipped": (is_clipped & ~is_dual_clipped).astype(jnp.float32),
        "dual_clipped": is_dual_clipped.astype(jnp.float32),
        "log_ratio": log_ratio,
    }
    return losses, diagnostics


def policy_loss(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    mode: str = "token-mean",
    max_len: int | None = None,
    log_ratio_clamp: float = 20.0,
    denominator: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """GRPO-family clipped policy loss, aggregated to a scalar.

    GRPO (Shao et al., arXiv 2402.03300) / DAPO (Yu et al., arXiv 2503.14476) / Dr.GRPO
    (Liu et al., arXiv 2503.20783); grpo.md GRPO-4..7: `clipped_surrogate` per token, reduced
    by `aggregate`. Variants are compositions: GRPO = group_advantages + mode
    "seq-mean-token-mean"; DAPO = clip_high 0.28 + "token-mean"; Dr.GRPO =
    group_advantages(scale="none") + "seq-mean-token-sum-norm". On-policy (rho = 1) the gradient
    is -A * grad(logp) aggregated, i.e. REINFORCE with the group baseline.

    Args:
        logprobs: [B, T] current-policy token log-probs (carries the gradient).
        old_logprobs: [B, T] sampling-policy log-probs (stop-gradient).
        advantages: [B] per-sequence or [B, T] per-token advantages (stop-gradient).
        mask: [B, T] loss-token mask (the action mask).
        clip_low: eps_low.
        clip_high: eps_high (0.28 for DAPO clip-higher).
        dual_clip: c_dual > 1 or None.
        mode: aggregation mode, see `aggregate`.
        max_len: L_norm for seq-mean-token-sum-norm (None: T).
        log_ratio_clamp: clamp on logp - logp_old before exp.
        denominator: optional global aggregation denominator (gradient accumulation).

    Returns:
        (loss, metrics): float32 scalar loss and a dict of float32 scalars, token means over the
        mask: "policy_loss", "clip_fraction", "dual_clip_fraction", "ratio_mean" and
        "approx_kl" (mean of 0.5 * (logp - logp_old)^2).
    """
    losses, diagnostics = clipped_surrogate(
        logprobs,
        old_logprobs,
        advantages,
        mask,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip=dual_clip,
        log_ratio_clamp=log_ratio_clamp,
    )
    loss = aggregate(losses, mask, mode=mode, max_len=max_len, denominator=denominator)

    def token_mean(x: jax.Array) -> jax.Array:
        return aggregate(jax.lax.stop_gradient(x), mask)

    metrics = {
        "policy_loss": jax.lax.stop_gradient(loss),
        "clip_fraction": token_mean(diagnostics["clipped"]),
        "dual_clip_fraction": token_mean(diagnostics["dual_clipped"]),
        "ratio_mean": token_mean(diagnostics["ratio"]),
        "approx_kl": token_mean(0.5 * diagnostics["log_ratio"] ** 2),
    }
    return loss, metrics
