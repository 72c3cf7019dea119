"""Memory and time of kernels.token_stats per implementation against the [N, V] reference.

For each (N, V) of a grid with H = 1024 and each implementation, the forward (log-prob and
entropy) and the forward + backward (gradient of sum(logprob) w.r.t. hidden and w_unembed, the
entropy as a metric) are compiled ahead of time; peak temporary memory is the compiled
executable's `memory_analysis().temp_size_in_bytes`, time is the median wall time of executing
the compiled function on random inputs, measured in the same run for every implementation.
Achieved TFLOP/s count the nominal matmul work: 2 N H V for the forward, 3 x that with the
backward (the blockwise implementations recompute the logit tiles, so they execute 4 x).

    python -m rljax.kernels.bench                  # reduced CPU grid -> results/bench_cpu.json
    python -m rljax.kernels.bench --grid gpu --out bench_gpu.json  # what kernels/gpu_check.sh runs
    python -m rljax.kernels.bench --grid full --out results.json   # N = 1k..32k, V = 32k, 128k, 152k

On CPU the pallas implementation runs in interpret mode (a correctness tool), so it is left out
unless named in --impls. Timing is skipped for points whose forward matmul exceeds --max-time-tflop
(memory is still reported: compiling needs no memory for the arrays).
"""

import argparse
import datetime
import json
import os
import platform
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from rljax import kernels

HIDDEN = 1024
GRIDS = {
    "cpu": ((1024, 8192), (32768, 151936)),
    "gpu": ((1024, 8192, 32768), (32768, 151936)),
    "full": ((1024, 2048, 4096, 8192, 16384, 32768), (32768, 131072, 151936)),
}
RESULTS = Path(__file__).parent / "results"


def _functions(impl: str, teacher: bool):
    """(forward, forward+backward) for one implementation, as functions of (h, w, targets, t)."""

    def stats(hidden, w, targets, teacher_hidden):
        return kernels.token_stats(
            hidden, w, targets, teacher_hidden=teacher_hidden if teacher else None, impl=impl
        )

    def forward(hidden, w, targets, teacher_hidden):
        return stats(hidden, w, targets, teacher_hidden)

    def forward_backward(hidden, w, targets, teacher_hidden):
        def objective(hidden, w):
            s = stats(hidden, w, targets, teacher_hidden)
            return jnp.sum(s.logprob), jax.lax.stop_gradient(s.entropy)

        return jax.value_and_grad(objective, argnums=(0, 1), has_aux=True)(hidden, w)

    return {"forward": forward, "forward_backward": forward_backward}


def _inputs(num_rows: int, vocab: int, dtype, concrete: bool):
    shapes = ((num_rows, HIDDEN), (HIDDEN, vocab), (num_rows,), (num_rows, HIDDEN))
    if not concrete:
        dtypes = (dtype, dtype, jnp.int32, dtype)
        return [jax.ShapeDtypeStruct(s, d) for s, d in zip(shapes, dtypes)]
    keys = jax.random.split(jax.random.key(0), 4)
    hidden = jax.random.normal(keys[0], shapes[0], dtype)
    w = (jax.random.normal(keys[1], shapes[1], jnp.float32) / np.sqrt(HIDDEN)).astype(dtype)
    targets = jax.random.randint(keys[2], shapes[2], 0, vocab)
    teacher = jax.random.normal(keys[3], shapes[3], dtype)
    return [hidden, w, targets, teacher]


def _compile(fn, args) -> tuple:
    """(compiled executable, memory row) for fn at the shapes of args."""
    compiled = jax.jit(fn).lower(*[jax.ShapeDtypeStruct(a.shape, a.dtype) for a in args]).compile()
    memory = compiled.memory_analysis()
    return compiled, {
        "temp_bytes": int(memory.temp_size_in_bytes),
        "argument_bytes": int(memory.argument_size_in_bytes),
        "output_bytes": int(memory.output_size_in_bytes),
    }


def _error(err: Exception) -> str:
    return f"{type(err).__name__}: {str(err)[:300]}"


def _time_round_robin(compiled: dict, args, repeats: int) -> dict:
    """Median seconds per executable; one warm-up each, then `repeats` rounds that run every
    executable once, so load drift on a shared machine hits all implementations alike."""
    times, errors = {key: [] for key in compiled}, {}
    for key, executable in compiled.items():
        try:
            jax.block_until_ready(executable(*args))
        except Exception as err:  # e.g. the reference running out of device memory
            errors[key] = _error(err)
    for _ in range(repeats):
        for key, executable in compiled.items():
            if key not in errors:
                start = time.perf_counter()
                jax.block_until_ready(executable(*args))
                times[key].append(time.perf_counter() - start)
    return {
        key: (
            {"error": errors[key]} if key in errors else {"seconds": statistics.median(times[key])}
        )
        for key in compiled
    }


def run(
    grid: tuple[tuple[int, ...], tuple[int, ...]],
    impls: list[str],
    dtype,
    repeats: int,
    max_time_tflop: float,
    teacher: bool,
    on_row=lambda rows: None,
) -> dict:
    """Measures memory (and, where affordable, time) of every implementation on a grid.

    Args:
        grid: (Ns, Vs); every (N, V) pair is measured with H = HIDDEN.
        impls: implementations to compare; "reference" gives the ratios' denominators.
        dtype: input dtype.
        repeats: timed rounds per point (median reported).
        max_time_tflop: points whose forward matmul work exceeds this are compiled (memory) but
            not executed.
        teacher: also compute teacher statistics and the JSD.
        on_row: called with the rows so far after every point (the CLI rewrites its JSON, so a
            run cut short by a time limit keeps what it measured).

    Returns:
        {"rows": one dict per (N, V, impl, mode), "summary": memory and time ratios to the
        reference}.
    """
    rows_n, vocabs = grid
    rows = []
    for num_rows in rows_n:
        for vocab in vocabs:
            forward_work = 2.0 * num_rows * HIDDEN * vocab * (2 if teacher else 1)
            timed = forward_work / 1e12 <= max_time_tflop
            args = _inputs(num_rows, vocab, dtype, concrete=timed)
            point, compiled = {}, {}
            for impl in impls:
                for mode, fn in _functions(impl, teacher).items():
                    point[impl, mode] = {
                        "N": num_rows,
                        "V": vocab,
                        "H": HIDDEN,
                        "impl": impl,
                        "mode": mode,
                    }
                    try:
                        compiled[impl, mode], memory = _compile(fn, args)
                        point[impl, mode].update(memory)
                    except Exception as err:
                        point[impl, mode]["error"] = _error(err)
            if timed:
                for key, timing in _time_round_robin(compiled, args, repeats).items():
                    point[key].update(timing)
                    if "seconds" in timing:
                        work = forward_work * (3 if key[1] == "forward_backward" else 1)
                        point[key]["tflops"] = work / timing["seconds"] / 1e12
            for row in point.values():
                print(json.dumps(row), flush=True)
            rows.extend(point.values())
            on_row(rows)
            del args, compiled
    return {"rows": rows, "summary": _summary(rows, impls)}


def _summary(rows: list[dict], impls: list[str]) -> list[dict]:
    """Per (N, V, mode, impl): temp memory and time relative to the reference."""
    index = {(r["N"], r["V"], r["mode"], r["impl"]): r for r in rows}
    out = []
    for (num_rows, vocab, mode, impl), row in index.items():
        ref = index.get((num_rows, vocab, mode, "reference"))
        if impl == "reference" or ref is None or "error" in row or "error" in ref:
            continue
        entry = {
            "N": num_rows,
            "V": vocab,
            "mode": mode,
            "impl": impl,
            "memory_ratio": row["temp_bytes"] / max(ref["temp_bytes"], 1),
        }
        if "seconds" in row and "seconds" in ref:
            entry["time_ratio"] = row["seconds"] / ref["seconds"]
        out.append(entry)
    return out


def _machine() -> dict:
    device = jax.devices()[0]
    return {
        "backend": jax.default_backend(),
        "device_kind": device.device_kind,
        "device_count": jax.device_count(),
        "cpu_count": os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "load_average_at_start": os.getloadavg(),
        "jax": jax.__version__,
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    }


def main() -> None:
    """Command line entry point (see the module docstring)."""
    backend = jax.default_backend()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--grid", choices=sorted(GRIDS), default="cpu" if backend == "cpu" else "gpu"
    )
    parser.add_argument(
        "--impls",
        default=None,
        help="comma-separated; default reference,xla_chunked(,pallas off CPU)",
    )
    parser.add_argument(
        "--dtype",
        choices=("float32", "bfloat16"),
        default="float32" if backend == "cpu" else "bfloat16",
    )
    parser.add_argument("--repeats", type=int, default=1 if backend == "cpu" else 5)
    parser.add_argument(
        "--max-time-tflop",
        type=float,
        default=0.4 if backend == "cpu" else 1e9,
        help="time only points whose forward matmul is at most this many TFLOP",
    )
    parser.add_argument("--teacher", action="store_true", help="also compute teacher stats + JSD")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    impls = (
        args.impls.split(",")
        if args.impls
        else ["reference", "xla_chunked"] + ([] if backend == "cpu" else ["pallas"])
    )
    out = args.out or RESULTS / f"bench_{backend}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    header = {
        "machine": _machine(),
        "config": {
            "grid": args.grid,
            "impls": impls,
            "dtype": args.dtype,
            "H": HIDDEN,
            "repeats": args.repeats,
            "max_time_tflop": args.max_time_tflop,
            "teacher": args.teacher,
        },
    }

    def write(result: dict) -> None:
        out.write_text(json.dumps({**header, **result}, indent=1) + "\n")

    result = run(
        GRIDS[args.grid],
        impls,
        jnp.dtype(args.dtype),
        args.repeats,
        args.max_time_tflop,
        args.teacher,
        on_row=lambda rows: write({"rows": rows, "complete": False}),
    )
    write({**result, "complete": True})
    print(json.dumps(result["summary"], indent=1))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
