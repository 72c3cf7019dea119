"""Small random problems and tolerances shared by the kernel tests (interpret mode keeps them tiny).

Sizes are deliberately ragged: N = 13 rows against block_n = 8, V = 70 columns against block_v =
16 and chunk_v = 32 (two full chunks and a tail), H = 32 in block_h = 16 chunks, so every kernel
runs several row tiles, several column tiles with a masked tail, and a multi-step hidden loop.
On a GPU (kernels/gpu_check.sh, Triton, no interpret mode) block_n is 16, Triton's smallest dot,
and matmuls run at "highest" precision (JAX_DEFAULT_MATMUL_PRECISION), so fp32 is compared at
fp32 tolerances there too (slightly looser for the different accumulation order).
"""

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from rljax.kernels import BlockSizes

ON_GPU = jax.default_backend() == "gpu"
SMALL_BLOCKS = BlockSizes(block_n=16 if ON_GPU else 8, block_v=16, block_h=16, chunk_v=32)
BLOCKWISE_IMPLS = ("xla_chunked", "pallas")
DTYPES = (jnp.float32, jnp.bfloat16)

# (values atol, gradient atol relative to the largest reference gradient entry). fp32 agrees to
# rounding; bf16 inputs are identical for both paths and logits accumulate in fp32, but the
# kernels cast the logit cotangent to bf16 for the gradient matmuls (as autodiff of a bf16 matmul
# does with its output cotangent), hence a bf16-sized gradient tolerance.
TOLERANCES = {jnp.float32: (1e-4, 1e-4) if ON_GPU else (2e-5, 2e-5), jnp.bfloat16: (1e-4, 2e-2)}
FP32_ATOL, FP32_GRAD = TOLERANCES[jnp.float32]


class Problem(NamedTuple):
    hidden: jax.Array
    teacher_hidden: jax.Array
    w: jax.Array
    targets: jax.Array
    weights: jax.Array  # [5, N] cotangent weights for the five statistics


def make_problem(
    num_rows: int = 13, hidden_size: int = 32, vocab: int = 70, dtype=jnp.float32, seed: int = 0
) -> Problem:
    """Random inputs with logits of order 1 (std ~ 1.7) and random per-row output weights."""
    keys = jax.random.split(jax.random.key(seed), 5)
    hidden = jax.random.normal(keys[0], (num_rows, hidden_size))
    teacher = hidden + 0.7 * jax.random.normal(keys[1], (num_rows, hidden_size))
    w = 0.3 * jax.random.normal(keys[2], (hidden_size, vocab))
    targets = jax.random.randint(keys[3], (num_rows,), 0, vocab)
    weights = jax.random.uniform(keys[4], (5, num_rows), minval=-1.0, maxval=1.0)
    return Problem(hidden.astype(dtype), teacher.astype(dtype), w.astype(dtype), targets, weights)


def weighted_sum(stats, weights: jax.Array) -> jax.Array:
    """sum_n sum_k weights[k, n] * stats[k][n] over the non-None statistics."""
    return sum(jnp.sum(w * s) for w, s in zip(weights, stats) if s is not None)


def assert_close(actual, expected, atol: float, name: str = "") -> None:
    np.testing.assert_allclose(
        np.asarray(actual, np.float32),
        np.asarray(expected, np.float32),
        atol=atol,
        rtol=atol,
        err_msg=name,
    )


def assert_grad_close(actual, expected, rel_atol: float, name: str = "") -> None:
    expected = np.asarray(expected, np.float32)
    atol = rel_atol * max(float(np.abs(expected).max()), 1e-6)
    np.testing.assert_allclose(
        np.asarray(actual, np.float32), expected, atol=atol, rtol=0, err_msg=name
    )
