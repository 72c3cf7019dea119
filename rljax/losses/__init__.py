"""rljax.losses: pure functions on arrays for the GRPO family and the 2026 methods.

Advantages and coefficients are computed without gradient; losses take per-token arrays and
keyword hyperparameters and return `(loss, metrics)`. Specs: methods/*.md beside DESIGN.md.
"""

from rljax.losses.advantages import group_advantages, rloo_advantages
from rljax.losses.aggregation import aggregate, aggregate_sums
from rljax.losses.delta import (
    delta_coefficients,
    delta_coefficients_from_centroids,
    delta_coefficients_streamed,
    delta_normalize_coefficients,
)
from rljax.losses.delta_stats import (
    DeltaCentroids,
    DeltaCentroidSums,
    DeltaMarginSums,
    DeltaTemperatures,
    delta_centroid_sums,
    delta_centroids_from_sums,
    delta_margin_sums,
    delta_temperatures_from_sums,
)
from rljax.losses.echo import echo_coefficient, echo_env_loss, echo_env_metrics, echo_loss
from rljax.losses.evaluation import maj_at_k, pass_at_k
from rljax.losses.golong import (
    task_advantage_cv,
    task_mean_advantages,
    tmn_advantages,
    tmn_pass_rates,
    tmn_reweight_advantages,
)
from rljax.losses.kl import kl_penalty
from rljax.losses.policy import broadcast_advantages, clipped_surrogate, policy_loss
from rljax.losses.shaping import dynamic_sampling_mask, overlong_penalty

__all__ = [
    "DeltaCentroidSums",
    "DeltaCentroids",
    "DeltaMarginSums",
    "DeltaTemperatures",
    "aggregate",
    "aggregate_sums",
    "broadcast_advantages",
    "clipped_surrogate",
    "delta_centroid_sums",
    "delta_centroids_from_sums",
    "delta_coefficients",
    "delta_coefficients_from_centroids",
    "delta_coefficients_streamed",
    "delta_margin_sums",
    "delta_normalize_coefficients",
    "delta_temperatures_from_sums",
    "dynamic_sampling_mask",
    "echo_coefficient",
    "echo_env_loss",
    "echo_env_metrics",
    "echo_loss",
    "group_advantages",
    "kl_penalty",
    "maj_at_k",
    "overlong_penalty",
    "pass_at_k",
    "policy_loss",
    "rloo_advantages",
    "task_advantage_cv",
    "task_mean_advantages",
    "tmn_advantages",
    "tmn_pass_rates",
    "tmn_reweight_advantages",
]

# Anti-SD, RubricEM, Poly-EPO
# (their imports go below this line, each followed by `__all__ += [...]` with the new names)
from rljax.losses.anti_sd import (  # noqa: E402
    GateState,
    anti_sd_advantages,
    entropy_gate_init,
    entropy_gate_update,
    jsd_token_penalty,
    rkl_token_penalty,
    teacher_entropy_median,
    token_entropy,
)

__all__ += [
    "GateState",
    "anti_sd_advantages",
    "entropy_gate_init",
    "entropy_gate_update",
    "jsd_token_penalty",
    "rkl_token_penalty",
    "teacher_entropy_median",
    "token_entropy",
]

from rljax.losses.rubric_em import (  # noqa: E402
    PAPER_STAGE_DEPENDENCE,
    answer_score_fallback,
    reflection_advantages,
    reflection_utility,
    rubric_stage_score,
    stage_returns,
    stage_token_advantages,
    stagewise_advantages,
    terminal_broadcast_advantages,
)

__all__ += [
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

from rljax.losses.poly_epo import (  # noqa: E402
    MAX_ENUMERATED_SUBSETS,
    ScoreFn,
    diversity_bonus,
    grpo_div_advantages,
    poly_epo_advantages,
    polychromic_score,
)

__all__ += [
    "MAX_ENUMERATED_SUBSETS",
    "ScoreFn",
    "diversity_bonus",
    "grpo_div_advantages",
    "poly_epo_advantages",
    "polychromic_score",
]
