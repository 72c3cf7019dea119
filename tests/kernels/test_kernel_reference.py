"""kernels.reference (the oracle of the kernel tests) against grpo.md E5, anti_sd.md E4 and a
PyTorch implementation with autograd gradients."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from kernel_problems import make_problem, weighted_sum

from rljax import kernels


def test_temperature_worked_example():
    """grpo.md E5: logits [2.0, 0.5, -1.0]; tau = 1 and tau = 0.8 log-probs."""
    hidden = jnp.ones((3, 1))
    w = jnp.array([[2.0, 0.5, -1.0]])
    targets = jnp.arange(3)
    for tau, expected in (
        (1.0, [-0.241311, -1.74131, -3.24131]),
        (0.8, [-0.162861, -2.03786, -3.91286]),
    ):
        stats = kernels.token_stats(hidden, w, targets, temperature=tau, impl="reference")
        np.testing.assert_allclose(stats.logprob, expected, atol=2e-6)


def test_teacher_entropy_worked_example_and_zero_jsd_for_equal_rows():
    """anti_sd.md E4: pi_T = [0.7, 0.2, 0.1] has entropy 0.801819; JSD(pi || pi) = 0."""
    w = jnp.log(jnp.array([[0.7, 0.2, 0.1]]))
    ones = jnp.ones((1, 1))
    stats = kernels.token_stats(ones, w, jnp.array([0]), teacher_hidden=ones, impl="reference")
    assert float(stats.teacher_entropy[0]) == pytest.approx(0.801819, abs=1e-6)
    assert float(stats.jsd[0]) == pytest.approx(0.0, abs=1e-7)


def _torch_stats(hidden, teacher, w, targets, tau):
    lp = torch.log_softmax(hidden @ w / tau, dim=-1)
    lq = torch.log_softmax(teacher @ w / tau, dim=-1)
    m = 0.5 * (lp.exp() + lq.exp())
    jsd = 0.5 * (lp.exp() * (lp - m.log())).sum(-1) + 0.5 * (lq.exp() * (lq - m.log())).sum(-1)
    rows = torch.arange(len(targets))
    return (
        lp[rows, targets],
        -(lp.exp() * lp).sum(-1),
        lq[rows, targets],
        -(lq.exp() * lq).sum(-1),
        jsd,
    )


def test_values_and_gradients_match_pytorch():
    problem = make_problem(seed=7)
    tau = 0.7
    tensors = [
        torch.tensor(np.asarray(x, np.float64), requires_grad=True)
        for x in (problem.hidden, problem.teacher_hidden, problem.w)
    ]
    targets = torch.tensor(np.asarray(problem.targets))
    torch_stats = _torch_stats(*tensors, targets, tau)
    objective = sum(
        (torch.tensor(np.asarray(g, np.float64)) * s).sum()
        for g, s in zip(problem.weights, torch_stats)
    )
    objective.backward()

    def f(hidden, teacher, w):
        stats = kernels.token_stats(
            hidden, w, problem.targets, temperature=tau, teacher_hidden=teacher, impl="reference"
        )
        return weighted_sum(stats, problem.weights), stats

    (_, stats), grads = jax.value_and_grad(f, argnums=(0, 1, 2), has_aux=True)(
        problem.hidden, problem.teacher_hidden, problem.w
    )
    for a, e in zip(stats, torch_stats):
        np.testing.assert_allclose(a, e.detach().numpy(), atol=2e-5)
    for a, t in zip(grads, tensors):
        np.testing.assert_allclose(a, t.grad.numpy(), atol=2e-5)
