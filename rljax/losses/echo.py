"""ECHO: a next-token cross-entropy on environment output next to the GRPO policy loss.

"ECHO: Terminal Agents Learn World Models for Free", Shrivastava, Kauffmann, Awadallah,
Papailiopoulos, arXiv 2605.24517; official code microsoft/echo-rl (SkyRL). Spec: methods/echo.md.

Mask convention: `env_mask` and `warning_mask` are [B, T] with the standard alignment. The spec
has them disjoint; the rollout's `Trajectories` include warnings in `env_mask`. Both work: the
environment-content target is `env_mask & ~warning_mask`, and an observation token is one in
either mask.
"""

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_rank, check_shape
from rljax.losses.aggregation import aggregate, aggregate_sums
from rljax.losses.policy import policy_loss

TARGETS = ("env_only", "warning_only", "warning_plus_env", "full_observation")
NORMALIZATIONS = ("full_observation_tokens", "selected_tokens")
SCHEDULES = ("constant", "linear_decay", "step_decay")
_DENOMINATOR_EPS = 1e-3


def _pooled_nll(nll: jax.Array, mask: jax.Array) -> jax.Array:
    """sum(mask * nll) / (sum(mask) + 1e-3), the ECHO training-log convention."""
    return jnp.sum(jnp.where(mask, nll, 0.0)) / (
        jnp.sum(mask, dtype=jnp.float32) + _DENOMINATOR_EPS
    )


def echo_env_loss(
    logprobs: jax.Array,
    env_mask: jax.Array,
    warning_mask: jax.Array,
    *,
    normalization: str = "full_observation_tokens",
    target: str = "env_only",
    observation_mask: jax.Array | None = None,
    obs_count: jax.Array | None = None,
    num_sequences: jax.typing.ArrayLike | None = None,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ECHO environment term: per-trajectory normalised NLL of environment-output tokens.

    arXiv 2605.24517; echo.md ECHO-4..6:
        L_Env = (1/B) sum_b [ sum_t s[b,t] * (-l[b,t]) ] / D[b]
    with target mask s (env_only: environment content; warning_only: warnings;
    warning_plus_env: both; full_observation: `observation_mask`, the whole observation message
    including chat glue) and denominator D[b] = obs_count[b] + 1e-3 (full_observation_tokens,
    warnings included) or sum_t s[b, t] + 1e-3 (selected_tokens). No ratio, clip or advantage:
    the gradient flows through `logprobs` only. A trajectory without observations contributes 0
    but counts in 1/B; an all-zero target mask gives exactly 0 with a zero gradient.

    Args:
        logprobs: [B, T] temperature-scaled token log-probs of the current policy.
        env_mask: [B, T] environment-output tokens (may include the warning tokens).
        warning_mask: [B, T] harness-warning tokens of observations.
        normalization: "full_observation_tokens" (default, official code) or "selected_tokens".
        target: "env_only" (default), "warning_only", "warning_plus_env" or "full_observation".
        observation_mask: [B, T] whole observation messages; required for full_observation.
        obs_count: [B] warning + environment content tokens of each trajectory counted before any
            per-observation cap; None: counted from the masks.
        num_sequences: B of the whole mini-batch when this is one micro-batch; None: local B.

    Returns:
        (loss, metrics): float32 scalar, and float32 scalars "env_loss", "ce_env_per_token",
        "ce_warning_per_token", "ce_selected_per_token" (pooled NLL over token counts + 1e-3).
    """
    check_rank("logprobs", logprobs, 2)
    check_shape("env_mask", env_mask, logprobs.shape)
    check_shape("warning_mask", warning_mask, logprobs.shape)
    check_choice("normalization", normalization, NORMALIZATIONS)
    check_choice("target", target, TARGETS)
    warnings = jnp.asarray(warning_mask, bool)
    env = jnp.asarray(env_mask, bool) & ~warnings
    if target == "full_observation":
        if observation_mask is None:
            raise ValueError("target='full_observation' needs observation_mask [B, T], got None")
        check_shape("observation_mask", observation_mask, logprobs.shape)
        selected = jnp.asarray(observation_mask, bool)
    else:
        selected = {"env_only": env, "warning_only": warnings, "warning_plus_env": env | warnings}[
            target
        ]
    if normalization == "selected_tokens":
        denominators = jnp.sum(selected, axis=1, dtype=jnp.float32)
    elif obs_count is None:
        denominators = jnp.sum(env | warnings, axis=1, dtype=jnp.float32)
    else:
        check_shape("obs_count", obs_count, logprobs.shape[:1])
        denominators = jnp.asarray(obs_count, jnp.float32)
    denominators = jax.lax.stop_gradient(denominators) + _DENOMINATOR_EPS
    if num_sequences is None:
        num_sequences = logprobs.shape[0]
    else:
        check_rank("num_sequences", num_sequences, 0)
    nll = -jnp.asarray(logprobs, jnp.float32)
    row_nll = jnp.sum(jnp.where(selected, nll, 0.0), axis=1)  # [B]
    loss = jnp.sum(row_nll / denominators) / jnp.asarray(num_sequences, jnp.float32)
    logged = jax.lax.stop_gradient(nll)
    metrics = {
        "env_loss": jax.lax.stop_gradient(loss),
        "ce_env_per_token": _pooled_nll(logged, env),
        "ce_warning_per_token": _pooled_nll(logged, warnings),
        "ce_selected_per_token": _pooled_nll(logged, selected),
    }
    return loss, metrics


def echo_loss(
    logprobs: jax.Array,
    old_logprobs: jax.Array,
    advantages: jax.Array,
    action_mask: jax.Array,
    env_mask: jax.Array,
    warning_mask: jax.Array,
    *,
    coef: jax.typing.ArrayLike = 0.05,
    normalization: str = "full_observation_tokens",
    target: str = "env_only",
    observation_mask: jax.Array | None = None,
    obs_count: jax.Array | None = None,
    env_only_rows: jax.Array | None = None,
    num_sequences: jax.typing.ArrayLike | None = None,
    **policy_loss_kwargs,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """ECHO total loss: GRPO on action tokens plus coef times the environment NLL.

    arXiv 2605.24517; echo.md ECHO-3 and ECHO-8, both terms from one forward pass:
        L = L_GRPO(action tokens) + lambda * L_Env
    with L_GRPO = (1/B) sum_b sum_t a*lp / max(sum_t a, 1), the official code's "sequence mean"
    over ALL B trajectories (rows without action tokens count in 1/B, unlike grpo.md's
    seq-mean-token-mean, which skips them [verl]). That is the default here: mode
    "seq-mean-token-mean" with denominator `num_sequences` (local B when None); pass `mode=` or
    `denominator=` to override. `coef = 0` is exactly the GRPO policy loss; rows flagged in
    `env_only_rows` (verifier-free data) have their action mask zeroed, so only the environment
    term trains on them. `coef` may be a traced scalar from `echo_coefficient`.

    Args:
        logprobs: [B, T] temperature-scaled current-policy log-probs (tau = 0.8 in the paper).
        old_logprobs: [B, T] sampling-policy log-probs (stop-gradient).
        advantages: [B] GRPO advantages (stop-gradient).
        action_mask: [B, T] model-generated tokens.
        env_mask: [B, T] environment-output tokens.
        warning_mask: [B, T] harness-warning tokens.
        coef: lambda, the environment-loss coefficient (0.05 in the paper).
        normalization, target, observation_mask, obs_count: see `echo_env_loss`.
        env_only_rows: [B] bool rows trained by the environment term only, or None.
        num_sequences: B of the whole mini-batch when this is one micro-batch; None: local B.
        **policy_loss_kwargs: forwarded to `policy_loss` (clip_low, clip_high, dual_clip, mode,
            max_len, log_ratio_clamp, denominator).

    Returns:
        (loss, metrics): float32 scalar; metrics of `policy_loss` and `echo_env_loss` plus
        "echo_coef" and "loss".
    """
    check_rank("logprobs", logprobs, 2)
    check_shape("action_mask", action_mask, logprobs.shape)
    action_mask = jnp.asarray(action_mask, bool)
    if env_only_rows is not None:
        check_shape("env_only_rows", env_only_rows, logprobs.shape[:1])
        action_mask = action_mask & ~jnp.asarray(env_only_rows, bool)[:, None]
    batch_rows = logprobs.shape[0] if num_sequences is None else num_sequences
    policy_loss_kwargs.setdefault("mode", "seq-mean-token-mean")
    if policy_loss_kwargs["mode"] != "token-mean":
        policy_loss_kwargs.setdefault("denominator", batch_rows)
    grpo_loss, grpo_metrics = policy_loss(
        logprobs, old_logprobs, advantages, action_mask, **policy_loss_kwargs
    )
    env_loss, env_metrics = echo_env_loss(
        logprobs,
        env_mask,
        warning_mask,
        normalization=normalization,
        target=target,
        observation_mask=observation_mask,
        obs_count=obs_count,
        num_sequences=num_sequences,
    )
    coef = jax.lax.stop_gradient(jnp.asarray(coef, jnp.float32))
    check_rank("coef", coef, 0)
    loss = grpo_loss + coef * env_loss
    metrics = {
        **grpo_metrics,
        **env_metrics,
        "echo_coef": coef,
        "loss": jax.lax.stop_gradient(loss),
    }
    return loss, metrics


def echo_coefficient(
    step: jax.typing.ArrayLike,
    *,
    coef: float = 0.05,
    schedule: str = "constant",
    coef_end: float = 0.0,
    total_steps: int | None = None,
    transition_step: int | None = None,
    steps: tuple[int, ...] | None = None,
    values: tuple[float, ...] | None = None,
) -> jax.Array:
    """The ECHO coefficient lambda_k at optimiser step k (jit-compatible in `step`).

    arXiv 2605.24517; echo.md ECHO-7:
        constant    : lambda_k = lambda
        linear_decay: lambda_k = lambda + (lambda_end - lambda) * min(k / max(N_steps, 1), 1)
        step_decay  : with (steps, values): values[j] for the last j with k >= steps[j]
                      (values[0] before steps[0]); else lambda before transition_step and
                      lambda_end from it on.

    Args:
        step: k, a scalar int (Python or traced).
        coef: lambda, the initial (or constant) coefficient.
        schedule: "constant", "linear_decay" or "step_decay".
        coef_end: lambda_end for linear_decay and the two-value step_decay.
        total_steps: N_steps, required by linear_decay.
        transition_step: the switch step of the two-value step_decay.
        steps: increasing step boundaries of a piecewise-constant step_decay.
        values: the coefficients of a piecewise-constant step_decay, same length as `steps`.

    Returns:
        float32 scalar lambda_k.
    """
    check_choice("schedule", schedule, SCHEDULES)
    check_rank("step", step, 0)
    step = jnp.asarray(step, jnp.float32)
    if schedule == "constant":
        return jnp.full((), coef, jnp.float32)
    if schedule == "linear_decay":
        if total_steps is None:
            raise ValueError("schedule='linear_decay' needs total_steps, got None")
        progress = jnp.minimum(step / max(total_steps, 1), 1.0)
        return jnp.asarray(coef + (coef_end - coef) * progress, jnp.float32)
    if steps is not None or values is not None:
        if steps is None or values is None or len(steps) != len(values) or not steps:
            raise ValueError(
                f"step_decay needs steps and values of equal non-zero length, got "
                f"steps={steps!r}, values={values!r}"
            )
        if any(b <= a for a, b in zip(steps, steps[1:])):
            raise ValueError(f"steps must be strictly increasing, got {steps!r}")
        index = jnp.maximum(jnp.sum(step >= jnp.asarray(steps, jnp.float32)) - 1, 0)
        return jnp.asarray(values, jnp.float32)[index]
    if transition_step is None:
        raise ValueError("schedule='step_decay' needs transition_step or (steps, values), got None")
    return jnp.where(step < transition_step, coef, coef_end).astype(jnp.float32)


def echo_env_metrics(
    logprobs: jax.Array, env_mask: jax.Array, argmax_hits: jax.Array | None = None
) -> dict[str, jax.Array]:
    """Held-out world-model metrics: pooled environment-token cross-entropy and accuracy.

    arXiv 2605.24517; echo.md ECHO-10, on teacher-forced trajectories the evaluated policy did
    not generate:
        CE_env  = sum e * (-l) / sum e
        Acc_env = sum e * [argmax_v logits == token] / sum e
    Returns sums and counts as well so that evaluation over many batches pools exactly.

    Args:
        logprobs: [B, T] token log-probs (at the chosen temperature).
        env_mask: [B, T] tokens to score (e.g. env content or stdout only).
        argmax_hits: [B, T] bool, whether the greedy prediction equals the token; optional.

    Returns:
        dict of float32 scalars: "nll_sum", "token_count", "ce_env" and, with `argmax_hits`,
        "hit_sum" and "acc_env". A batch without env tokens gives ce_env = acc_env = 0.
    """
    check_rank("logprobs", logprobs, 2)
    check_shape("env_mask", env_mask, logprobs.shape)
    nll = -jnp.asarray(logprobs, jnp.float32)
    nll_sum, count = aggregate_sums(nll, env_mask)
    metrics = {"nll_sum": nll_sum, "token_count": count, "ce_env": aggregate(nll, env_mask)}
    if argmax_hits is not None:
        check_shape("argmax_hits", argmax_hits, logprobs.shape)
        hits = jnp.asarray(argmax_hits, jnp.float32)
        metrics.update(hit_sum=aggregate_sums(hits, env_mask)[0], acc_env=aggregate(hits, env_mask))
    return metrics
