"""Group-relative advantages of the GRPO family (methods/grpo.md, GRPO-2).

Rewards come as [P, G]: P prompts, G sampled responses each (row b = p*G + g of the batch). Every
function returns advantages of the same shape under `stop_gradient`; broadcast them to tokens with
`advantages.reshape(-1)[:, None] * mask`, or pass the [B] vector to `policy_loss`.
"""

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_positive, check_rank

_SCALES = ("std", "none")
_STDS = ("unbiased", "population")


def centre_groups(rewards: jax.Array) -> jax.Array:
    """r[p, g] - mu_p for [P, G] float32 rewards, exactly 0 on an all-equal group.

    The float32 mean of equal non-dyadic values (0.7, 1.1, ...) can round away from them, and
    dividing that residue by a tiny (group or task) std would blow it up; every estimator that
    centres by a group mean and divides by a spread goes through this guard.

    Args:
        rewards: [P, G] float32 rewards.

    Returns:
        [P, G] float32 centred rewards.
    """
    all_equal = jnp.all(rewards == rewards[:, :1], axis=1, keepdims=True)
    return jnp.where(all_equal, 0.0, rewards - jnp.mean(rewards, axis=1, keepdims=True))


def group_advantages(
    rewards: jax.Array, *, scale: str = "std", std: str = "unbiased", eps: float = 1e-6
) -> jax.Array:
    """GRPO and Dr.GRPO advantages: each reward relative to its own group.

    GRPO (Shao et al., arXiv 2402.03300), grpo.md GRPO-2:
        A[p, g] = (r[p, g] - mu_p) / (sigma_p + eps)
    Dr.GRPO (Liu et al., arXiv 2503.20783), `scale="none"`:
        A[p, g] = r[p, g] - mu_p
    mu_p is the group mean; sigma_p the group std, unbiased (divisor G - 1, the default) or
    population (divisor G). All-equal groups give A = 0 exactly. A single-sample group (G = 1)
    follows verl: mu := 0, sigma := 1, so GRPO gives r / (1 + eps) and Dr.GRPO gives r.

    Args:
        rewards: [P, G] scalar reward per response.
        scale: "std" (GRPO) or "none" (Dr.GRPO, no division).
        std: "unbiased" or "population" standard deviation (only with scale="std").
        eps: added to sigma_p before dividing.

    Returns:
        [P, G] float32 advantages (stop-gradient).
    """
    check_rank("rewards", rewards, 2)
    check_choice("scale", scale, _SCALES)
    check_choice("std", std, _STDS)
    check_positive("eps", eps)
    rewards = jax.lax.stop_gradient(jnp.asarray(rewards, jnp.float32))
    group_size = rewards.shape[1]
    if group_size == 1:
        advantages = rewards if scale == "none" else rewards / (1.0 + eps)
        return jax.lax.stop_gradient(advantages)
    centred = centre_groups(rewards)
    if scale == "none":
        return jax.lax.stop_gradient(centred)
    ddof = 1 if std == "unbiased" else 0
    sigma = jnp.sqrt(jnp.sum(centred**2, axis=1, keepdims=True) / (group_size - ddof))
    return jax.lax.stop_gradient(centred / (sigma + eps))


def rloo_advantages(rewards: jax.Array) -> jax.Array:
    """RLOO advantages: each reward minus the mean of the other G - 1 rewards of its group.

    Ahmadian et al., arXiv 2402.14740; grpo.md GRPO-2:
        A[p, g] = r[p, g] - (1 / (G - 1)) sum_{g' != g} r[p, g'] = G / (G - 1) * (r[p, g] - mu_p)
    A single-sample group (G = 1) has no baseline: A = r (verl convention).

    Args:
        rewards: [P, G] scalar reward per response.

    Returns:
        [P, G] float32 advantages (stop-gradient).
    """
    check_rank("rewards", rewards, 2)
    rewards = jax.lax.stop_gradient(jnp.asarray(rewards, jnp.float32))
    group_size = rewards.shape[1]
    if group_size == 1:
        return rewards
    others_mean = (jnp.sum(rewards, axis=1, keepdims=True) - rewards) / (group_size - 1)
    all_equal = jnp.all(rewards == rewards[:, :1], axis=1, keepdims=True)
    return jax.lax.stop_gradient(jnp.where(all_equal, 0.0, rewards - others_mean))
