"""The optimiser: AdamW with warm-up + decay schedules, global-norm clipping, non-finite skipping."""

from __future__ import annotations

from typing import TYPE_CHECKING

import jax
import jax.numpy as jnp
import optax

if TYPE_CHECKING:  # type only: config imports this module's SCHEDULES
    from rljax.train.config import OptimSection

SCHEDULES = ("constant", "cosine", "linear")


def learning_rate_schedule(cfg: OptimSection, total_steps: int) -> optax.Schedule:
    """Linear warm-up for `cfg.warmup_steps`, then constant, cosine or linear decay to zero."""
    if cfg.schedule not in SCHEDULES:
        raise ValueError(f"optim.schedule must be one of {SCHEDULES}, got {cfg.schedule!r}")
    if cfg.warmup_steps < 0 or cfg.warmup_steps > max(total_steps, 1):
        raise ValueError(f"optim.warmup_steps={cfg.warmup_steps} must lie in [0, {total_steps}]")
    decay_steps = max(total_steps - cfg.warmup_steps, 1)
    if cfg.schedule == "constant":
        after = optax.constant_schedule(cfg.learning_rate)
    elif cfg.schedule == "cosine":
        after = optax.cosine_decay_schedule(cfg.learning_rate, decay_steps)
    else:
        after = optax.linear_schedule(cfg.learning_rate, 0.0, decay_steps)
    if cfg.warmup_steps == 0:
        return after
    warmup = optax.linear_schedule(0.0, cfg.learning_rate, cfg.warmup_steps)
    return optax.join_schedules([warmup, after], [cfg.warmup_steps])


def make_optimizer(cfg: OptimSection, total_steps: int) -> optax.GradientTransformation:
    """AdamW behind global-norm clipping, wrapped so a non-finite gradient skips the update.

    `optax.apply_if_finite` leaves parameters and the inner optimiser state untouched on a NaN/inf
    gradient and counts such steps (`total_notfinite`), which the trainer logs.
    """
    if cfg.learning_rate <= 0:
        raise ValueError(f"optim.learning_rate must be > 0, got {cfg.learning_rate}")
    if cfg.grad_clip <= 0:
        raise ValueError(f"optim.grad_clip must be > 0, got {cfg.grad_clip}")
    return guard_nonfinite(
        optax.chain(
            optax.clip_by_global_norm(cfg.grad_clip),
            optax.adamw(
                learning_rate_schedule(cfg, total_steps),
                b1=cfg.b1,
                b2=cfg.b2,
                weight_decay=cfg.weight_decay,
            ),
        )
    )


def guard_nonfinite(optimizer: optax.GradientTransformation) -> optax.GradientTransformation:
    """`optimizer` behind `optax.apply_if_finite`, unless it already is (e.g. `make_optimizer`'s).

    A NaN/inf gradient then leaves the parameters and the inner state (schedule count included)
    untouched, and the update's metrics count such steps as `skipped_updates`.

    Args:
        optimizer: any optax transformation.

    Returns:
        The guarded transformation.
    """
    probe = jax.eval_shape(optimizer.init, {"x": jax.ShapeDtypeStruct((1,), jnp.float32)})
    if isinstance(probe, optax.ApplyIfFiniteState):
        return optimizer
    return optax.apply_if_finite(optimizer, max_consecutive_errors=1_000_000)
