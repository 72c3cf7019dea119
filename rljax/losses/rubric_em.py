"""RubricEM: stage-structured GRPO (SS-GRPO) and the reflection meta-policy's reward.

Paper: Li, Dalvi Mishra, Wang, Yan, Chen, Li, Le, Han, Lee, Tong, Lee and Pfister, "RubricEM:
Meta-RL with Rubric-guided Policy Decomposition beyond Verifiable Rewards", arXiv 2605.10899
(https://arxiv.org/abs/2605.10899). No official code. Specification: `methods/rubric_em.md`.

Each trajectory follows K stages (Plan, Research, Review, Answer). A judge scores every stage
against stage-specific rubrics; an upper-triangular matrix Lambda mixes each stage's score with
the downstream ones into stage returns, which are group-normalised per stage and used as the
advantage of that stage's tokens. Only the math lives here: rubric generation, pruning, the bank
and the curriculum belong to the environment.
"""

from __future__ import annotations

from collections.abc import Sequence

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rljax.losses._checks import check_choice, check_positive, check_rank, check_shape
from rljax.losses.advantages import group_advantages

__all__ = [
    "PAPER_STAGE_DEPENDENCE",
    "answer_score_fallback",
    "reflection_advantages",
    "reflection_utility",
    "rubric_stage_score",
    "stage_returns",
    "stage_token_advantages",
    "stagewise_advantages",
    "terminal_broadcast_advantages",
]

PAPER_STAGE_DEPENDENCE = np.array(
    [[1.0, 0.4, 0.6, 0.8], [0.0, 1.0, 0.4, 0.8], [0.0, 0.0, 1.0, 0.8], [0.0, 0.0, 0.0, 1.0]],
    np.float32,
)
"""The paper's Lambda (REM-3) for the stages (Plan, Research, Review, Answer)."""

_STDS = ("population", "unbiased")


def _is_concrete(x: chex.Array) -> bool:
    return not isinstance(x, jax.core.Tracer)


def _group_normalise(x: jax.Array, *, std: str, eps: float) -> jax.Array:
    """GRPO group normalisation (grpo.md GRPO-2) over axis 1 of [P, G] or [P, G, K] (per k)."""
    if x.ndim == 2:
        return group_advantages(x, std=std, eps=eps)
    p, g, k = x.shape
    flat = jnp.moveaxis(x, 2, 1).reshape(p * k, g)
    return jnp.moveaxis(group_advantages(flat, std=std, eps=eps).reshape(p, k, g), 1, 2)


def rubric_stage_score(
    scores: chex.Array, weights: chex.Array, negative: chex.Array, mask: chex.Array
) -> jax.Array:
    """Weighted rubric score of one stage in [0, 1], negative rubrics inverted.

    RubricEM eq. REM-2 (arXiv 2605.10899):
        s~_r = s_r (positive) or 2 - s_r (negative)
        R = sum_r w_r s~_r / (2 sum_r w_r)          (0 for a stage with no rubric)
    Differs from the paper: the paper says only "weighted average of rubric scores within the
    stage, negatives inverted"; this exact form is the library's choice (spec REM-2).

    Args:
        scores: [..., N] judge scores s_r in {0, 1, 2} (N rubric slots, padded).
        weights: [..., N] weights w_r in {1 minor, 2 important, 3 critical}.
        negative: [..., N] bool, True for a negative-polarity rubric (2 = flaw fully exhibited).
        mask: [..., N] bool, True on the slots that hold a rubric.

    Returns:
        [...] float32 stage scores.
    """
    check_rank("scores", scores, set(range(1, 8)))
    for name, x in (("weights", weights), ("negative", negative), ("mask", mask)):
        check_shape(name, x, jnp.shape(scores))
    s = jnp.asarray(scores, jnp.float32)
    inverted = jnp.where(jnp.asarray(negative, bool), 2.0 - s, s)
    w = jnp.where(jnp.asarray(mask, bool), jnp.asarray(weights, jnp.float32), 0.0)
    total = jnp.sum(w, axis=-1)
    score = jnp.sum(w * inverted, axis=-1) / (2.0 * jnp.where(total > 0, total, 1.0))
    return jnp.where(total > 0, score, 0.0)


def answer_score_fallback(stage_rewards: chex.Array, judge_failed: chex.Array) -> jax.Array:
    """Replace every stage score of a trajectory whose judge call failed by its answer score.

    RubricEM eq. REM-2, failure rule (library choice of the spec): R[i, k] := R[i, K-1] for all k.

    Args:
        stage_rewards: [..., K] stage scores R.
        judge_failed: [...] bool, True where the stage-scoring call failed.

    Returns:
        [..., K] float32 stage scores.
    """
    check_rank("stage_rewards", stage_rewards, set(range(1, 8)))
    check_shape("judge_failed", judge_failed, jnp.shape(stage_rewards)[:-1])
    r = jnp.asarray(stage_rewards, jnp.float32)
    return jnp.where(jnp.asarray(judge_failed, bool)[..., None], r[..., -1:], r)


def _check_dependence(dependence: chex.Array, num_stages: int) -> None:
    check_shape("dependence", dependence, (num_stages, num_stages))
    if not _is_concrete(dependence):
        return
    lam = np.asarray(dependence)
    if np.any(np.tril(lam, k=-1) != 0) or np.any(np.diag(lam) != 1):
        raise ValueError(
            "dependence must be upper-triangular with a unit diagonal "
            f"(lam[k, j] = 0 for j < k, lam[k, k] = 1), got\n{lam}"
        )


def stage_returns(stage_rewards: chex.Array, dependence: chex.Array) -> jax.Array:
    """Stage returns Ret[..., k] = sum_{j >= k} lam[k, j] R[..., j].

    RubricEM eq. REM-3 (arXiv 2605.10899); the paper's G^Lambda, renamed because G is the group
    size. Each stage's score is mixed with the scores of the stages downstream of it.

    Args:
        stage_rewards: [..., K] judge stage scores R.
        dependence: [K, K] Lambda, upper-triangular with unit diagonal (paper:
            `PAPER_STAGE_DEPENDENCE`); checked when concrete.

    Returns:
        [..., K] float32 stage returns.
    """
    check_rank("stage_rewards", stage_rewards, set(range(1, 8)))
    _check_dependence(dependence, jnp.shape(stage_rewards)[-1])
    r = jnp.asarray(stage_rewards, jnp.float32)
    return jnp.einsum("...j,kj->...k", r, jnp.asarray(dependence, jnp.float32))


def stagewise_advantages(
    stage_rewards: chex.Array, dependence: chex.Array, *, eps: float = 1e-8, std: str = "population"
) -> jax.Array:
    """SS-GRPO advantages: stage returns normalised per stage across the group.

    RubricEM eqs. REM-3 and REM-4 (arXiv 2605.10899):
        A[p, i, k] = (Ret[p, i, k] - mean_i Ret[p, :, k]) / (std_i Ret[p, :, k] + eps)
    A group whose returns of stage k are all equal gets A[:, :, k] = 0 exactly (the centring is
    not left to float rounding of the mean). With K = 1, Lambda = [[1]] and the same std/eps this
    is GRPO (grpo.md GRPO-2), including verl's G = 1 convention (A = Ret / (1 + eps)).
    Differs from the paper: std type and eps are unspecified there; the defaults are the base
    trainer's (population std, eps 1e-8), unbiased std with eps 1e-6 is the option.

    Args:
        stage_rewards: [P, G, K] judge stage scores.
        dependence: [K, K] Lambda (see `stage_returns`).
        eps: > 0, added to the std.
        std: "population" (ddof 0, default) or "unbiased" (ddof 1).

    Returns:
        [P, G, K] float32 advantages, under stop_gradient.
    """
    check_rank("stage_rewards", stage_rewards, 3)
    check_choice("std", std, _STDS)
    check_positive("eps", eps)
    returns = stage_returns(jax.lax.stop_gradient(stage_rewards), dependence)
    return jax.lax.stop_gradient(_group_normalise(returns, std=std, eps=eps))


def terminal_broadcast_advantages(
    stage_rewards: chex.Array, *, eps: float = 1e-8, std: str = "population"
) -> jax.Array:
    """Answer-only GRPO baseline: every stage gets the normalised answer score R[..., K-1].

    RubricEM eq. REM-7 (arXiv 2605.10899): SS-GRPO with R[i, j] := 0 for j < K-1 and
    lam[k, K-1] := 1, i.e. the terminal score broadcast to all stages.

    Args:
        stage_rewards: [P, G, K] judge stage scores (only the last stage is used).
        eps: > 0, added to the std.
        std: "population" (default) or "unbiased".

    Returns:
        [P, G, K] float32 advantages, equal across k, under stop_gradient.
    """
    check_rank("stage_rewards", stage_rewards, 3)
    num_stages = jnp.shape(stage_rewards)[-1]
    answer_only = (
        jnp.zeros(jnp.shape(stage_rewards), jnp.float32)
        .at[..., -1]
        .set(jnp.asarray(stage_rewards, jnp.float32)[..., -1])
    )
    dependence = np.eye(num_stages, dtype=np.float32)
    dependence[:, -1] = 1.0
    return stagewise_advantages(answer_only, dependence, eps=eps, std=std)


def stage_token_advantages(stage_adv: chex.Array, stage_ids: chex.Array) -> jax.Array:
    """Token advantages A_tok[b, t] = A[b, stage_ids[b, t]], and 0 where stage_ids is -1.

    RubricEM eq. REM-5 (arXiv 2605.10899). Prompt, retrieved bank context, tool output and padding
    carry stage id -1.

    Args:
        stage_adv: [B, K] per-stage advantages (`stagewise_advantages(...).reshape(B, K)`).
        stage_ids: [B, T] integer stage of each token in {-1, 0, ..., K-1}; range checked when
            concrete.

    Returns:
        [B, T] float32 token advantages, under stop_gradient.
    """
    check_rank("stage_adv", stage_adv, 2)
    check_rank("stage_ids", stage_ids, 2)
    num_rows, num_stages = jnp.shape(stage_adv)
    if jnp.shape(stage_ids)[0] != num_rows:
        raise ValueError(
            f"stage_ids must have B = {num_rows} rows like stage_adv "
            f"{jnp.shape(stage_adv)}, got shape {jnp.shape(stage_ids)}"
        )
    ids_dtype = jnp.asarray(stage_ids).dtype
    if not jnp.issubdtype(ids_dtype, jnp.integer):
        raise ValueError(f"stage_ids must be an integer array, got dtype {ids_dtype}")
    if _is_concrete(stage_ids):
        ids = np.asarray(stage_ids)
        if ids.size and (ids.min() < -1 or ids.max() >= num_stages):
            raise ValueError(
                f"stage_ids must lie in [-1, {num_stages - 1}] (K = {num_stages}), "
                f"got values in [{ids.min()}, {ids.max()}]"
            )
    ids = jnp.asarray(stage_ids)
    adv = jnp.take_along_axis(jnp.asarray(stage_adv, jnp.float32), jnp.maximum(ids, 0), axis=1)
    return jax.lax.stop_gradient(jnp.where(ids >= 0, adv, 0.0))


def reflection_utility(
    diagnostic: chex.Array,
    specificity: chex.Array,
    scope: chex.Array,
    valid: chex.Array,
    *,
    weights: Sequence[float] = (0.4, 0.3, 0.3),
) -> jax.Array:
    """Judged utility of a reflection: u = 0.4 diag + 0.3 spec + 0.3 scope, 0 if malformed.

    RubricEM eq. REM-10 (arXiv 2605.10899). Differs from the paper: its algorithm averages two
    judged utilities (u_within + u_cross) / 2 without mapping them to the three dimensions; the
    single weighted score is the library default (spec REM-10).

    Args:
        diagnostic: [P_r, G_ref] diagnostic accuracy in [0, 1].
        specificity: [P_r, G_ref] specificity in [0, 1].
        scope: [P_r, G_ref] scope and balance in [0, 1].
        valid: [P_r, G_ref] bool, the reflection has exactly the two required blocks.
        weights: the three dimension weights (paper 0.4, 0.3, 0.3).

    Returns:
        [P_r, G_ref] float32 utilities.
    """
    check_rank("diagnostic", diagnostic, 2)
    for name, x in (("specificity", specificity), ("scope", scope), ("valid", valid)):
        check_shape(name, x, jnp.shape(diagnostic))
    if len(weights) != 3:
        raise ValueError(
            f"weights must hold 3 numbers (diagnostic, specificity, scope), got {weights!r}"
        )
    w_diag, w_spec, w_scope = (float(w) for w in weights)
    u = (
        w_diag * jnp.asarray(diagnostic, jnp.float32)
        + w_spec * jnp.asarray(specificity, jnp.float32)
        + w_scope * jnp.asarray(scope, jnp.float32)
    )
    return jnp.where(jnp.asarray(valid, bool), u, 0.0)


def reflection_advantages(
    utilities: chex.Array, *, eps: float = 1e-8, std: str = "population"
) -> jax.Array:
    """Group-normalised reflection advantages A_ref = (u - mean u) / (std u + eps).

    RubricEM eq. REM-10 (arXiv 2605.10899); the group is the G_ref candidates of one query, with
    the same std type and eps as SS-GRPO (REM-4). Broadcast to the reflection tokens only.

    Args:
        utilities: [P_r, G_ref] utilities from `reflection_utility`.
        eps: > 0, added to the std.
        std: "population" (default) or "unbiased".

    Returns:
        [P_r, G_ref] float32 advantages, under stop_gradient.
    """
    check_rank("utilities", utilities, 2)
    check_choice("std", std, _STDS)
    check_positive("eps", eps)
    u = jax.lax.stop_gradient(jnp.asarray(utilities, jnp.float32))
    return jax.lax.stop_gradient(_group_normalise(u, std=std, eps=eps))
