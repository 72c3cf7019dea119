"""The experiment command line shared by every `python -m rljax.experiments.<name>` module.

    python -m rljax.experiments.grpo --preset cpu [--set train.steps=50 ...] [--run-dir runs/x]

Presets: `smoke` (seconds; what the tests run), `cpu` (a real run on a laptop-class CPU) and `pod`
(paper-scale settings for a real model on a TPU/GPU mesh). `--dry-run` builds the run's abstract
state (`jax.eval_shape`, nothing materialised) and reports parameter counts and per-device memory
on the preset's mesh instead of training; the `pod` preset is meant to be checked that way here
and run for real on a pod. Compiled programs are kept on disk (`rljax.train.compile_cache`) so a
resumed or repeated run does not compile again; `--no-compile-cache` turns that off.

Multi-process runs (one process per host of a TPU pod or GPU cluster, or several local processes
via `python -m rljax.experiments.launch`): every process runs the same command. The CLI joins the
job first (`rljax.parallel.initialize`: JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES /
JAX_PROCESS_ID, else the cluster JAX detects: TPU pod slices, SLURM, ...), then the processes
compare a hash of their resolved config and refuse to run if they differ. Process 0 writes the
metrics, evaluations and the report; checkpoints are written by all of them.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from typing import Callable, Mapping

import jax
from etils import epath
from rljax.experiments import dry_run, report

from rljax import parallel
from rljax.parallel import multihost
from rljax.train import Trainer, compile_cache
from rljax.train import config as config_lib
from rljax.train.config import ExperimentConfig

log = logging.getLogger(__name__)

PRESET_NAMES = ("smoke", "cpu", "pod", "real")


def parse_args(name: str, argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog=f"python -m rljax.experiments.{name}", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--preset", default="cpu", help=f"one of {PRESET_NAMES}")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a config field, e.g. train.steps=50 (repeatable)",
    )
    parser.add_argument(
        "--run-dir", default=None, help="run directory (default: runs/<name>-<preset>-seed<seed>)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="check shapes, shardings and memory with jax.eval_shape; no training",
    )
    parser.add_argument("--print-config", action="store_true", help="print the resolved config")
    parser.add_argument(
        "--no-compile-cache",
        action="store_true",
        help="do not keep compiled programs on disk (default: rljax.train.compile_cache's directory)",
    )
    return parser.parse_args(argv)


def resolve(
    name: str,
    presets: Mapping[str, Callable[[], ExperimentConfig]],
    preset: str,
    overrides: list[str],
) -> ExperimentConfig:
    """The preset's config with the overrides applied (clear errors for unknown names/fields)."""
    if preset not in presets:
        raise SystemExit(
            f"error: unknown preset {preset!r} for experiment {name!r}; "
            f"expected one of {sorted(presets)}"
        )
    try:
        return config_lib.apply_overrides(presets[preset](), overrides)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None


def main(
    name: str, presets: Mapping[str, Callable[[], ExperimentConfig]], argv: list[str] | None = None
) -> epath.Path | dict:
    """Runs experiment `name`; returns the report path (or the dry-run summary)."""
    args = parse_args(name, argv)
    config = resolve(name, presets, args.preset, args.overrides)
    if args.print_config:
        print(config.to_json())
    if args.dry_run:
        summary = dry_run.check(config)
        print(json.dumps(summary, indent=2))
        return summary
    joined = parallel.initialize(auto_detect=True)
    configure_logging()
    if not args.no_compile_cache:
        log.info("compilation cache: %s", compile_cache.enable())
    if joined:
        try:
            digest = multihost.check_same_config(config.to_json())
        except multihost.ConfigMismatchError as err:
            raise SystemExit(f"error: {err}") from None
        log.info(
            "process %d of %d joined (%d local devices of %d); config hash %s",
            jax.process_index(),
            jax.process_count(),
            jax.local_device_count(),
            jax.device_count(),
            digest,
        )
    run_dir = epath.Path(args.run_dir or f"runs/{name}-{args.preset}-seed{config.train.seed}")
    try:
        trainer = Trainer(config, run_dir)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    trainer.run()
    page = run_dir / "report.md"
    if multihost.is_primary():
        log.info("writing the report")
        page = report.write_report(run_dir)
        print(f"report: {page}")
    multihost.sync("rljax_report")
    return page


def configure_logging() -> None:
    """INFO lines of rljax on stderr (replacing the handler absl installs at import); in a
    multi-process run each line names its process."""
    where = f"[process {jax.process_index()}] " if jax.process_count() > 1 else ""
    logging.basicConfig(
        level=logging.INFO, format=f"%(asctime)s %(levelname)s {where}%(message)s", force=True
    )
    for noisy in ("absl", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def entry(name: str, presets: Mapping[str, Callable[[], ExperimentConfig]]) -> None:
    """`if __name__ == "__main__": entry(...)` for experiment modules."""
    main(name, presets, sys.argv[1:])
