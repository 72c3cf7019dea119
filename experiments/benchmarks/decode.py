"""Decode throughput: the KV-cache sampler against greedy decoding by full recomputation.

For each total length L, B rows start from a P-token prompt and greedily generate L - P tokens two
ways, each as one compiled program after a warm-up run:
- cache: `DecodeSession.prefill` + `generate` (one prefill, then one token per step against the cache);
- recompute: a `lax.while_loop` that runs the uncached forward over the whole [B, L] buffer at every step
  and takes the arg-max at the current position (fixed shapes, so it too compiles once).
Both produce the same tokens (checked); the JSON records tokens/s of each and their ratio.

Usage: python -m rljax.experiments.benchmarks.decode [--lengths 64,128,256,512] [--batch-size 8] [--out PATH]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import pathlib
import time

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from rljax.experiments.benchmarks.machine import machine_info

from rljax.models import Decoder, ModelConfig
from rljax.sampling import DecodeSession, Greedy

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "decode_cpu.json"


def make_recompute_decoder(model: nnx.Module, length: int):
    """Jitted greedy decoding that reruns the full uncached forward over [B, length] at every step."""
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(tokens: jax.Array, prompt_len: jax.Array) -> jax.Array:
        def body(step: jax.Array, buffer: jax.Array) -> jax.Array:
            position = prompt_len + step
            segment_ids = (jnp.arange(length)[None, :] < position).astype(jnp.int32)
            segment_ids = jnp.broadcast_to(segment_ids, buffer.shape)
            logits = nnx.merge(graphdef, state).logits(buffer, segment_ids=segment_ids)
            next_token = jnp.argmax(logits[:, position - 1], axis=-1).astype(jnp.int32)
            return jax.lax.dynamic_update_slice(buffer, next_token[:, None], (0, position))

        return jax.lax.fori_loop(0, length - prompt_len, body, tokens)

    return run


def time_call(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of `repeats` calls (after one warm-up call that compiles), and the last result."""
    result = fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def benchmark_length(
    model: nnx.Module, prompts: np.ndarray, length: int, repeats: int
) -> dict[str, object]:
    """Tokens/s of cached and recomputed greedy decoding from `prompts` [B, P] up to `length` tokens."""
    batch, prompt_len = prompts.shape
    new_tokens = length - prompt_len
    session = DecodeSession(
        model, batch_size=batch, max_len=length, strategy=Greedy(), key=jax.random.key(0)
    )

    def cached() -> list[list[int]]:
        session.prefill([row.tolist() for row in prompts])
        gens = session.generate(
            max_new_tokens=[new_tokens] * batch, stop_tokens=[()] * batch, active=[True] * batch
        )
        return [g.tokens for g in gens]

    recompute = make_recompute_decoder(model, length)
    buffer = jnp.zeros((batch, length), jnp.int32).at[:, :prompt_len].set(prompts)

    def recomputed() -> list[list[int]]:
        out = np.asarray(jax.block_until_ready(recompute(buffer, jnp.int32(prompt_len))))
        return out[:, prompt_len:].tolist()

    cache_s, cache_tokens = time_call(cached, repeats)
    recompute_s, recompute_tokens = time_call(recomputed, repeats)
    generated = batch * new_tokens
    return {
        "length": length,
        "new_tokens_per_row": new_tokens,
        "cache_seconds": cache_s,
        "recompute_seconds": recompute_s,
        "cache_tokens_per_s": generated / cache_s,
        "recompute_tokens_per_s": generated / recompute_s,
        "speedup": recompute_s / cache_s,
        "tokens_match": cache_tokens == recompute_tokens,
    }


def main(argv: list[str] | None = None) -> dict[str, object]:
    """Runs the benchmark and writes the JSON report; returns it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--lengths", default="64,128,256,512", help="comma-separated total lengths L"
    )
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--prompt-len", type=int, default=16)
    parser.add_argument(
        "--repeats", type=int, default=2, help="timed runs per setting (best is kept)"
    )
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    lengths = [int(n) for n in args.lengths.split(",")]
    if min(lengths) <= args.prompt_len:
        raise ValueError(f"every length must exceed --prompt-len={args.prompt_len}, got {lengths}")

    config = ModelConfig.tiny()
    model = Decoder(config, rngs=nnx.Rngs(0))
    prompts = np.random.default_rng(0).integers(
        0, config.vocab_size, (args.batch_size, args.prompt_len)
    )
    results = []
    for length in lengths:
        results.append(benchmark_length(model, prompts.astype(np.int32), length, args.repeats))
        print(json.dumps(results[-1]), flush=True)
    report = {
        "benchmark": "greedy decode, KV cache vs full recomputation",
        "machine": machine_info(),
        "model": {"preset": "tiny", **dataclasses.asdict(config)},
        "batch_size": args.batch_size,
        "prompt_len": args.prompt_len,
        "repeats": args.repeats,
        "results": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
