"""Input validation shared by the loss functions: chex contracts re-raised as ValueError.

chex reports a broken contract with an AssertionError; the library promises a ValueError that names
the offending argument, its value or shape, and what was expected (DESIGN.md, "Errors").
"""

from collections.abc import Collection, Sequence

import chex
import jax


def check_rank(name: str, x: jax.typing.ArrayLike, rank: int | Collection[int]) -> None:
    """Raises ValueError unless `x` has one of the expected ranks."""
    try:
        chex.assert_rank(x, rank if isinstance(rank, int) else set(rank))
    except AssertionError as err:
        raise ValueError(f"{name} must have rank {rank}, got shape {jax.numpy.shape(x)}") from err


def check_shape(name: str, x: jax.typing.ArrayLike, shape: Sequence[int]) -> None:
    """Raises ValueError unless `x` has exactly `shape`."""
    try:
        chex.assert_shape(x, tuple(shape))
    except AssertionError as err:
        raise ValueError(
            f"{name} must have shape {tuple(shape)}, got {jax.numpy.shape(x)}"
        ) from err


def check_choice(name: str, value: str, choices: Collection[str]) -> None:
    """Raises ValueError unless `value` is one of `choices`."""
    if value not in choices:
        raise ValueError(f"{name}={value!r} is not one of {sorted(choices)}")


def check_positive(name: str, value: float) -> None:
    """Raises ValueError unless `value` > 0 (a Python number: hyperparameters are static)."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
