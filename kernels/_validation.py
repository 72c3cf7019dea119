"""Input checks of the public kernel entry points; each failure is a ValueError naming the input."""

import math

import chex
import jax
import jax.numpy as jnp
import numpy as np

FLOAT_DTYPES = (jnp.float32, jnp.bfloat16, jnp.float16)


def check_rank(name: str, x: jax.typing.ArrayLike, rank: int) -> None:
    """Raises ValueError unless `x` has rank `rank` (chex's contract, re-raised as ValueError)."""
    try:
        chex.assert_rank(x, rank)
    except AssertionError as err:
        raise ValueError(f"{name} must have rank {rank}, got shape {jnp.shape(x)}") from err


def check_shape(name: str, x: jax.typing.ArrayLike, shape: tuple[int, ...]) -> None:
    """Raises ValueError unless `x` has exactly `shape` (chex's contract, as ValueError)."""
    try:
        chex.assert_shape(x, tuple(shape))
    except AssertionError as err:
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {jnp.shape(x)}") from err


def check_unembedding_inputs(
    hidden: jax.Array,
    w_unembed: jax.Array,
    targets: jax.Array,
    teacher_hidden: jax.Array | None,
    temperature: float,
) -> None:
    """Validates hidden [..., H], w_unembed [H, V], targets [...] and the temperature.

    hidden and teacher_hidden share one floating dtype with w_unembed (float32, bfloat16 or
    float16); targets are integers in [0, V) (checked when they are concrete; under a trace an
    out-of-range target yields a NaN log-prob instead of a clamped lookup).

    Args:
        hidden: [..., H] hidden states.
        w_unembed: [H, V] unembedding.
        targets: [...] int token ids (hidden's leading shape).
        teacher_hidden: None or hidden's shape and dtype.
        temperature: a finite Python number > 0.

    Raises:
        ValueError naming the offending input, its shape / dtype / value and what was expected.
    """
    check_rank("w_unembed", w_unembed, 2)
    hidden_size, vocab = w_unembed.shape
    if hidden.ndim < 2 or hidden.shape[-1] != hidden_size:
        raise ValueError(
            f"hidden must have shape [..., H] with H = w_unembed.shape[0] = "
            f"{hidden_size}, got {hidden.shape}"
        )
    if hidden.size == 0 or vocab == 0:
        raise ValueError(f"hidden {hidden.shape} and w_unembed {w_unembed.shape} must be non-empty")
    check_shape("targets", targets, hidden.shape[:-1])
    if hidden.dtype not in FLOAT_DTYPES:
        raise ValueError(f"hidden must be float32, bfloat16 or float16, got {hidden.dtype}")
    if w_unembed.dtype != hidden.dtype:
        raise ValueError(
            f"w_unembed dtype {w_unembed.dtype} must equal hidden dtype {hidden.dtype}"
        )
    if not jnp.issubdtype(targets.dtype, jnp.integer):
        raise ValueError(f"targets must be integer token ids, got dtype {targets.dtype}")
    if teacher_hidden is not None:
        check_shape("teacher_hidden", teacher_hidden, hidden.shape)
        if teacher_hidden.dtype != hidden.dtype:
            raise ValueError(
                f"teacher_hidden dtype {teacher_hidden.dtype} must equal hidden "
                f"dtype {hidden.dtype}"
            )
    if not (
        isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0
    ):
        raise ValueError(f"temperature must be a finite Python number > 0, got {temperature!r}")
    if not isinstance(targets, jax.core.Tracer):
        ids = np.asarray(targets)
        if ids.min() < 0 or ids.max() >= vocab:
            raise ValueError(
                f"targets must lie in [0, V) = [0, {vocab}), got values in "
                f"[{ids.min()}, {ids.max()}]"
            )
