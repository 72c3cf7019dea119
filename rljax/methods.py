"""Methods: compositions of `rljax.losses` pieces that the trainer runs, and the CLI's registry.

A `Method` is (prepare, loss):

* `prepare(inputs, state) -> (arrays, state, metrics)` runs once per rollout batch with no gradient.
  It turns rewards and no-grad forward results into the per-sequence or per-token credit the loss
  needs (advantages, DelTA coefficients, Anti-SD penalties, RubricEM stage advantages, ...).
* `loss(logprobs, batch) -> (loss, metrics)` runs inside the differentiated train step on the
  current policy's log-probs [B, T] and the batch arrays (tokens, masks and whatever `prepare`
  returned).
* `normalizer(batch) -> scalar` is the quantity the loss divides by (valid tokens, valid sequences,
  rows), so the trainer can weight micro-batches exactly when it accumulates gradients.

Variants are different compositions (an advantage function, a credit function, an objective and an
aggregation mode), never flags. The string registry `METHODS` exists only for the command line.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
from typing import Any, Callable

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from rljax import losses
from rljax.losses import rubric_em as rubric_em_losses

Array = jax.Array


@flax.struct.dataclass
class PrepareInputs:
    """What `Method.prepare` may read; optional fields are filled when the method `needs` them.

    All per-token arrays are [B, T] and aligned with `tokens` (DESIGN.md conventions).

    Attributes:
        rewards: [P, G] scalar rewards (after any shaping).
        task_ids: [P] task type of each prompt.
        group_mask: [P] False for groups dynamic sampling dropped (kept only to fix shapes; their
            action mask is zero).
        action_mask: [B, T] loss tokens.
        env_mask, warning_mask: [B, T] observation provenance (ECHO).
        stage_ids: [B, T] stage of each generated token, -1 = none (RubricEM).
        stage_rewards: [P, G, K] per-stage judge scores (RubricEM; K = 0 otherwise).
        cluster_ids: [P, G] strategy cluster of each response (Poly-EPO; zeros otherwise).
        old_logprobs: [B, T] log-probs of the policy that generated the batch (no gradient).
        old_entropy: [B, T] its entropies.
        hidden: [B, T, H] the final hidden state that predicts each token ("hidden" need; DelTA).
        teacher_logprobs, teacher_entropy: [B, T] the same tokens under the teacher context
            ("teacher" need; Anti-SD).
        lengths: [B] response lengths (generated tokens), for the overlong penalty.
    """

    rewards: Array
    task_ids: Array
    group_mask: Array
    action_mask: Array
    env_mask: Array
    warning_mask: Array
    stage_ids: Array
    stage_rewards: Array
    cluster_ids: Array
    old_logprobs: Array
    old_entropy: Array
    lengths: Array
    hidden: Array | None = None
    teacher_logprobs: Array | None = None
    teacher_entropy: Array | None = None


@dataclasses.dataclass(frozen=True)
class Method:
    """A trainable RL method (see the module docstring).

    Attributes:
        name: registry name, used in logs and run directories.
        prepare: (PrepareInputs, state) -> (dict of arrays for the loss, state, metrics).
        loss: (logprobs [B, T], batch dict) -> (scalar loss, metrics).
        normalizer: batch dict -> the scalar the loss divides by.
        init_state: () -> the method's state pytree (Anti-SD gate, ...).
        needs: extra no-grad inputs the trainer must compute: "hidden", "teacher", "reference".
        filter_groups: drop all-equal groups before `prepare` (DAPO dynamic sampling).
    """

    name: str
    prepare: Callable[[PrepareInputs, Any], tuple[dict, Any, dict]]
    loss: Callable[[Array, dict], tuple[Array, dict]]
    normalizer: Callable[[dict], Array]
    init_state: Callable[[], Any] = lambda: ()
    needs: frozenset = frozenset()
    filter_groups: bool = False


# ---------------------------------------------------------------------------------------------
# Pieces shared by the compositions below.


def _per_row(adv_pg: Array) -> Array:
    return adv_pg.reshape(-1)


def _token_mean_normalizer(batch: dict) -> Array:
    return jnp.maximum(batch["action_mask"].sum(), 1).astype(jnp.float32)


def _valid_rows_normalizer(batch: dict) -> Array:
    return jnp.maximum((batch["action_mask"].sum(-1) > 0).sum(), 1).astype(jnp.float32)


def _rows_normalizer(batch: dict) -> Array:
    return jnp.asarray(batch["action_mask"].shape[0], jnp.float32)


_NORMALIZERS = {
    "token-mean": _token_mean_normalizer,
    "seq-mean-token-mean": _valid_rows_normalizer,
    "seq-mean-token-sum": _valid_rows_normalizer,
    "seq-mean-token-sum-norm": _rows_normalizer,
}


def _clipped_surrogate_loss(
    logprobs: Array, batch: dict, *, policy_kwargs: dict, kl_beta: float, kl_kind: str
) -> tuple[Array, dict]:
    """policy_loss on the prepared advantages, plus an optional KL term to the reference."""
    loss, metrics = losses.policy_loss(
        logprobs, batch["old_logprobs"], batch["advantages"], batch["action_mask"], **policy_kwargs
    )
    if kl_beta > 0:
        kl = losses.kl_penalty(logprobs, batch["ref_logprobs"], kind=kl_kind)
        kl_loss = losses.aggregate(
            kl,
            batch["action_mask"],
            mode=policy_kwargs.get("mode", "token-mean"),
            max_len=policy_kwargs.get("max_len"),
        )
        loss = loss + kl_beta * kl_loss
        metrics = {**metrics, "kl": kl_loss}
    return loss, metrics


def _policy_method(
    name: str,
    credit: Callable[[PrepareInputs, Any], tuple[Array, Any, dict]],
    *,
    policy_kwargs: dict,
    kl_beta: float = 0.0,
    kl_kind: str = "k3",
    init_state: Callable[[], Any] = lambda: (),
    needs: frozenset = frozenset(),
    filter_groups: bool = False,
) -> Method:
    """A method whose loss is the clipped surrogate on credit computed by `credit`."""
    mode = policy_kwargs.get("mode", "token-mean")
    if mode not in _NORMALIZERS:
        raise ValueError(f"aggregation mode must be one of {sorted(_NORMALIZERS)}, got {mode!r}")
    if kl_beta > 0:
        needs = needs | {"reference"}

    def prepare(inputs: PrepareInputs, state: Any) -> tuple[dict, Any, dict]:
        advantages, state, metrics = credit(inputs, state)
        advantages = jax.lax.stop_gradient(advantages)
        # Mean |A| per loss token, comparable between sequence- and token-level credit.
        mask = inputs.action_mask
        per_token = advantages[:, None] if advantages.ndim == 1 else advantages
        adv_abs_mean = (jnp.abs(per_token) * mask).sum() / jnp.maximum(mask.sum(), 1)
        return {"advantages": advantages}, state, {"adv_abs_mean": adv_abs_mean, **metrics}

    return Method(
        name=name,
        prepare=prepare,
        loss=functools.partial(
            _clipped_surrogate_loss, policy_kwargs=policy_kwargs, kl_beta=kl_beta, kl_kind=kl_kind
        ),
        normalizer=_NORMALIZERS[mode],
        init_state=init_state,
        needs=needs,
        filter_groups=filter_groups,
    )


def _shaped_rewards(inputs: PrepareInputs, overlong: tuple[int, int, float] | None) -> Array:
    if overlong is None:
        return inputs.rewards
    max_len, buffer, factor = overlong
    penalty = losses.overlong_penalty(
        inputs.lengths, max_len=max_len, buffer_len=buffer, factor=factor
    )
    return inputs.rewards + penalty.reshape(inputs.rewards.shape)


# ---------------------------------------------------------------------------------------------
# GRPO family (methods/grpo.md).


def grpo(
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
    dual_clip: float | None = None,
    mode: str = "token-mean",
    max_len: int | None = None,
    kl_beta: float = 0.0,
    kl_kind: str = "k3",
    scale: str = "std",
) -> Method:
    """GRPO: group z-score advantages (unbiased std) and the clipped surrogate (arXiv 2402.03300)."""

    def credit(inputs, state):
        adv = losses.group_advantages(inputs.rewards, scale=scale)
        return _per_row(adv), state, {}

    return _policy_method(
        "grpo",
        credit,
        kl_beta=kl_beta,
        kl_kind=kl_kind,
        policy_kwargs=dict(
            clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip, mode=mode, max_len=max_len
        ),
    )


def drgrpo(*, max_len: int | None = None, clip_low: float = 0.2, clip_high: float = 0.2) -> Method:
    """Dr.GRPO: centred advantages, constant-length normalisation (arXiv 2503.20783)."""
    method = grpo(
        scale="none",
        mode="seq-mean-token-sum-norm",
        max_len=max_len,
        clip_low=clip_low,
        clip_high=clip_high,
    )
    return dataclasses.replace(method, name="drgrpo")


def rloo(*, clip_low: float = 0.2, clip_high: float = 0.2, mode: str = "token-mean") -> Method:
    """RLOO: leave-one-out baseline (arXiv 2402.14740)."""

    def credit(inputs, state):
        return _per_row(losses.rloo_advantages(inputs.rewards)), state, {}

    return _policy_method(
        "rloo", credit, policy_kwargs=dict(clip_low=clip_low, clip_high=clip_high, mode=mode)
    )


def dapo(
    *,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 3.0,
    overlong_max_len: int | None = None,
    overlong_buffer: int | None = None,
    overlong_factor: float = 1.0,
    filter_groups: bool = True,
) -> Method:
    """DAPO preset: clip-higher, dual clip, token-mean, overlong shaping, dynamic sampling."""
    overlong = None
    if overlong_max_len is not None:
        overlong = (overlong_max_len, overlong_buffer or overlong_max_len // 4, overlong_factor)

    def credit(inputs, state):
        adv = losses.group_advantages(_shaped_rewards(inputs, overlong))
        return _per_row(adv), state, {}

    return _policy_method(
        "dapo",
        credit,
        filter_groups=filter_groups,
        policy_kwargs=dict(
            clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip, mode="token-mean"
        ),
    )


# ---------------------------------------------------------------------------------------------
# The six 2026 methods.


def echo(
    *,
    coef: float = 0.05,
    normalization: str = "full_observation_tokens",
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> Method:
    """ECHO: GRPO on action tokens + coef * cross-entropy on observation tokens (methods/echo.md)."""

    def prepare(inputs, state):
        adv = losses.group_advantages(inputs.rewards)
        return {"advantages": jax.lax.stop_gradient(_per_row(adv))}, state, {}

    def loss(logprobs, batch):
        return losses.echo_loss(
            logprobs,
            batch["old_logprobs"],
            batch["advantages"],
            batch["action_mask"],
            batch["env_mask"],
            batch["warning_mask"],
            coef=coef,
            normalization=normalization,
            clip_low=clip_low,
            clip_high=clip_high,
        )

    return Method(name="echo", prepare=prepare, loss=loss, normalizer=_rows_normalizer)


def delta(
    *,
    c_min: float = 0.8,
    c_max: float = 1.2,
    n_refine: int = 1,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 10.0,
    overlong_max_len: int | None = None,
    overlong_buffer: int | None = None,
    overlong_factor: float = 1.0,
) -> Method:
    """DelTA: GRPO advantages times per-token centroid-discriminator coefficients (methods/delta.md).

    Defaults are the paper's runs (delta.md sections 4 and 9): n_refine 1, coefficient range
    [0.8, 1.2], clip 0.2 / 0.28, dual clip 10, token-mean, no KL, no dynamic sampling. The paper's
    DAPO overlong shaping (L_max 20480, L_buf 4096, factor 1.0) depends on the response budget, so
    it is on only when `overlong_max_len` is given (the experiment presets set it; `overlong_buffer`
    None means L_max / 4).
    """
    overlong = None
    if overlong_max_len is not None:
        overlong = (overlong_max_len, overlong_buffer or overlong_max_len // 4, overlong_factor)

    def credit(inputs, state):
        adv = _per_row(losses.group_advantages(_shaped_rewards(inputs, overlong)))
        probs = jnp.exp(inputs.old_logprobs)
        coeffs = losses.delta_coefficients(
            inputs.hidden,
            probs,
            adv,
            inputs.action_mask,
            c_min=c_min,
            c_max=c_max,
            n_refine=n_refine,
        )
        on = inputs.action_mask > 0
        spread = jnp.where(on, coeffs, jnp.nan)
        return (
            adv[:, None] * coeffs * inputs.action_mask,
            state,
            {
                "delta_coef_min": jnp.nanmin(spread),
                "delta_coef_max": jnp.nanmax(spread),
                "delta_coef_std": jnp.nanstd(spread),
            },
        )

    return _policy_method(
        "delta",
        credit,
        needs=frozenset({"hidden"}),
        policy_kwargs=dict(
            clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip, mode="token-mean"
        ),
    )


def _task_normalised(
    name: str,
    advantage_fn: Callable[..., Array],
    *,
    num_tasks: int,
    clip_low: float,
    clip_high: float,
    dual_clip: float | None,
    filter_groups: bool,
) -> Method:
    """GoLongRL's composition: a task-level advantage function, dual clip, token-mean."""

    def credit(inputs, state):
        adv = advantage_fn(
            inputs.rewards, inputs.task_ids, num_tasks=num_tasks, group_mask=inputs.group_mask
        )
        cv = losses.task_advantage_cv(
            adv, inputs.task_ids, num_tasks=num_tasks, group_mask=inputs.group_mask
        )
        return _per_row(adv), state, {"tmn_task_cv": cv}

    return _policy_method(
        name,
        credit,
        filter_groups=filter_groups,
        policy_kwargs=dict(
            clip_low=clip_low, clip_high=clip_high, dual_clip=dual_clip, mode="token-mean"
        ),
    )


def golong(
    *,
    num_tasks: int = 9,
    alpha: float = 0.8,
    gamma: float = 1.0,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 3.0,
    filter_groups: bool = True,
) -> Method:
    """GoLongRL TMN-Reweight: task-level normalisation and difficulty reweighting (golongrl.md)."""
    advantage_fn = functools.partial(losses.tmn_reweight_advantages, alpha=alpha, gamma=gamma)
    return _task_normalised(
        "golong",
        advantage_fn,
        num_tasks=num_tasks,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip=dual_clip,
        filter_groups=filter_groups,
    )


def golong_tmn(
    *,
    num_tasks: int = 9,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 3.0,
    filter_groups: bool = True,
) -> Method:
    """GoLongRL's TMN ablation: task-level normalisation without the difficulty reweighting."""
    return _task_normalised(
        "golong_tmn",
        losses.tmn_advantages,
        num_tasks=num_tasks,
        clip_low=clip_low,
        clip_high=clip_high,
        dual_clip=dual_clip,
        filter_groups=filter_groups,
    )


def anti_sd(
    *,
    coef_max: float = 0.5,
    warmup_steps: int = 5,
    down_ratio: float = 0.93,
    gate: bool = True,
    clip_low: float = 0.2,
    clip_high: float = 0.2,
) -> Method:
    """Anti-SD: GRPO advantage minus a gated JSD penalty against a self-teacher (methods/anti_sd.md)."""

    def init_state():
        return losses.entropy_gate_init(warmup_steps=warmup_steps, down_ratio=down_ratio)

    def credit(inputs, state):
        adv = _per_row(losses.group_advantages(inputs.rewards))
        median = losses.teacher_entropy_median(inputs.teacher_entropy, inputs.action_mask)
        if gate:
            state, open_ = losses.entropy_gate_update(state, median)
        else:
            open_ = jnp.ones((), jnp.float32)
        token_adv = losses.anti_sd_advantages(
            adv,
            inputs.old_logprobs,
            inputs.teacher_logprobs,
            inputs.action_mask,
            coef=open_ * coef_max,
        )
        penalty = losses.jsd_token_penalty(inputs.old_logprobs, inputs.teacher_logprobs)
        return (
            token_adv,
            state,
            {
                "anti_sd_gate": open_,
                "teacher_entropy_median": median,
                "anti_sd_penalty_mean": losses.aggregate(penalty, inputs.action_mask),
            },
        )

    return _policy_method(
        "anti_sd",
        credit,
        init_state=init_state,
        needs=frozenset({"teacher"}),
        policy_kwargs=dict(clip_low=clip_low, clip_high=clip_high, mode="token-mean"),
    )


def rubric_em(
    *, dependence: Any = None, kl_beta: float = 0.001, clip_low: float = 0.2, clip_high: float = 0.2
) -> Method:
    """RubricEM SS-GRPO: stage returns, stagewise normalisation, stage-token credit (methods/rubric_em.md).

    `dependence` is the K x K upper-triangular Lambda; None takes the spec's default
    (`rljax.losses.rubric_em.PAPER_STAGE_DEPENDENCE`).
    """
    lam = jnp.asarray(
        rubric_em_losses.PAPER_STAGE_DEPENDENCE if dependence is None else dependence, jnp.float32
    )

    def credit(inputs, state):
        stage_adv = losses.stagewise_advantages(inputs.stage_rewards, lam)  # [P, G, K]
        num_stages = stage_adv.shape[-1]
        token_adv = losses.stage_token_advantages(
            stage_adv.reshape(-1, num_stages), inputs.stage_ids
        )
        per_stage = {
            f"stage_adv_abs_{k}": jnp.abs(stage_adv[..., k]).mean() for k in range(num_stages)
        }
        return token_adv * inputs.action_mask, state, per_stage

    return _policy_method(
        "rubric_em",
        credit,
        kl_beta=kl_beta,
        kl_kind="k3",
        policy_kwargs=dict(clip_low=clip_low, clip_high=clip_high, mode="token-mean"),
    )


def poly_epo(
    *,
    set_size: int = 4,
    max_len: int | None = None,
    degenerate: int = -1,
    clip_low: float = 0.2,
    clip_high: float = 0.28,
    dual_clip: float | None = 3.0,
) -> Method:
    """Poly-EPO: marginal set advantages from mean reward x strategy diversity (methods/poly_epo.md)."""

    def credit(inputs, state):
        adv = losses.poly_epo_advantages(
            inputs.rewards, inputs.cluster_ids, set_size=set_size, degenerate=degenerate
        )
        valid = inputs.cluster_ids != degenerate
        distinct = jax.vmap(
            lambda c, v: jnp.sum(
                (
                    jnp.unique(jnp.where(v, c, degenerate), size=c.shape[0], fill_value=degenerate)
                    != degenerate
                )
            )
        )(inputs.cluster_ids, valid)
        return _per_row(adv), state, {"poly_epo_clusters": distinct.astype(jnp.float32).mean()}

    return _policy_method(
        "poly_epo",
        credit,
        policy_kwargs=dict(
            clip_low=clip_low,
            clip_high=clip_high,
            dual_clip=dual_clip,
            mode="seq-mean-token-sum-norm",
            max_len=max_len,
        ),
    )


METHODS: dict[str, Callable[..., Method]] = {
    "grpo": grpo,
    "drgrpo": drgrpo,
    "dapo": dapo,
    "rloo": rloo,
    "echo": echo,
    "delta": delta,
    "golong": golong,
    "golong_tmn": golong_tmn,
    "anti_sd": anti_sd,
    "rubric_em": rubric_em,
    "poly_epo": poly_epo,
}


def make_method(name: str, **kwargs) -> Method:
    """Builds a registered method by name; unknown names or keyword arguments raise ValueError."""
    if name not in METHODS:
        raise ValueError(f"unknown method {name!r}; expected one of {sorted(METHODS)}")
    factory = METHODS[name]
    params = inspect.signature(factory).parameters
    unknown = sorted(set(kwargs) - set(params))
    if unknown:
        raise ValueError(
            f"method {name!r} has no option(s) {unknown}; options are {sorted(params)}"
        )
    return factory(**kwargs)


def keep_groups(rewards: np.ndarray) -> np.ndarray:
    """DAPO dynamic-sampling keep mask [P] (see `losses.dynamic_sampling_mask`), host side."""
    return np.asarray(losses.dynamic_sampling_mask(jnp.asarray(rewards)))
