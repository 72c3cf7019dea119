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
from rljax.experiments.benchmarks.machine import machine_busy_s, machine_info

RESULTS = pathlib.Path(__file__).resolve().parent / "results"
DEFAULT_OUT = RESULTS / "rl_step_cpu.json"
# The peer script beside the repository: <repo>/../shared/peers/tunix_grpo_cpu.py.
PEER_SCRIPT = pathlib.Path(__file__).resolve().parents[3] / "shared/peers/tunix_grpo_cpu.py"

# (name, workload overrides) of the scaling points; each doubles one size of the base workload
# (the base point is the interleaved runs).
SCALING = (
    ("2x P*G", {"prompts": 16}),
    ("2x response length", {"max_new_tokens": 64}),
    ("2x model width", {"hidden": 256, "mlp": 1024, "heads": 8, "kv_heads": 4}),
)
# (name, options overrides): each lever turned back to the unoptimised path, then all of them
# (the optimised point is the interleaved runs).
LEVERS = (
    ("width to a multiple of 64 (optimised: of 4)", {"pad_multiple": 64}),
    ("separate no-grad old-logprob forward", {"old_logprobs": "forward"}),
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
        "train_width": record["train_tokens_per_step_padded"]
        // (record["grpo"]["P"] * record["grpo"]["G"]),
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
        "train_width": record["train_width_per_step"][-1],
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
        "other_procs_cpu_frac": [round(r["other_procs_cpu_frac"], 3) for r in runs],
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
    record = run_process(argv, worker_env(None), timeout)
    record["other_procs_cpu_frac"] = record["process_other_cpu_frac"]
    return record


def model_fractions(phases: dict, generated: float, limit_flops: float, width: int) -> dict:
    """Model FLOPs of a step's rollout and update (`flops`) and the fraction of the matmul limit
    they reach in the phases' seconds."""
    from rljax.experiments.benchmarks.rl_workload import Workload

    work = Workload()
    rollout = flops.rollout_flops(work, generated=generated)
    update = flops.update_flops(work, width=width)
    return {
        "rollout_gflop": rollout / 1e9,
        "update_gflop": update / 1e9,
        "rollout": rollout / phases["rollout"] / limit_flops,
        "update": update / phases["update"] / limit_flops,
    }


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
    parser.add_argument(
        "--table", type=pathlib.Path, default=None, help="print the README tables of a result JSON"
    )
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--matmul", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker is not None:
        return worker(args.worker)
    if args.table is not None:
        print(tables(json.loads(args.table.read_text())))
        return {}
    if args.matmul:
        result = flops.measure_matmul()
        print(json.dumps(result), flush=True)
        return result
    if args.runs < 3 or args.steps < 2:
        parser.error(f"--runs must be >= 3 and --steps >= 2, got {args.runs} and {args.steps}")
    if args.tunix_python is not None and not os.path.exists(args.tunix_python):
        parser.error(f"--tunix-python {args.tunix_python} does not exist")
    if args.tunix_python is not None and not PEER_SCRIPT.exists():
        parser.error(f"the peer script {PEER_SCRIPT} does not exist")
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
            run = attempt(rljax_run, {}, opts, cache, args.timeout, args.steps)
            levers.append({"lever": name, **run})
            log_run(name, run)
        scaling = []
        for name, work in () if args.no_scaling else SCALING:
            run = attempt(rljax_run, work, {}, cache, args.timeout, args.steps)
            scaling.append({"point": name, "workload": work, **run})
            log_run(name, run)
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

    cap = args.max_other_cpu
    sides = {side: side_summary(r, cap) for side, r in runs.items() if r}
    rl = sides["rljax"]
    warm = [r for r in runs["rljax"][1:] if is_clean(r, cap)]
    rl["first_step_cold_s"] = runs["rljax"][0]["first_step_s"]  # empty compilation cache
    rl["first_step_cold_clean"] = is_clean(runs["rljax"][0], cap)
    rl["first_step_warm_s"] = median_of(warm, "first_step_s")  # programs read from the cache
    summary = {"sides": sides, "max_other_cpu": cap, "matmul_limit_gflops": limit["flops"] / 1e9}
    tx = sides.get("tunix")
    if tx and rl["steady_step_s"] and tx["steady_step_s"]:
        summary["steady_throughput_ratio"] = tx["steady_step_s"] / rl["steady_step_s"]
        summary["first_step_ratio_cold"] = tx["first_step_s"] / rl["first_step_cold_s"]
        if rl["first_step_warm_s"]:
            summary["first_step_ratio_warm"] = tx["first_step_s"] / rl["first_step_warm_s"]
    summary["limit_clean"] = is_clean(limit, cap)
    summary["final"] = (
        bool(tx) and summary["limit_clean"] and all(s["clean_runs"] >= 3 for s in sides.values())
    )
    for side, info in sides.items():
        clean = [r for r in runs[side] if is_clean(r, cap)]
        if clean:
            info["fraction_of_matmul_limit"] = model_fractions(
                info["steady_phases_s"],
                statistics.median(r["gen_tokens_per_step_mean"] for r in clean),
                limit["flops"],
                clean[0]["train_width"],
            )
    return {
        "benchmark": "GRPO step, rljax vs Tunix, same workload",
        "machine": machine_info(),
        "threads": threads(),
        "workload": dataclasses.asdict(Workload(steps=args.steps)),
        "options": dataclasses.asdict(Options()),
        "baseline_options": dataclasses.asdict(BASELINE),
        "matmul_limit": limit,
        "summary": summary,
        "levers": [lever_row(r, cap) for r in levers],
        "scaling": [scaling_row(r, cap) for r in scaling],
        "runs": runs,
    }


def lever_row(run: dict, cap: float) -> dict:
    if "error" in run:
        return run
    return {
        "lever": run["lever"],
        "steady_step_s": run["steady_step_s"],
        "steady_phases_s": run["steady_phases_s_mean"],
        "first_step_s": run["first_step_s"],
        "clean": is_clean(run, cap),
        "other_procs_cpu_frac": run["other_procs_cpu_frac"],
    }


def scaling_row(run: dict, cap: float) -> dict:
    if "error" in run:
        return run
    return {
        "point": run["point"],
        "workload": run["workload"],
        "steady_step_s": run["steady_step_s"],
        "peak_rss_mib": run["peak_rss_mib"],
        "clean": is_clean(run, cap),
        "other_procs_cpu_frac": run["other_procs_cpu_frac"],
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


def tables(report: dict) -> str:
    """The README's markdown tables of a report: the comparison, the levers, the scaling."""
    summary = report["summary"]
    sides = summary["sides"]
    rl, tx = sides["rljax"], sides.get("tunix")
    phases = ("rollout", "old_logprobs_prepare", "ref_logprobs", "update")

    def ms(x):
        return "-" if x is None else f"{1000 * x:.0f} ms"

    lines = [
        "| | steady step | rollout | old log-probs + prepare | ref log-probs | update "
        "| first step | clean runs |",
        "|---|---|---|---|---|---|---|---|",
        f"| rljax | {ms(rl['steady_step_s'])} | "
        + " | ".join(ms(rl["steady_phases_s"].get(k)) for k in phases)
        + f" | {rl['first_step_cold_s']:.1f} s cold, "
        + (f"{rl['first_step_warm_s']:.1f} s cached" if rl["first_step_warm_s"] else "-")
        + f" | {rl['clean_runs']}/{rl['runs']} |",
    ]
    if tx:
        tp = tx["steady_phases_s"]
        first = "-" if tx["first_step_s"] is None else f"{tx['first_step_s']:.1f} s"
        lines.append(
            f"| Tunix | {ms(tx['steady_step_s'])} | {ms(tp.get('rollout'))} | - | "
            f"{ms(tp.get('ref_logprobs'))} | {ms(tp.get('update'))} | {first} | "
            f"{tx['clean_runs']}/{tx['runs']} |"
        )
    lines.append("")
    ratio = summary.get("steady_throughput_ratio")
    if ratio:
        lines.append(
            f"Steady throughput rljax / Tunix: **{ratio:.2f}x**; first step Tunix / rljax: "
            f"{summary['first_step_ratio_cold']:.2f}x cold, "
            f"{summary.get('first_step_ratio_warm', float('nan')):.2f}x with the cache "
            f"({'final: clean interleaved runs' if summary['final'] else 'NOT final'})."
        )
    fractions = rl.get("fraction_of_matmul_limit")
    if fractions:
        lines.append(
            f"Measured fp32 matmul limit {summary['matmul_limit_gflops']:.0f} GFLOP/s; rljax's "
            f"update reaches {100 * fractions['update']:.0f}% of it "
            f"({fractions['update_gflop']:.1f} GFLOP), the rollout "
            f"{100 * fractions['rollout']:.0f}% ({fractions['rollout_gflop']:.1f} GFLOP)"
            + (
                f"; Tunix {100 * tx['fraction_of_matmul_limit']['update']:.0f}% and "
                f"{100 * tx['fraction_of_matmul_limit']['rollout']:.0f}%."
                if tx and tx.get("fraction_of_matmul_limit")
                else "."
            )
        )
    clean_runs = f"{rl['clean_runs']}/{rl['runs']} runs"
    if report["levers"]:
        lines += ["", "| lever turned back | steady step | update | clean |", "|---|---|---|---|"]
        lines.append(
            f"| none (optimised) | {ms(rl['steady_step_s'])} | "
            f"{ms(rl['steady_phases_s'].get('update'))} | {clean_runs} |"
        )
        for row in report["levers"]:
            if "error" in row:
                lines.append(f"| {row['lever']} | failed | | |")
                continue
            lines.append(
                f"| {row['lever']} | {ms(row['steady_step_s'])} | "
                f"{ms(row['steady_phases_s']['update'])} | {'yes' if row['clean'] else 'no'} |"
            )
    if report["scaling"]:
        base_rss = statistics.median(r["peak_rss_mib"] for r in report["runs"]["rljax"])
        lines += ["", "| point | steady step | peak RSS | clean |", "|---|---|---|---|"]
        lines.append(f"| base | {ms(rl['steady_step_s'])} | {base_rss:.0f} MiB | {clean_runs} |")
        for row in report["scaling"]:
            if "error" in row:
                lines.append(f"| {row['point']} | failed | | |")
                continue
            lines.append(
                f"| {row['point']} | {ms(row['steady_step_s'])} | {row['peak_rss_mib']:.0f} MiB | "
                f"{'yes' if row['clean'] else 'no'} |"
            )
    return "\n".join(lines)


def attempt(fn, *args) -> dict:
    """`fn(*args)`, or {"error": why} when the process failed or ran out of time (a lever or
    scaling point that fails leaves the rest of the benchmark standing)."""
    try:
        return fn(*args)
    except (RuntimeError, subprocess.TimeoutExpired) as err:
        log(f"failed: {str(err)[-500:]}")
        return {"error": str(err)[-2000:]}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def log_run(name: str, run: dict) -> None:
    if "error" in run:
        return
    log(
        f"{name}: first {run['first_step_s']:.2f} s, steady {run['steady_step_s']:.3f} s, "
        f"other CPU {run['other_procs_cpu_frac']:.2f}"
    )


if __name__ == "__main__":
    main()
