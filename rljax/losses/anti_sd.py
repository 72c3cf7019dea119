"""Anti-SD: anti-self-distillation token advantages and the entropy-triggered gate.

Paper: Shen, Cheng, Zhao, Huang, Li, Zhao and Yu, "Anti-Self-Distillation for Reasoning RL via
Pointwise Mutual Information", arXiv 2605.11609 (https://arxiv.org/abs/2605.11609).
Official code: FloyedShen/AntiSD (verl-based). Specification: `methods/anti_sd.md`.

The self-teacher is the policy itself shown privileged context c. Its token signal
u = log pi(y_t | x, c, y<t) - log pi(y_t | x, y<t) is the pointwise mutual information between
y_t and c. Anti-SD ascends JSD(pi_S || pi_T), whose single-sample policy-gradient advantage is
-phi(u) with phi(u) = (softplus(u) - log 2) / 2, and adds it to the GRPO sequence advantage.
A Schmitt-trigger gate on the teacher's entropy switches the token term off when the teacher
collapses.
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

from rljax.losses._checks import check_choice, check_rank, check_shape

__all__ = [
    "GateState",
    "anti_sd_advantages",
    "entropy_gate_init",
    "entropy_gate_update",
    "jsd_token_penalty",
    "rkl_token_penalty",
    "teacher_entropy_median",
    "token_entropy",
]

TokenKernel = Callable[[chex.Array, chex.Array], chex.Array]

_LOG2 = math.log(2.0)
_DIRECTIONS = ("ascent", "descent")
_COMPOSITIONS = ("add", "mult")


def _token_log_ratio(student_logprobs: chex.Array, teacher_logprobs: chex.Array) -> jax.Array:
    student = jnp.asarray(student_logprobs, jnp.float32)
    teacher = jax.lax.stop_gradient(jnp.asarray(teacher_logprobs, jnp.float32))
    return teacher - student


def jsd_token_penalty(student_logprobs: chex.Array, teacher_logprobs: chex.Array) -> jax.Array:
    """Jensen-Shannon token kernel phi(u) = (softplus(u) - log 2) / 2 with u = teacher - student.

    Anti-SD eq. ASD-3 (arXiv 2605.11609). Ascending JSD(pi_S || pi_T) with the teacher held fixed
    is a policy gradient whose per-token advantage is -phi(u); phi is bounded below by
    -log(2)/2 = -0.346574, so the push towards low-PMI ("deliberation") tokens is capped, and
    phi(u) - phi(-u) = u / 2.

    Args:
        student_logprobs: [B, T] (any shape) log pi(y_t | x, y<t) of the sampled tokens.
        teacher_logprobs: same shape, log pi(y_t | x, c, y<t) under the privileged-context
            teacher; held under stop_gradient.

    Returns:
        float32 array of the input shape, phi(u). Differentiable w.r.t. `student_logprobs`
        (d phi / d student = -sigmoid(u) / 2); no gradient reaches the teacher.
    """
    check_shape("teacher_logprobs", teacher_logprobs, jnp.shape(student_logprobs))
    u = _token_log_ratio(student_logprobs, teacher_logprobs)
    return 0.5 * (jax.nn.softplus(u) - _LOG2)


def rkl_token_penalty(student_logprobs: chex.Array, teacher_logprobs: chex.Array) -> jax.Array:
    """Reverse-KL token kernel k(u) = u = teacher - student (the pointwise mutual information).

    Anti-SD eq. ASD-2/ASD-4 (arXiv 2605.11609). With the teacher fixed,
    grad KL(pi_S || pi_T) = E_{pi_S}[-u grad log pi_S], so ascending the reverse KL uses the token
    advantage -u and descending it (plain on-policy self-distillation) uses +u. Unlike phi, the
    kernel is unbounded in both directions.

    Args:
        student_logprobs: [B, T] (any shape) student log-probs of the sampled tokens.
        teacher_logprobs: same shape, teacher log-probs; held under stop_gradient.

    Returns:
        float32 array of the input shape, u. Differentiable w.r.t. `student_logprobs`
        (d u / d student = -1); no gradient reaches the teacher.
    """
    check_shape("teacher_logprobs", teacher_logprobs, jnp.shape(student_logprobs))
    return _token_log_ratio(student_logprobs, teacher_logprobs)


def anti_sd_advantages(
    seq_advantages: chex.Array,
    student_logprobs: chex.Array,
    teacher_logprobs: chex.Array,
    mask: chex.Array,
    *,
    coef: float | chex.Array = 0.5,
    kernel: TokenKernel = jsd_token_penalty,
    direction: str = "ascent",
    compose: str = "add",
) -> jax.Array:
    """Per-token advantage A_seq + coef * delta(u), delta = -k(u) (ascent) or +k(u) (descent).

    Anti-SD eq. ASD-4 (arXiv 2605.11609):
        A_tok[b, t] = sg((A_seq[b] + coef * delta[b, t]) * mask[b, t])        compose="add"
        A_tok[b, t] = sg(A_seq[b] * (1 + coef * delta[b, t]) * mask[b, t])    compose="mult"
    The (kernel, direction) table: Anti-SD = (jsd_token_penalty, "ascent") (default); plain
    self-distillation = (rkl_token_penalty, "descent"), delta = +u; reverse-KL ascent ablation =
    (rkl_token_penalty, "ascent"), delta = -u; the no-teacher ablation passes
    `teacher_logprobs = zeros` (u = -s, spec section 8). Groups with all-equal rewards (A_seq = 0)
    keep the token term; nothing is filtered.

    Differs from the paper: the multiplicative composition is not given exactly in the paper;
    `A_seq * (1 + coef * delta)` is the library's choice (spec ASD-4).

    Args:
        seq_advantages: [B] GRPO sequence advantage of each response (grpo.md GRPO-2).
        student_logprobs: [B, T] rollout-time student log-probs log pi_old(y_t | x, y<t).
        teacher_logprobs: [B, T] teacher log-probs log pi_old(y_t | x, c, y<t), indexed by
            response position.
        mask: [B, T] response-token mask (bool or {0, 1}); entries outside it may hold anything
            (even inf/NaN) and give 0.
        coef: scalar lambda >= 0, usually `gate * coef_max` from `entropy_gate_update`
            (paper: coef_max = 0.5); may be a traced array.
        kernel: token kernel k(student, teacher), `jsd_token_penalty` or `rkl_token_penalty`.
        direction: "ascent" (delta = -k) or "descent" (delta = +k).
        compose: "add" (paper default) or "mult" (ablation).

    Returns:
        [B, T] float32 token advantages, under stop_gradient.
    """
    check_rank("student_logprobs", student_logprobs, 2)
    check_shape("teacher_logprobs", teacher_logprobs, jnp.shape(student_logprobs))
    check_shape("mask", mask, jnp.shape(student_logprobs))
    check_shape("seq_advantages", seq_advantages, jnp.shape(student_logprobs)[:1])
    check_rank("coef", coef, 0)
    if isinstance(coef, (int, float)) and coef < 0:
        raise ValueError(f"coef must be >= 0 (the sign comes from `direction`), got {coef}")
    check_choice("direction", direction, _DIRECTIONS)
    check_choice("compose", compose, _COMPOSITIONS)

    valid = jnp.asarray(mask).astype(bool)
    student = jnp.where(valid, jnp.asarray(student_logprobs, jnp.float32), 0.0)
    teacher = jnp.where(valid, jnp.asarray(teacher_logprobs, jnp.float32), 0.0)
    k = kernel(student, teacher)
    delta = -k if direction == "ascent" else k
    a_seq = jnp.asarray(seq_advantages, jnp.float32)[:, None]
    lam = jnp.asarray(coef, jnp.float32)
    if compose == "add":
        a_tok = a_seq + lam * delta
    else:
        a_tok = a_seq * (1.0 + lam * delta)
    return jax.lax.stop_gradient(jnp.where(valid, a_tok, 0.0))


def token_entropy(logits: chex.Array) -> jax.Array:
    """Full-vocabulary entropy -sum_v pi(v) log pi(v) of softmax(logits), in nats, float32.

    Anti-SD section 2 (arXiv 2605.11609): the gate's signal H_T is the teacher's entropy at each
    response position at temperature 1. For vocabulary-sized work prefer
    `kernels.token_stats(..., teacher_hidden=...).teacher_entropy`, which never builds logits.

    Args:
        logits: [..., V] unnormalised logits.

    Returns:
        [...] float32 entropies.
    """
    if jnp.ndim(logits) < 1:
        raise ValueError(f"logits must have rank >= 1 ([..., V]), got shape {jnp.shape(logits)}")
    logp = jax.nn.log_softmax(jnp.asarray(logits, jnp.float32), axis=-1)
    return -jnp.sum(jnp.exp(logp) * logp, axis=-1)


def teacher_entropy_median(teacher_entropy: chex.Array, mask: chex.Array) -> jax.Array:
    """Median of the teacher entropy over all valid response tokens of the batch (H_k).

    Anti-SD eq. ASD-5 (arXiv 2605.11609). The median follows numpy's convention (mean of the two
    middle values for an even count). With data parallelism pass the global [B, T] arrays: the
    median does not decompose over shards.

    Args:
        teacher_entropy: [B, T] teacher entropy H_T per response position (nats, tau = 1).
        mask: [B, T] response-token mask; observation/tool tokens must be 0.

    Returns:
        float32 scalar; NaN when no token is valid, which `entropy_gate_update` treats as
        "no observation" (the gate keeps its state).
    """
    check_rank("teacher_entropy", teacher_entropy, 2)
    check_shape("mask", mask, jnp.shape(teacher_entropy))
    valid = jnp.asarray(mask).astype(bool).reshape(-1)
    values = jnp.where(valid, jnp.asarray(teacher_entropy, jnp.float32).reshape(-1), jnp.inf)
    ordered = jnp.sort(values)
    count = jnp.sum(valid.astype(jnp.int32))
    lower = ordered[jnp.maximum((count - 1) // 2, 0)]
    upper = ordered[count // 2]
    return jnp.where(count > 0, 0.5 * (lower + upper), jnp.nan)


class GateState(NamedTuple):
    """State of the entropy-triggered gate (a pytree of arrays: jit, vmap and Orbax friendly).

    Attributes:
        step: int32 [] number of observed steps so far (NaN observations are not counted).
        gate: float32 [] current gate g in {0., 1.}.
        warmup_medians: float32 [W] per-step medians of the warm-up steps (W = warmup_steps).
        h_warm: float32 [] calibrated H_warm (0 until step W).
        tau_down: float32 [] switch-off threshold down_ratio * H_warm (0 until step W).
        tau_up: float32 [] re-enable threshold reenable_ratio * H_warm (0 until step W).
        down_ratio: float32 [] the tau_down / H_warm ratio (paper 0.93).
        reenable_ratio: float32 [] the re-enable threshold / H_warm ratio (paper 1.0).
    """

    step: jax.Array
    gate: jax.Array
    warmup_medians: jax.Array
    h_warm: jax.Array
    tau_down: jax.Array
    tau_up: jax.Array
    down_ratio: jax.Array
    reenable_ratio: jax.Array


def entropy_gate_init(
    *, warmup_steps: int = 5, down_ratio: float = 0.93, reenable_ratio: float = 1.0
) -> GateState:
    """Initial state of the Anti-SD entropy gate (closed, nothing observed).

    Anti-SD eq. ASD-5 (arXiv 2605.11609). On resuming Anti-SD from a plain GRPO checkpoint,
    start from a fresh state so H_warm is recalibrated by a new warm-up.

    Args:
        warmup_steps: W >= 1, steps of pure GRPO whose medians calibrate H_warm (paper 5).
        down_ratio: tau_down / H_warm, in (0, 1] (paper 0.93).
        reenable_ratio: re-enable threshold / H_warm, >= down_ratio (paper 1.0, i.e. H_warm).

    Returns:
        A `GateState` with gate 0.
    """
    if (
        isinstance(warmup_steps, bool)
        or not isinstance(warmup_steps, (int, np.integer))
        or warmup_steps < 1
    ):
        raise ValueError(f"warmup_steps must be an integer >= 1, got {warmup_steps!r}")
    if not 0.0 < down_ratio <= 1.0:
        raise ValueError(f"down_ratio must be in (0, 1], got {down_ratio}")
    if reenable_ratio < down_ratio:
        raise ValueError(
            f"reenable_ratio must be >= down_ratio={down_ratio} (hysteresis), got {reenable_ratio}"
        )
    zero = jnp.zeros((), jnp.float32)
    return GateState(
        step=jnp.zeros((), jnp.int32),
        gate=zero,
        warmup_medians=jnp.zeros((warmup_steps,), jnp.float32),
        h_warm=zero,
        tau_down=zero,
        tau_up=zero,
        down_ratio=jnp.asarray(down_ratio, jnp.float32),
        reenable_ratio=jnp.asarray(reenable_ratio, jnp.float32),
    )


def entropy_gate_update(
    state: GateState, teacher_entropy_median: chex.Array
) -> tuple[GateState, jax.Array]:
    """One step of the entropy-triggered Schmitt gate; call before forming the token advantages.

    Anti-SD eq. ASD-5 (arXiv 2605.11609), with H_k the batch median teacher entropy:
        k < W:  gate 0 (pure GRPO); record H_k.
        k = W:  H_warm = median of the W recorded medians, tau_down = down_ratio * H_warm,
                g = 1, then apply the update below.
        update: if g = 1 and H_k < tau_down: g = 0;  elif g = 0 and H_k >= tau_up: g = 1.
    The token-term coefficient is `gate * coef_max`. A NaN/inf H_k (no valid token) is not an
    observation: the state is returned unchanged with its current gate.

    Differs from the paper: H_warm is the median of the per-step medians (library default of the
    spec); the pooled-token estimator is not offered, since it needs unbounded state.

    Args:
        state: `GateState` from `entropy_gate_init` or a previous update (may be vmapped).
        teacher_entropy_median: float32 [] H_k, e.g. from `teacher_entropy_median`.

    Returns:
        (new_state, gate): gate is float32 [] in {0., 1.}.
    """
    check_rank("teacher_entropy_median", teacher_entropy_median, 0)
    check_rank("state.warmup_medians", state.warmup_medians, 1)
    warmup_steps = state.warmup_medians.shape[0]
    h = jnp.asarray(teacher_entropy_median, jnp.float32)
    observed = jnp.isfinite(h)

    recording = observed & (state.step < warmup_steps)
    slot = jnp.minimum(state.step, warmup_steps - 1)
    warmup_medians = jnp.where(
        recording, state.warmup_medians.at[slot].set(h), state.warmup_medians
    )

    calibrating = observed & (state.step == warmup_steps)
    h_warm = jnp.where(calibrating, jnp.median(state.warmup_medians), state.h_warm)
    tau_down = jnp.where(calibrating, state.down_ratio * h_warm, state.tau_down)
    tau_up = jnp.where(calibrating, state.reenable_ratio * h_warm, state.tau_up)
    gate = jnp.where(calibrating, 1.0, state.gate)

    switching = observed & (state.step >= warmup_steps)
    close = switching & (gate == 1.0) & (h < tau_down)
    reopen = switching & (gate == 0.0) & (h >= tau_up)
    gate = jnp.where(close, 0.0, jnp.where(reopen, 1.0, gate)).astype(jnp.float32)

    new_state = state._replace(
        step=state.step + observed.astype(jnp.int32),
        gate=gate,
        warmup_medians=warmup_medians,
        h_warm=h_warm,
        tau_down=tau_down,
        tau_up=tau_up,
    )
    return new_state, gate
