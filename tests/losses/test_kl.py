"""Tests for rljax.losses.kl against methods/grpo.md E4 and the GRPO-8 gradient formulas."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.losses.kl import kl_penalty

# grpo.md E4: (logp, logp_ref) -> k1, k2, k3.
LOGP = np.array([[-1.0, -2.0]], np.float32)
REF = np.array([[-1.5, -0.5]], np.float32)
E4 = {"k1": [[0.5, -1.5]], "k2": [[0.125, 1.125]], "k3": [[0.106531, 1.98169]]}


@pytest.mark.parametrize("kind", ["k1", "k2", "k3"])
def test_e4(variant, kind):
    fn = variant(functools.partial(kl_penalty, kind=kind))
    np.testing.assert_allclose(fn(LOGP, REF), E4[kind], rtol=1e-5)


def test_gradients(variant):
    # d k1 / d logp = 1; d k2 / d logp = logp - ref; d k3 / d logp = 1 - exp(ref - logp).
    expected = {"k1": np.ones_like(LOGP), "k2": LOGP - REF, "k3": 1 - np.exp(REF - LOGP)}
    for kind, grad_expected in expected.items():
        fn = variant(
            jax.grad(lambda lp, ref, k=kind: jnp.sum(kl_penalty(lp, ref, kind=k)), argnums=(0, 1))
        )
        grad_logp, grad_ref = fn(jnp.asarray(LOGP), jnp.asarray(REF))
        np.testing.assert_allclose(grad_logp, grad_expected, rtol=1e-5)
        np.testing.assert_array_equal(grad_ref, 0.0)


def test_k3_clamps(variant):
    # d = ref - logp = 5: exp(5) - 6 = 142.4 -> clamped to 10; d = 30 -> clamped to 20 first.
    logp = np.array([[0.0, 0.0]], np.float32)
    ref = np.array([[5.0, 30.0]], np.float32)
    np.testing.assert_allclose(variant(kl_penalty)(logp, ref), [[10.0, 10.0]])
    fn = variant(functools.partial(kl_penalty, k3_clamp=None))
    np.testing.assert_allclose(fn(logp, ref), [[np.exp(5) - 6, np.exp(20) - 21]], rtol=1e-5)


def test_bad_input():
    with pytest.raises(ValueError, match="kind='k4'"):
        kl_penalty(LOGP, REF, kind="k4")
    with pytest.raises(ValueError, match="ref_logprobs"):
        kl_penalty(LOGP, REF[:, :1])
    with pytest.raises(ValueError, match="logprobs"):
        kl_penalty(LOGP[0], REF[0])
