"""Bad input to the kernel entry points raises a ValueError naming the input and the expectation;
an out-of-range target under jit gives a NaN log-prob, never a clamped lookup."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from kernel_problems import SMALL_BLOCKS

from rljax import kernels

H, V, N = 16, 20, 6
HIDDEN = jnp.ones((N, H))
W = jnp.ones((H, V))
TARGETS = jnp.arange(N)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(hidden=jnp.ones((2, N, H))), "hidden must have rank 2"),
        (dict(w_unembed=jnp.ones((H, V, 1))), "w_unembed must have rank 2"),
        (dict(w_unembed=jnp.ones((H + 1, V))), r"H = w_unembed.shape\[0\] = 17"),
        (dict(targets=jnp.arange(N + 1)), r"targets must have shape \(6,\)"),
        (dict(targets=jnp.ones(N)), "targets must be integer"),
        (dict(w_unembed=jnp.ones((H, V), jnp.bfloat16)), "w_unembed dtype bfloat16 must equal"),
        (
            dict(hidden=jnp.ones((N, H), jnp.int32), w_unembed=jnp.ones((H, V), jnp.int32)),
            "hidden must be float32, bfloat16 or float16",
        ),
        (dict(teacher_hidden=jnp.ones((N, H + 1))), "teacher_hidden must have shape"),
        (dict(teacher_hidden=jnp.ones((N, H), jnp.bfloat16)), "teacher_hidden dtype"),
        (dict(targets=jnp.array([0, 1, 2, 3, 4, V])), r"targets must lie in \[0, V\) = \[0, 20\)"),
        (dict(targets=jnp.array([0, -1, 2, 3, 4, 5])), r"got values in \[-1, 5\]"),
        (dict(temperature=0.0), "temperature must be a finite Python number > 0"),
        (dict(temperature=jnp.array(1.0)), "temperature must be a finite Python number"),
        (dict(impl="triton"), "impl='triton' is not one of"),
    ],
)
def test_token_stats_rejects_bad_input(kwargs, message):
    args = dict(hidden=HIDDEN, w_unembed=W, targets=TARGETS)
    args.update(kwargs)
    hidden, w, targets = args.pop("hidden"), args.pop("w_unembed"), args.pop("targets")
    with pytest.raises(ValueError, match=message):
        kernels.token_stats(hidden, w, targets, **args)


def test_block_sizes_reject_bad_values():
    with pytest.raises(ValueError, match="block_n must be a positive int"):
        kernels.BlockSizes(block_n=0)
    with pytest.raises(ValueError, match="chunk_v must be None or a positive int"):
        kernels.BlockSizes(chunk_v=-4)


@pytest.mark.parametrize("impl", ["xla_chunked", "pallas", "reference"])
def test_out_of_range_target_under_jit_is_nan_not_clamped(impl):
    stats = jax.jit(
        lambda t: kernels.token_stats(HIDDEN, W, t, impl=impl, block_sizes=SMALL_BLOCKS)
    )(jnp.array([0, 1, 2, 3, -1, V]))
    assert np.all(np.isnan(stats.logprob[-2:])) and np.all(np.isfinite(stats.logprob[:-2]))


def test_fused_policy_loss_rejects_bad_input():
    b, t = 2, 3
    hidden, targets = jnp.ones((b, t, H)), jnp.zeros((b, t), jnp.int32)
    old, adv, mask = jnp.zeros((b, t)), jnp.zeros((b,)), jnp.ones((b, t))
    with pytest.raises(ValueError, match="hidden must have rank 3"):
        kernels.fused_policy_loss(hidden[0], W, targets, old, adv, mask)
    with pytest.raises(ValueError, match=r"old_logprobs must have shape \(2, 3\)"):
        kernels.fused_policy_loss(hidden, W, targets, old[:, :2], adv, mask)
    with pytest.raises(ValueError, match=r"mask must have shape \(2, 3\)"):
        kernels.fused_policy_loss(hidden, W, targets, old, adv, mask[0])
    with pytest.raises(ValueError, match="jsd_coef=-0.5 needs teacher_hidden"):
        kernels.fused_policy_loss(hidden, W, targets, old, adv, mask, jsd_coef=-0.5)


def test_hidden_chunk_is_the_largest_dividing_fraction_of_block_h():
    blocks = kernels.BlockSizes(block_h=64)
    assert [blocks.hidden_chunk(h) for h in (1024, 96, 896, 48, 64, 40)] == [64, 32, 64, 16, 64, 40]
    assert kernels.BlockSizes(block_h=None).hidden_chunk(1024) == 1024
