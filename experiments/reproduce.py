"""Run a study (arms x seeds over one shared setup) and write its report with intervals over seeds.

    python -m rljax.experiments.reproduce grpo_family [--seeds N] [--arms a,b] [--out DIR] [--smoke]

Runs go one after another, seed by seed: for each seed the SFT warm start is trained once (its own
step, timed on its own) and cached under `<runs>/sft/<fingerprint>`, then every arm of that seed
starts from it (a study's `sft_arms` have their own, also trained once per seed). A study with a
`probe` measures each warm start and each run's final policy once more (`probe.json`). A finished run leaves `study_run.json` in its directory and is skipped next time;
an interrupted one is resumed by the trainer from its latest checkpoint, so a killed study
restarted with the same command continues where it stopped. The report (`report.md`,
`summary.json`, `curves.png`) goes to `experiments/results/<study>/` (with `--smoke`: beside the
runs), and records the exact command and commit.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import shlex
import sys
import time

from etils import epath
from rljax.experiments import studies, study_report
from rljax.experiments.studies import Study

from rljax.train import compile_cache
from rljax.train.config import ExperimentConfig

log = logging.getLogger(__name__)

RESULTS = epath.Path(__file__).parent / "results"
MARKER = "study_run.json"  # written when a run has finished; its presence means "skip"
PROBE = "probe.json"  # the study's probe of the run's final policy
SEGMENTS = "study_segments.jsonl"  # one line per (re)start of a run: resumed step and wall time


def _driver():
    """The trainer's public entry points (imported here only, so a module move is a one-line fix)."""
    from rljax.train.loop import train
    from rljax.train.sft import fingerprint, seeded

    return train, fingerprint, seeded


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rljax.experiments.reproduce", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("study", help=f"one of {studies.names()}")
    parser.add_argument("--seeds", type=int, default=None, help="seeds 0..N-1 (default: study's)")
    parser.add_argument("--arms", default=None, help="comma-separated subset of the study's arms")
    parser.add_argument(
        "--out", default=None, help="report directory (default: experiments/results/<study>)"
    )
    parser.add_argument(
        "--runs-dir", default=None, help="run directories (default: runs/studies/<study>)"
    )
    parser.add_argument(
        "--smoke", action="store_true", help="every arm for 2 steps x 2 seeds on a tiny model"
    )
    return parser.parse_args(argv)


def run_dir_of(runs: epath.Path, arm: str, seed: int) -> epath.Path:
    """Where run (arm, seed) lives; beside `<runs>/sft`, so all arms share the warm start."""
    return runs / f"{arm}-seed{seed}"


def latest_checkpoint(run_dir: epath.Path) -> int:
    """The step of the newest checkpoint in `run_dir` (0 when there is none)."""
    directory = run_dir / "checkpoints"
    if not directory.exists():
        return 0
    steps = [int(p.name) for p in directory.iterdir() if p.name.isdigit()]
    return max(steps, default=0)


def _config_json(config: ExperimentConfig) -> dict:
    return json.loads(config.to_json())


def _same_run(stored: dict, config: ExperimentConfig) -> bool:
    """Whether a record's stored config gives the same run as `config`: fields added since the
    record was written read as their defaults, and `sft.seed` equal to `train.seed` as unset."""

    def comparable(c: ExperimentConfig) -> dict:
        if c.sft.seed == c.train.seed:
            c = dataclasses.replace(c, sft=dataclasses.replace(c.sft, seed=None))
        return _config_json(c)

    return comparable(ExperimentConfig.from_dict(stored)) == comparable(config)


def warm_starts(study: Study, seed: int, runs: epath.Path, arms: list[str], *, smoke: bool):
    """Trains (or finds) seed `seed`'s SFT warm starts, each a 0-step run.

    The arms of a seed share one warm start, except the study's `sft_arms`, whose own SFT is
    trained once per distinct config. Parameters land in `<runs>/sft/<fingerprint>`, where each
    run of the seed finds its own. Returns one record per warm start: fingerprint, the arms
    that use it, its directory (`sft-seed<s>`, or `sft-seed<s>-<arm>` for an SFT arm's, `s` the
    warm start's seed: `sft.seed` when the study fixes it) and the time it took.
    """
    _, fingerprint, seeded = _driver()
    groups: dict[str, list[str]] = {}
    shared = fingerprint(study.run_config(study.baseline, seed, smoke=smoke))
    groups[shared] = []
    for arm in arms:
        groups.setdefault(fingerprint(study.run_config(arm, seed, smoke=smoke)), []).append(arm)
    records = []
    for print_, users in groups.items():
        if not users and print_ == shared and set(arms) <= set(study.sft_arms):
            continue  # only SFT arms were asked for: the shared warm start is not needed
        owner = study.baseline if print_ == shared else users[0]
        # A warm start is a run of its own seed: one shared across seeds (`sft.seed`) is trained
        # and probed once, in that seed's directory.
        config = seeded(study.run_config(owner, seed, smoke=smoke))
        own = config.train.seed
        name = f"sft-seed{own}" if print_ == shared else f"sft-seed{own}-{owner}"
        record = _warm_start(study, config, runs / name, print_, sorted(users), smoke=smoke)
        records.append({**record, "shared": print_ == shared})
    return records


def _warm_start(
    study: Study,
    config: ExperimentConfig,
    warmup_dir: epath.Path,
    print_: str,
    users: list[str],
    *,
    smoke: bool,
) -> dict:
    train, _, _ = _driver()
    marker = warmup_dir / "warm_start.json"
    record = json.loads(marker.read_text()) if marker.exists() else None
    warmup = dataclasses.replace(
        config, train=dataclasses.replace(config.train, steps=0, eval_prompts=0)
    )
    if record is None or record["fingerprint"] != print_:
        start = time.perf_counter()
        if config.sft.steps > 0:
            train(warmup, warmup_dir)
        warmup_dir.mkdir(parents=True, exist_ok=True)
        record = {
            "seed": config.train.seed,
            "fingerprint": print_,
            "wall_s": time.perf_counter() - start,
        }
        marker.write_text(json.dumps(record, indent=2))
    record = {**record, "arms": users, "dir": warmup_dir.name}
    probe = run_probe(study, warmup, warmup_dir, warm_start=True, smoke=smoke)
    return record if probe is None else {**record, "probe": probe}


def run_probe(
    study: Study,
    config: ExperimentConfig,
    run_dir: epath.Path,
    *,
    warm_start: bool,
    smoke: bool,
) -> dict | None:
    """The study's probe of a finished run's final policy (or of a warm start), cached in
    `<run_dir>/probe.json` with the config it measured; None when the study has no probe."""
    if study.probe is None:
        return None
    path = run_dir / PROBE
    if path.exists():
        stored = json.loads(path.read_text())
        if _same_run(stored["config"], config):
            return stored["result"]
    from rljax.train.loop import Trainer

    start = time.perf_counter()
    trainer = Trainer(config, run_dir)
    if warm_start:
        trainer.load_warm_start()
    else:
        trainer.load_checkpoint()
    result = studies.check_probe(study.name, study.probe(trainer, smoke=smoke))
    log.info("probe of %s done in %.1f s", run_dir.name, time.perf_counter() - start)
    path.write_text(json.dumps({"config": _config_json(config), "result": result}, indent=2))
    return result


def run_one(
    study: Study, arm: str, seed: int, runs: epath.Path, *, smoke: bool, sha: str = "unknown"
) -> dict:
    """Runs (arm, seed) to completion, skipping it if finished and resuming it if interrupted.

    `sha` (the source tree's commit when the study started) is recorded with the run."""
    train, _, _ = _driver()
    config = study.run_config(arm, seed, smoke=smoke)
    run_dir = run_dir_of(runs, arm, seed)
    marker = run_dir / MARKER
    if marker.exists():
        record = json.loads(marker.read_text())
        if not _same_run(record["config"], config):
            raise SystemExit(
                f"error: {run_dir} holds a finished run of a different config; remove it or "
                "choose another --runs-dir"
            )
        log.info("%s seed %d: finished earlier, skipped", arm, seed)
        return _with_probe(study, config, run_dir, record, smoke=smoke)
    resumed_from = latest_checkpoint(run_dir)
    log.info(
        "%s seed %d: %s",
        arm,
        seed,
        f"resuming from step {resumed_from}" if resumed_from else "starting",
    )
    start = time.perf_counter()
    result = train(config, run_dir)
    wall = time.perf_counter() - start
    with (run_dir / SEGMENTS).open("a") as f:
        f.write(json.dumps({"resumed_from": resumed_from, "wall_s": wall}) + "\n")
    segments = [json.loads(line) for line in (run_dir / SEGMENTS).read_text().splitlines() if line]
    record = {
        "study": study.name,
        "arm": arm,
        "seed": seed,
        "final_step": int(result.final_step),
        "resumed_from": [s["resumed_from"] for s in segments],
        # Time of the segments that finished; a killed segment's time is not counted.
        "wall_s": sum(s["wall_s"] for s in segments),
        "commit": sha,
        "config": _config_json(config),
    }
    marker.write_text(json.dumps(record, indent=2))
    return _with_probe(study, config, run_dir, record, smoke=smoke)


def _with_probe(
    study: Study, config: ExperimentConfig, run_dir: epath.Path, record: dict, *, smoke: bool
) -> dict:
    probe = run_probe(study, config, run_dir, warm_start=False, smoke=smoke)
    return record if probe is None else {**record, "probe": probe}


def command_line(argv: list[str]) -> str:
    return " ".join(["python -m rljax.experiments.reproduce", *map(shlex.quote, argv)])


def main(argv: list[str] | None = None) -> epath.Path:
    """Runs the study named on the command line; returns the path of its `report.md`."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    try:
        study = studies.get(args.study)
    except ValueError as err:
        raise SystemExit(f"error: {err}") from None
    arms = list(study.arms) if args.arms is None else [a for a in args.arms.split(",") if a]
    unknown = [a for a in arms if a not in study.arms]
    if unknown or not arms:
        raise SystemExit(
            f"error: unknown arm(s) {unknown} of study {study.name!r}; arms are {sorted(study.arms)}"
        )
    num_seeds = 2 if args.smoke and args.seeds is None else (args.seeds or study.seeds)
    if num_seeds < 1:
        raise SystemExit(f"error: --seeds must be >= 1, got {num_seeds}")
    suffix = "-smoke" if args.smoke else ""
    runs = epath.Path(args.runs_dir or f"runs/studies/{study.name}{suffix}").absolute()
    out = (
        epath.Path(args.out)
        if args.out
        else (runs / "report" if args.smoke else RESULTS / study.name)
    )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    for noisy in ("absl", "jax._src.xla_bridge"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    for arm in arms:  # configuration errors surface before hours of training
        for seed in range(num_seeds):
            study.run_config(arm, seed, smoke=args.smoke)

    start = time.perf_counter()
    sha = study_report.commit()  # the code this session runs (the tree may change meanwhile)
    warm, records = {}, {}
    # Arms and seeds compile the same programs again and again: only the first run of each pays
    # (a smoke run of a seed: ~80 s -> ~12 s), and a resumed study does not recompile.
    with compile_cache.enabled(runs / "xla_cache"):
        for seed in range(num_seeds):
            warm[seed] = warm_starts(study, seed, runs, arms, smoke=args.smoke)
            for arm in arms:
                records[(arm, seed)] = run_one(study, arm, seed, runs, smoke=args.smoke, sha=sha)
    page = study_report.write(
        study,
        out,
        runs=runs,
        arms=arms,
        seeds=list(range(num_seeds)),
        warm_starts=warm,
        records=records,
        command=command_line(argv),
        session_wall_s=time.perf_counter() - start,
        smoke=args.smoke,
    )
    print(f"report: {page}")
    return page


if __name__ == "__main__":
    main()
