"""RL step throughput: rljax against Google Tunix (GRPO) on the same tiny workload, interleaved.

    python -m rljax.experiments.benchmarks.rl_step --tunix-python ~/.cache/tunix-venv/bin/python

runs, each in a fresh process with the same thread settings (XLA intra-op threads = the cores this
process may use): the measured fp32 matmul limit of these cores; rljax and Tunix alternately
(A B A B ..., `--runs` each; the workload is `rl_workload`'s, the peer is
`shared/peers/tunix_grpo_cpu.py`); the levers (rljax with each one turned back to the unoptimised
path); and the scaling points (P x G, the response length and the model width doubled). Every run
records the CPU time other processes used while it trained (/proc/stat minus the run's own); a
run above `--max-other-cpu` (0.05 of the machine) is rejected and left out of the medians. The
JSON goes to `experiments/benchmarks/results/rl_step_cpu.json`.

Steady step = the median over steps 2..N of a run (the first compiles), then the median over the
clean runs. rljax's persistent compilation cache (`rljax.train.compile_cache`) starts empty in a
fresh directory: its first run's first step is the cold one, later runs read the cache.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pathlib
import statistics
import subprocess
import sys
import tempfile
import time

from rljax.experiments.benchmarks import flops

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "rl_step_cpu.json"
PEER_SCRIPT = pathlib.Path(__file__).resolve().parents[2] / ".." / "shared" / "peers"
PEER_SCRIPT = (PEER_SCRIPT / "tunix_grpo_cpu.py").resolve()

# (name, workload overrides) of the scaling points; each doubles one size of the base workload.
SCALING = (
    ("base", {}),
    ("2x P*G", {"prompts": 16}),
    ("2x response length", {"max_new_tokens": 64}),
    ("2x model width", {"hidden": 256, "mlp": 1024, "heads": 8, "kv_heads": 4}),
)
# (name, options overrides): each lever turned back to the unoptimised path, and all of them.
LEVERS = (
    ("optimised", {}),
    ("width bucket 64 (was: rows to a multiple of 4)", {"pad_multiple": 64}),
    ("separate old-logprob forward", {"old_logprobs": "forward"}),
    ("unoptimised (both)", {"pad_multiple": 64, "old_logprobs": "forward"}),
)


def threads() -> int:
    """The cores this process may use (what both sides give XLA)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()


def worker_env(cache_dir: str | None) -> dict[str, str]:
    """The environment of a benchmark process: the peer script's thread settings, CPU only."""
    n = threads()
    env = dict(os.environ)
    for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[name] = str(n)
    env["XLA_FLAGS"] = (
        "--xla_force_host_platform_device_count=1 --xla_cpu_multi_thread_eigen=true "
        f"intra_op_parallelism_threads={n}"
    )
    env["JAX_PLATFORMS"] = "cpu"
    env["TF_CPP_MIN_LOG_LEVEL"] = "2"
    env["TQDM_DISABLE"] = "1"
    env["RLJAX_COMPILATION_CACHE"] = cache_dir or "off"
    return env


def machine_busy_s() -> float:
    """CPU-seconds the whole machine has been busy (/proc/stat)."""
    with open("/proc/stat") as f:
        fields = [int(x) for x in f.readline().split()[1:]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def run_process(argv: list[str], env: dict[str, str], timeout: float) -> dict:
    """Runs one benchmark process; returns its JSON line plus the whole process's wall time and
    the CPU share other processes used while it ran (/proc/stat minus the child's own time)."""
    busy0, child0, wall0 = machine_busy_s(), os.times(), time.perf_counter()
    proc = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=timeout)
    busy1, child1, wall1 = machine_busy_s(), os.times(), time.perf_counter()
    if proc.returncode != 0:
        raise RuntimeError(
            f"{' '.join(argv[:4])} failed ({proc.returncode}):\n{proc.stderr[-3000:]}"
        )
    record = json.loads(proc.stdout.strip().splitlines()[-1])
    own = (child1.children_user + child1.children_system) - (
        child0.children_user + child0.children_system
    )
    record["process_wall_s"] = wall1 - wall0
    record["process_other_cpu_frac"] = max(
        0.0, ((busy1 - busy0) - own) / ((wall1 - wall0) * (os.cpu_count() or 1))
    )
    return record


def rljax_run(
    work: dict, opts: dict, cache_dir: str | None, timeout: float, steps: int | None = None
) -> dict:
    """One rljax run (`python -m ... rl_step --worker`) of the workload with these overrides."""
    spec = json.dumps({"work": {**work, **({"steps": steps} if steps else {})}, "opts": opts})
    argv = [sys.executable, "-m", "rljax.experiments.benchmarks.rl_step", "--worker", spec]
    return summarise_rljax(run_process(argv, worker_env(cache_dir), timeout))


def tunix_run(python: str, timeout: float, steps: int) -> dict:
    """One run of the peer script (Tunix's GRPO on the same workload) from its virtualenv."""
    argv = [python, str(PEER_SCRIPT), "--steps", str(steps), "--threads", str(threads())]
    record = run_process(argv, worker_env(None), timeout)
    breakdown = record["steady_breakdown_s_mean"]
    steps_s = record["step_times_s"]
    return {
        "side": "tunix",
        "first_step_s": record["first_step_s"],
        "steady_step_s": statistics.median(steps_s[1:]),
        "steady_phases_s_mean": {
            "rollout": breakdown["rollout"],
            "ref_logprobs": breakdown["ref_logps"],
            "update": breakdown["update"],
            "other": breakdown["other"],
        },
        "step_times_s": steps_s,
        "gen_tokens_per_step_mean": record["gen_tokens_per_step_mean"],
        "train_width": record["train_tokens_per_step_padded"] // 64,
        "other_procs_cpu_frac": record["other_procs_cpu_frac"],
        "process_other_cpu_frac": record["process_other_cpu_frac"],
        "process_wall_s": record["process_wall_s"],
        "versions": record["versions"],
    }


def summarise_rljax(record: dict) -> dict:
    """Medians of a worker's per-step record (steady = steps 2..N)."""
    steps = record.pop("steps")
    steady = steps[1:]
    phases = [k for k in steady[0] if k != "total" and not k.startswith("cpu_")]
    return {
        "side": "rljax",
        "first_step_s": steps[0]["total"],
        "first_step_phases_s": {k: steps[0][k] for k in phases},
        "steady_step_s": statistics.median(s["total"] for s in steady),
        "steady_phases_s_mean": {k: statistics.fmean(s[k] for s in steady) for k in phases},
        "steady_cpu_s_median": statistics.median(s["cpu_total"] for s in steady),
        "gen_tokens_per_step_mean": statistics.fmean(record["gen_tokens_per_step"][1:]),
        "step_times_s": [s["total"] for s in steps],
        **record,
    }


def is_clean(run: dict, limit: float) -> bool:
    """Whether other processes stayed under `limit` of the machine during the run's training."""
    return run["other_procs_cpu_frac"] <= limit


def median_of(runs: list[dict], key: str) -> float | None:
    values = [r[key] for r in runs]
    return statistics.median(values) if values else None


def side_summary(runs: list[dict], limit: float) -> dict:
    clean = [r for r in runs if is_clean(r, limit)]
    return {
        "runs": len(runs),
        "clean_runs": len(clean),
        "steady_step_s": median_of(clean, "steady_step_s"),
        "first_step_s": median_of(clean, "first_step_s"),
        "steady_phases_s": {
            k: statistics.median(r["steady_phases_s_mean"][k] for r in clean)
            for k in (clean[0]["steady_phases_s_mean"] if clean else {})
        },
    }


def matmul_limit(timeout: float) -> dict:
    """The fp32 matmul FLOP/s of these cores, measured in a fresh process (`--matmul`)."""
    argv = [sys.executable, "-m", "rljax.experiments.benchmarks.rl_step", "--matmul"]
    return run_process(argv, worker_env(None), timeout)


def model_fractions(work: dict, run: dict, limit_flops: float, width: int) -> dict:
    """FLOPs of the rollout and the update of `run` and the fraction of the matmul limit they reach."""
    from rljax.experiments.benchmarks.rl_workload import Workload

    w = Workload(**work)
    tokens = run["gen_tokens_per_step_mean"]
    phases = run["steady_phases_s_mean"]
    rollout = flops.rollout_flops(w, generated=tokens)
    update = flops.update_flops(w, width=width)
    out = {
        "rollout_gflop": rollout / 1e9,
        "update_gflop": update / 1e9,
        "rollout_frac_of_limit": rollout / phases["rollout"] / limit_flops,
        "update_frac_of_limit": update / phases["update"] / limit_flops,
    }
    return out


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tunix-python", default=None, help="the Tunix virtualenv's python")
    parser.add_argument("--runs", type=int, default=3, help="interleaved runs of each side (>= 3)")
    parser.add_argument("--steps", type=int, default=10, help="GRPO steps per run (>= 2)")
    parser.add_argument("--max-other-cpu", type=float, default=0.05)
    parser.add_argument("--no-levers", action="store_true", help="skip the lever runs")
    parser.add_argument("--no-scaling", action="store_true", help="skip the scaling runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per process")
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    if args.matmul:
        result = flops.measure_matmul()
        print(json.dumps(result), flush=True)
        return result
    if args.runs < 3 or args.steps < 2:
        parser.error(f"--runs must be >= 3 and --steps >= 2, got {args.runs} and {args.steps}")
    if args.tunix_python is not None and not os.path.exists(args.tunix_python):
        parser.error(f"--tunix-python {args.tunix_python} does not exist")
    start = time.perf_counter()
    limit = matmul_limit(args.timeout)
    log(f"matmul limit: {limit['flops'] / 1e9:.1f} GFLOP/s")
    runs = {"rljax": [], "tunix": []}
    with tempfile.TemporaryDirectory(prefix="rljax-xla-") as cache:
        for i in range(args.runs):
            runs["rljax"].append(rljax_run({}, {}, cache, args.timeout, args.steps))
            log_run(f"rljax {i + 1}", runs["rljax"][-1])
            if args.tunix_python:
                runs["tunix"].append(tunix_run(args.tunix_python, args.timeout, args.steps))
                log_run(f"tunix {i + 1}", runs["tunix"][-1])
        levers = []
        for name, opts in () if args.no_levers else LEVERS:
            levers.append({"lever": name, **rljax_run({}, opts, cache, args.timeout, args.steps)})
            log_run(name, levers[-1])
        scaling = []
        for name, work in () if args.no_scaling else SCALING:
            run = rljax_run(work, {}, cache, args.timeout, args.steps)
            scaling.append({"point": name, "workload": work, **run})
            log_run(name, scaling[-1])
    report = build_report(args, limit, runs, levers, scaling)
    report["benchmark_wall_s"] = time.perf_counter() - start
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    log(f"wrote {args.out} ({report['benchmark_wall_s']:.0f} s)")
    print(json.dumps(report["summary"], indent=2))
    return report


def build_report(args, limit: dict, runs: dict, levers: list, scaling: list) -> dict:
    """The JSON report: every run, the clean-run medians and ratios, FLOP fractions, levers,
    scaling."""
    from rljax.experiments.benchmarks.rl_workload import BASELINE, Options, Workload

    sides = {side: side_summary(r, args.max_other_cpu) for side, r in runs.items() if r}
    summary = {"sides": sides, "max_other_cpu": args.max_other_cpu}
    rl, tx = sides.get("rljax"), sides.get("tunix")
    if rl and tx and rl["steady_step_s"] and tx["steady_step_s"]:
        summary["steady_throughput_ratio"] = tx["steady_step_s"] / rl["steady_step_s"]
        summary["first_step_ratio"] = tx["first_step_s"] / rl["first_step_s"]
    enough = all(s["clean_runs"] >= 3 for s in sides.values())
    summary["final"] = bool(enough and len(sides) == 2)
    clean = [r for r in runs["rljax"] if is_clean(r, args.max_other_cpu)] or runs["rljax"]
    best = min(clean, key=lambda r: r["steady_step_s"])
    summary["fraction_of_matmul_limit"] = model_fractions(
        {}, best, limit["flops"], best["train_width_per_step"][-1]
    )
    summary["cold_first_step_s"] = runs["rljax"][0]["first_step_s"]
    return {
        "benchmark": "GRPO step, rljax vs Tunix, same workload",
        "machine": flops.machine_info(),
        "threads": threads(),
        "workload": dataclasses.asdict(Workload(steps=args.steps)),
        "options": dataclasses.asdict(Options()),
        "baseline_options": dataclasses.asdict(BASELINE),
        "matmul_limit": limit,
        "summary": summary,
        "runs": runs,
        "levers": levers,
        "scaling": scaling,
    }


def worker(spec: str) -> dict:
    """One rljax run in this process; prints its JSON line."""
    from rljax.experiments.benchmarks import rl_workload

    from rljax.train import compile_cache

    spec = json.loads(spec)
    compile_cache.enable()
    result = rl_workload.run(
        rl_workload.Workload(**spec["work"]), rl_workload.Options(**spec["opts"])
    )
    print(json.dumps(result), flush=True)
    return result


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def log_run(name: str, run: dict) -> None:
    log(
        f"{name}: first {run['first_step_s']:.2f} s, steady {run['steady_step_s']:.3f} s, "
        f"other CPU {run['other_procs_cpu_frac']:.2f}"
    )


if __name__ == "__main__":
    main()
