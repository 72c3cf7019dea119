"""Cost of the per-array checksums of a checkpoint, on the train state of the `cpu` preset.

The state is what `Checkpointer.save` writes for the `tiny` policy (vocabulary sized to the
tokenizer): parameters, the AdamW moments of `make_optimizer`, step and PRNG key. For each of
`--repeats` saves into a fresh directory, it times the CRC-32 of every host array (the part the
checksums add) and the whole save (host copy, checksums, Orbax write, waited for), and the
verification a restore adds. The JSON records medians and the ratio checksum / save.

Usage: python -m rljax.experiments.benchmarks.checkpoint_integrity [--repeats 10] [--out PATH]
"""

from __future__ import annotations

import argparse
import json
import pathlib
import statistics
import tempfile
import time

import jax
import jax.numpy as jnp
from flax import nnx

from rljax.data import load_tokenizer
from rljax.models import Decoder, ModelConfig
from rljax.train import checkpoint
from rljax.train.config import OptimSection
from rljax.train.optim import make_optimizer

DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "checkpoint_integrity_cpu.json"


def cpu_preset_state() -> dict:
    """The `cpu` preset's checkpointed arrays: tiny policy params, AdamW state, step, key."""
    model = Decoder(ModelConfig.tiny(vocab_size=len(load_tokenizer())), rngs=nnx.Rngs(0))
    params = nnx.state(model, nnx.Param)
    opt_state = make_optimizer(OptimSection(learning_rate=1e-4), 100).init(params)
    return {
        "params": params,
        "opt_state": opt_state,
        "step": jnp.zeros((), jnp.int32),
        "key": jax.random.key_data(jax.random.key(0)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args()
    state = cpu_preset_state()
    abstract = checkpoint.abstract_like(state)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(state))
    checksum_ms, save_ms, verify_ms, restore_ms = [], [], [], []
    with tempfile.TemporaryDirectory() as root:
        ckpt = checkpoint.Checkpointer(pathlib.Path(root), max_to_keep=2, async_save=True)
        for step in range(1, args.repeats + 2):
            host, _ = checkpoint.host_copy(state)
            start = time.perf_counter()
            for leaf in jax.tree.leaves(host):
                checkpoint.array_checksum(leaf)
            crc = time.perf_counter() - start
            start = time.perf_counter()
            ckpt.save(step, state, {"step": step}, force=True)
            ckpt.wait()
            save = time.perf_counter() - start
            start = time.perf_counter()
            restored, meta = ckpt.restore_step(step, abstract)
            restore = time.perf_counter() - start
            sums = checkpoint.host_copy(restored)[1]
            start = time.perf_counter()
            checkpoint.verify_checksums(restored, sums)
            verify = time.perf_counter() - start
            if step > 1:  # the first save also compiles and opens the Orbax machinery
                checksum_ms.append(crc * 1e3)
                save_ms.append(save * 1e3)
                restore_ms.append(restore * 1e3)
                verify_ms.append(verify * 1e3)
        ckpt.close()
    result = {
        "state_bytes": nbytes,
        "arrays": len(jax.tree.leaves(state)),
        "repeats": args.repeats,
        "checksum_ms_median": statistics.median(checksum_ms),
        "save_ms_median": statistics.median(save_ms),
        "checksum_fraction_of_save": statistics.median(checksum_ms) / statistics.median(save_ms),
        "restore_ms_median": statistics.median(restore_ms),
        "verify_ms_median": statistics.median(verify_ms),
        "backend": jax.default_backend(),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
