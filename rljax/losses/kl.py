"""Per-token KL estimators to a frozen reference policy (methods/grpo.md, GRPO-8)."""

import jax
import jax.numpy as jnp

from rljax.losses._checks import check_choice, check_rank, check_shape

KINDS = ("k1", "k2", "k3")


def kl_penalty(
    logprobs: jax.Array,
    ref_logprobs: jax.Array,
    *,
    kind: str = "k3",
    k3_clamp: float | None = 10.0,
    log_ratio_clamp: float = 20.0,
) -> jax.Array:
    """Per-token sample estimate of the KL between the policy and a reference policy.

    Schulman's estimators ("Approximating KL divergence", 2020) as used by GRPO
    (arXiv 2402.03300, eq. 4); grpo.md GRPO-8, with d = sg(logp_ref) - logp:
        k1 = -d              (E[grad] = 0 on-policy)
        k2 = d^2 / 2         (E[grad] = grad KL(pi || pi_ref))
        k3 = exp(d) - d - 1  (E[grad] = grad KL(pi_ref || pi))
    [verl] k3 clamps d to [-log_ratio_clamp, log_ratio_clamp] before exp and the result to
    [-k3_clamp, k3_clamp]; `k3_clamp=None` disables the second clamp. Add the aggregated penalty
    to the policy loss with the same mask and mode: `L + beta * aggregate(k, mask, mode=...)`.

    Args:
        logprobs: [B, T] current-policy token log-probs (carries the gradient).
        ref_logprobs: [B, T] reference-policy token log-probs (stop-gradient).
        kind: "k1", "k2" or "k3".
        k3_clamp: bound on k3, or None.
        log_ratio_clamp: bound on d before exp in k3.

    Returns:
        [B, T] float32 per-token penalties (not masked).
    """
    check_rank("logprobs", logprobs, 2)
    check_shape("ref_logprobs", ref_logprobs, logprobs.shape)
    check_choice("kind", kind, KINDS)
    logprobs = jnp.asarray(logprobs, jnp.float32)
    ref_logprobs = jax.lax.stop_gradient(jnp.asarray(ref_logprobs, jnp.float32))
    d = ref_logprobs - logprobs
    if kind == "k1":
        return -d
    if kind == "k2":
        return 0.5 * d**2
    d = jnp.clip(d, -log_ratio_clamp, log_ratio_clamp)
    k3 = jnp.exp(d) - d - 1.0
    if k3_clamp is not None:
        k3 = jnp.clip(k3, -k3_clamp, k3_clamp)
    return k3
