"""Model FLOPs of the RL-step workload and the measured fp32 matmul limit of the machine.

Model FLOPs count the matmuls of the decoder (2 per multiply-add): per token and layer the q/k/v/o
projections and the SwiGLU MLP, plus the unembedding, plus attention over the causal context
(t + 1 keys for the token at position t; 2 matmuls of N x D each). The update is 3x the forward
pass of its padded [B, T] batch (backward = 2x forward); the rollout is the prefill of the prompts
plus one forward token per generated token.
"""

from __future__ import annotations

import time

PROMPT_LEN = 4  # [BOS, a, b, SEP]


def token_flops(work, context: float) -> float:
    """Forward FLOPs of one token attending to `context` keys."""
    h, f, n, k, d = work.hidden, work.mlp, work.heads, work.kv_heads, work.head_dim
    projections = 2 * h * (n * d + 2 * k * d) + 2 * n * d * h + 3 * 2 * h * f
    attention = 2 * 2 * n * d * context
    return work.layers * (projections + attention) + 2 * h * work.vocab


def sequence_flops(work, length: int) -> float:
    """Forward FLOPs of one causal sequence of `length` tokens."""
    return sum(token_flops(work, t + 1) for t in range(length))


def update_flops(work, *, width: int) -> float:
    """Forward + backward FLOPs of the update on the [P*G, width] batch."""
    return 3 * work.prompts * work.group * sequence_flops(work, width)


def rollout_flops(work, *, generated: float) -> float:
    """Prefill of the P*G prompts plus `generated` decoded tokens (average context: the prompt
    plus half the response budget)."""
    rows = work.prompts * work.group
    prefill = rows * sequence_flops(work, PROMPT_LEN)
    context = PROMPT_LEN + generated / rows / 2
    return prefill + generated * token_flops(work, context)


def measure_matmul(sizes=(1024, 2048), repeats: int = 5) -> dict:
    """The best fp32 FLOP/s of a jitted [n, n] @ [n, n] on this machine's default device."""
    import jax
    import jax.numpy as jnp

    best = {}
    for n in sizes:
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        matmul = jax.jit(lambda x: x @ x)
        matmul(a).block_until_ready()
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            matmul(a).block_until_ready()
            times.append(time.perf_counter() - start)
        best[n] = 2 * n**3 / min(times)
    return {"flops": max(best.values()), "by_size": {str(n): v for n, v in best.items()}}
