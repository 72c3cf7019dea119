"""GoLongRL advantages: task-level scale normalisation (TMN) and difficulty reweighting.

"GoLongRL: Capability-Oriented Long Context Reinforcement Learning with Multitask Alignment",
Lv et al., arXiv 2605.19577; official code xiaoxuanNLP/GoLongRL. Spec: methods/golongrl.md.

All estimators take rewards [P, G] and an integer reward type per prompt, task_ids [P] in
[0, num_tasks), and pool statistics over the prompts of one task present in the batch. Dynamic
sampling (grpo.md GRPO-10) drops all-equal groups before these statistics; with static shapes
pass its keep mask as `group_mask`: dropped prompts are left out of every task statistic and get
advantage 0.
"""

import jax
import jax.numpy as jnp
import numpy as np

from rljax.losses._checks import check_choice, check_positive, check_rank, check_shape
from rljax.losses.advantages import centre_groups

_STDS = ("unbiased", "population")


def _validate(
    rewards: jax.Array, task_ids: jax.Array, num_tasks: int, group_mask: jax.Array | None
) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Checks the inputs; returns float32 rewards, int32 task ids and a float32 [P] keep mask."""
    check_rank("rewards", rewards, 2)
    check_shape("task_ids", task_ids, rewards.shape[:1])
    if not isinstance(num_tasks, int) or num_tasks < 1:
        raise ValueError(f"num_tasks must be an int >= 1, got {num_tasks!r}")
    if not jnp.issubdtype(jnp.asarray(task_ids).dtype, jnp.integer):
        raise ValueError(f"task_ids must be integers, got dtype {jnp.asarray(task_ids).dtype}")
    if not isinstance(task_ids, jax.core.Tracer):
        ids = np.asarray(task_ids)
        if ids.size and (ids.min() < 0 or ids.max() >= num_tasks):
            raise ValueError(
                f"task_ids must lie in [0, num_tasks={num_tasks}), got values in "
                f"[{ids.min()}, {ids.max()}]"
            )
    if group_mask is None:
        keep = jnp.ones(rewards.shape[:1], jnp.float32)
    else:
        check_shape("group_mask", group_mask, rewards.shape[:1])
        keep = jnp.asarray(group_mask, bool).astype(jnp.float32)
    rewards = jax.lax.stop_gradient(jnp.asarray(rewards, jnp.float32))
    return rewards, jnp.asarray(task_ids, jnp.int32), keep


def _task_mean(
    values: jax.Array, task_ids: jax.Array, keep: jax.Array, num_tasks: int
) -> jax.Array:
    """Mean of per-prompt `values` [P] over the kept prompts of each task -> [num_tasks]."""
    total = jax.ops.segment_sum(values * keep, task_ids, num_segments=num_tasks)
    count = jax.ops.segment_sum(keep, task_ids, num_segments=num_tasks)
    return total / jnp.maximum(count, 1.0)


def _prompt_stats(rewards: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Per-prompt mean [P], unbiased variance [P] and centred rewards [P, G] (LONG-2).

    G = 1 gives mean 0, variance 1 (centred = rewards). An all-equal group is centred to exactly
    0 (`advantages.centre_groups`, the guard `group_advantages` uses), so its variance is 0.
    """
    group_size = rewards.shape[1]
    if group_size == 1:
        return jnp.zeros(rewards.shape[:1]), jnp.ones(rewards.shape[:1]), rewards
    centred = centre_groups(rewards)
    var = jnp.sum(centred**2, axis=1) / (group_size - 1)
    return jnp.mean(rewards, axis=1), var, centred


def tmn_advantages(
    rewards: jax.Array,
    task_ids: jax.Array,
    *,
    num_tasks: int,
    eps: float = 1e-6,
    group_mask: jax.Array | None = None,
) -> jax.Array:
    """TMN: centre by the prompt mean, scale by the RMS of the task's within-prompt stds.

    arXiv 2605.19577; golongrl.md LONG-2..4:
        s_j = sqrt( mean_{p in Q_j} var_p ) ;  A[p, g] = (r[p, g] - mu_p) / (s_{j(p)} + eps)
    with unbiased var_p (G = 1: mu_p := 0, var_p := 1). Equals GRPO for a task whose prompts
    share one var_p; a task whose groups are all constant has s_j = 0 and A = 0 exactly (the
    all-equal guard of `group_advantages`: a float32 group mean of equal non-dyadic rewards can
    round away from them, and that residue divided by s_j + eps was not 0).

    Args:
        rewards: [P, G] rewards.
        task_ids: [P] int reward type of each prompt, in [0, num_tasks).
        num_tasks: J, the number of reward types.
        eps: added to the task scale.
        group_mask: [P] bool prompts kept by dynamic sampling, or None (all kept).

    Returns:
        [P, G] float32 advantages (stop-gradient), 0 on dropped prompts.
    """
    check_positive("eps", eps)
    rewards, task_ids, keep = _validate(rewards, task_ids, num_tasks, group_mask)
    _, var, centred = _prompt_stats(rewards)
    scale = jnp.sqrt(_task_mean(var, task_ids, keep, num_tasks))[task_ids]  # [P]
    advantages = centred / (scale[:, None] + eps) * keep[:, None]
    return jax.lax.stop_gradient(advantages)


def tmn_pass_rates(
    rewards: jax.Array,
    task_ids: jax.Array,
    *,
    num_tasks: int,
    alpha: float = 0.8,
    group_mask: jax.Array | None = None,
) -> jax.Array:
    """Empirical pass rate of each prompt against its alpha-shrunk mean (log its batch mean).

    arXiv 2605.19577; golongrl.md LONG-5..6:
        m_j = mean_{p in Q_j} mu_p ;  mu~_p = alpha mu_p + (1 - alpha) m_{j(p)}
        p_hat_p = (1/G) sum_g [r[p, g] > mu~_p]            (G = 1: mu~_p := m_{j(p)})

    Args:
        rewards: [P, G] rewards.
        task_ids: [P] int reward type of each prompt.
        num_tasks: J.
        alpha: weight of the prompt's own mean, in [0, 1].
        group_mask: [P] bool prompts kept by dynamic sampling, or None.

    Returns:
        [P] float32 pass rates in [0, 1] (stop-gradient).
    """
    if not 0.0 <= alpha <= 1.0:
        raise ValueError(f"alpha must be in [0, 1], got {alpha!r}")
    rewards, task_ids, keep = _validate(rewards, task_ids, num_tasks, group_mask)
    mean, _, _ = _prompt_stats(rewards)
    task_mean = _task_mean(mean, task_ids, keep, num_tasks)[task_ids]  # [P]
    own_weight = 0.0 if rewards.shape[1] == 1 else alpha
    shrunk = own_weight * mean + (1.0 - own_weight) * task_mean
    return jnp.mean((rewards > shrunk[:, None]).astype(jnp.float32), axis=1)


def tmn_reweight_advantages(
    rewards: jax.Array,
    task_ids: jax.Array,
    *,
    num_tasks: int,
    alpha: float = 0.8,
    gamma: float = 1.0,
    eps: float = 1e-6,
    group_mask: jax.Array | None = None,
) -> jax.Array:
    """TMN-Reweight: TMN advantages times a difficulty weight exp(+-gamma (0.5 - p_hat)).

    arXiv 2605.19577; golongrl.md LONG-2..8:
        w+_p = exp(gamma (0.5 - p_hat_p)),  w-_p = 1 / w+_p
        A[p, g] = A_TMN[p, g] * (w+_p if r[p, g] > mu_p else w-_p)
    p_hat from `tmn_pass_rates` (alpha-shrunk mean); the sign test uses the raw prompt mean.
    Weights lie in [e^(-gamma/2), e^(gamma/2)], no clamp. Rare successes on hard prompts and
    rare failures on easy prompts are amplified. alpha = 0.8 is the paper's runs' value (the
    official code's function default is 0.5).

    Args:
        rewards: [P, G] rewards.
        task_ids: [P] int reward type of each prompt.
        num_tasks: J.
        alpha: weight of the prompt's own mean in the shrunk mean, in [0, 1].
        gamma: reweighting strength (1.0, fixed in the paper).
        eps: added to the task scale.
        group_mask: [P] bool prompts kept by dynamic sampling, or None.

    Returns:
        [P, G] float32 advantages (stop-gradient), 0 on dropped prompts.
    """
    advantages = tmn_advantages(
        rewards, task_ids, num_tasks=num_tasks, eps=eps, group_mask=group_mask
    )
    pass_rates = tmn_pass_rates(
        rewards, task_ids, num_tasks=num_tasks, alpha=alpha, group_mask=group_mask
    )
    rewards = jnp.asarray(rewards, jnp.float32)
    mean, _, _ = _prompt_stats(rewards)
    log_weight = gamma * (0.5 - pass_rates)[:, None]  # [P, 1]
    weights = jnp.exp(jnp.where(rewards > mean[:, None], log_weight, -log_weight))
    return jax.lax.stop_gradient(advantages * weights)


def task_mean_advantages(
    rewards: jax.Array,
    task_ids: jax.Array,
    *,
    num_tasks: int,
    std: str = "unbiased",
    eps: float = 1e-6,
    group_mask: jax.Array | None = None,
) -> jax.Array:
    """QwenLong-style task normalisation: z-score against all samples of the task in the batch.

    The comparison estimator of golongrl.md section 3 (QwenLong-L1.5):
        A[p, g] = (r[p, g] - mean_task) / (std_task + eps)
    with mean and std over the N_j = G |Q_j| samples of the kept prompts of task j. The spec does
    not fix the std divisor; the default follows the official GoLongRL code: the unbiased task std
    (divisor N_j - 1) and std_task := 1 for a single-sample task (N_j = 1, whose sample is its own
    mean, so A = 0). `std="population"` divides by N_j instead (the library's earlier choice;
    rewards [[1, 0]] give +-1.0 instead of the default's +-0.707107). A task whose samples are all
    equal gets A = 0 exactly (the all-equal guard of `group_advantages`).

    Args:
        rewards: [P, G] rewards.
        task_ids: [P] int reward type of each prompt.
        num_tasks: J.
        std: "unbiased" (official code, default) or "population" task std.
        eps: added to the task std.
        group_mask: [P] bool prompts kept by dynamic sampling, or None.

    Returns:
        [P, G] float32 advantages (stop-gradient), 0 on dropped prompts.
    """
    check_positive("eps", eps)
    check_choice("std", std, _STDS)
    rewards, task_ids, keep = _validate(rewards, task_ids, num_tasks, group_mask)
    group_size = rewards.shape[1]
    task_mean = _task_mean(jnp.mean(rewards, axis=1), task_ids, keep, num_tasks)[task_ids]
    # All-equal guard per task: compare every kept sample with the task's extreme values.
    big = jnp.finfo(jnp.float32).max
    kept = keep[:, None] > 0
    task_max = jax.ops.segment_max(
        jnp.max(jnp.where(kept, rewards, -big), axis=1), task_ids, num_segments=num_tasks
    )
    task_min = jax.ops.segment_min(
        jnp.min(jnp.where(kept, rewards, big), axis=1), task_ids, num_segments=num_tasks
    )
    all_equal = (task_max == task_min)[task_ids]  # [P]
    centred = jnp.where(all_equal[:, None], 0.0, rewards - task_mean[:, None])
    squares = jax.ops.segment_sum(
        jnp.sum(centred**2, axis=1) * keep, task_ids, num_segments=num_tasks
    )
    samples = group_size * jax.ops.segment_sum(keep, task_ids, num_segments=num_tasks)  # N_j
    if std == "unbiased":
        task_std = jnp.where(samples > 1, jnp.sqrt(squares / jnp.maximum(samples - 1.0, 1.0)), 1.0)
    else:
        task_std = jnp.sqrt(squares / jnp.maximum(samples, 1.0))
    advantages = centred / (task_std[task_ids][:, None] + eps) * keep[:, None]
    return jax.lax.stop_gradient(advantages)


def task_advantage_cv(
    advantages: jax.Array,
    task_ids: jax.Array,
    *,
    num_tasks: int,
    group_mask: jax.Array | None = None,
) -> jax.Array:
    """Cross-task coefficient of variation of the mean |advantage| (gradient-share balance).

    arXiv 2605.19577; golongrl.md LONG-10: M_j = mean |A| over the responses of task j;
    CV = std_j(M_j) / mean_j(M_j) over the tasks present, population std (library choice).
    Lower means the tasks get more equal shares of the gradient.

    Args:
        advantages: [P, G] advantages.
        task_ids: [P] int reward type of each prompt.
        num_tasks: J.
        group_mask: [P] bool prompts to include, or None.

    Returns:
        float32 scalar CV (0 when fewer than two tasks are present or all M_j are 0).
    """
    advantages, task_ids, keep = _validate(advantages, task_ids, num_tasks, group_mask)
    count = jax.ops.segment_sum(keep, task_ids, num_segments=num_tasks)  # [J]
    present = (count > 0).astype(jnp.float32)
    task_abs = _task_mean(jnp.mean(jnp.abs(advantages), axis=1), task_ids, keep, num_tasks)
    num_present = jnp.maximum(jnp.sum(present), 1.0)
    mean = jnp.sum(task_abs * present) / num_present
    std = jnp.sqrt(jnp.sum(present * (task_abs - mean) ** 2) / num_present)
    return jnp.where(mean > 0, std / jnp.maximum(mean, 1e-30), 0.0)
