"""Reward shaping and group filtering from DAPO (methods/grpo.md, GRPO-9 and GRPO-10)."""

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_positive, check_rank


def overlong_penalty(
    lengths: jax.Array, *, max_len: int, buffer_len: int, factor: float = 1.0
) -> jax.Array:
    """DAPO soft overlong punishment, added to the task reward before the advantages.

    Yu et al., arXiv 2503.14476, eq. 13; grpo.md GRPO-9:
        penalty(L) = min( -(L - (L_max - L_buf)) / L_buf * f , 0 )
    0 up to L_max - L_buf, then linear down to -f at L = L_max (and below -f past L_max: the
    rollout caps lengths at L_max, so that range does not occur in training).

    Args:
        lengths: [...] response lengths in tokens (any shape, e.g. [B] or [P, G]).
        max_len: L_max, the maximum response length.
        buffer_len: L_buf, the width of the penalty ramp; 0 < L_buf <= L_max.
        factor: f, the penalty at L = L_max.

    Returns:
        [...] float32 penalties (<= 0), same shape as `lengths`.
    """
    check_positive("buffer_len", buffer_len)
    if buffer_len > max_len:
        raise ValueError(f"buffer_len={buffer_len} must be <= max_len={max_len}")
    lengths = jnp.asarray(lengths, jnp.float32)
    excess = lengths - (max_len - buffer_len)
    return jnp.minimum(-excess / buffer_len * factor, 0.0)


def dynamic_sampling_mask(rewards: jax.Array) -> jax.Array:
    """DAPO dynamic sampling ("filter groups"): which prompt groups carry a learning signal.

    Yu et al., arXiv 2503.14476, eq. 11; grpo.md GRPO-10. Keeps prompt p iff the population std of
    its rewards is > 0, i.e. not all G rewards are equal (such groups have zero advantage under
    GRPO, Dr.GRPO and RLOO). A single-sample group (G = 1) is always kept [verl]. The resampling
    loop that refills the batch is host-side and lives in the trainer; methods that pool
    statistics across groups (GoLongRL) take this mask to exclude the dropped groups.

    Args:
        rewards: [P, G] scalar reward per response.

    Returns:
        [P] bool keep mask.
    """
    check_rank("rewards", rewards, 2)
    rewards = jnp.asarray(rewards, jnp.float32)
    if rewards.shape[1] == 1:
        return jnp.ones(rewards.shape[:1], bool)
    return jnp.any(rewards != rewards[:, :1], axis=1)
