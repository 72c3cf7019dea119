"""The Pallas kernels (forward, JSD and backward tiles) lower for GPU (Triton) and TPU (Mosaic)
from this CPU-only machine, with each backend's default block sizes and ragged N, V.

This checks what can be checked without the accelerator: block-shape rules, supported primitives
and dtypes in the Pallas -> Triton / Mosaic lowering. Compiling and running on the device is
kernels/gpu_check.sh.
"""

import re

import jax
import jax.numpy as jnp
import pytest
from rljax.kernels import BlockSizes
from rljax.kernels.token_stats import SweepConfig, _token_stats_vjp

CASES = {
    "gpu-default": ("gpu", "cuda", BlockSizes.get_default("gpu"), 1024),
    "gpu-hidden-96": ("gpu", "cuda", BlockSizes.get_default("gpu"), 96),
    "tpu-default": ("tpu", "tpu", BlockSizes.get_default("tpu"), 256),
}
CUSTOM_CALL = {"cuda": "__gpu$xla.gpu.triton", "tpu": "tpu_custom_call"}


@pytest.mark.parametrize("case", sorted(CASES))
def test_forward_and_backward_lower(case):
    platform, lowering_platform, block_sizes, hidden_size = CASES[case]
    stats_fn = _token_stats_vjp(SweepConfig("pallas", 0.7, block_sizes, platform))
    num_rows, vocab = 300, 1000  # neither a multiple of the tiles

    def teacher_objective(hidden, w, teacher, targets):
        s = stats_fn(hidden, w, targets, teacher)
        return jnp.sum(s.logprob + s.entropy + s.teacher_logprob + s.teacher_entropy + s.jsd)

    def student_objective(hidden, w, teacher, targets):
        return jnp.sum(stats_fn(hidden, w, targets, None).logprob)

    rows = jax.ShapeDtypeStruct((num_rows, hidden_size), jnp.bfloat16)
    args = (
        rows,
        jax.ShapeDtypeStruct((hidden_size, vocab), jnp.bfloat16),
        rows,
        jax.ShapeDtypeStruct((num_rows,), jnp.int32),
    )
    for objective, argnums in ((teacher_objective, (0, 1, 2)), (student_objective, (0, 1))):
        lowered = (
            jax.jit(jax.grad(objective, argnums=argnums))
            .trace(*args)
            .lower(lowering_platforms=(lowering_platform,))
        )
        calls = re.findall(r"custom_call @([\w$.]+)", lowered.as_text())
        kernels_called = [c for c in calls if c == CUSTOM_CALL[lowering_platform]]
        # forward softmax (+ JSD with a teacher) and the backward tile kernel(s)
        assert len(kernels_called) >= (3 if objective is teacher_objective else 2), calls
