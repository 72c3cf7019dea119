"""Inspects a study's SFT warm start before the study is run (is there room for RL?).

    python -m rljax.experiments.inspect_warm_start --study rubric_em --run-dir runs/diag/x/run
        [--set FIELD=VALUE ...] [--questions 8] [--show 2] [--temperature T] [--smoke]

Builds the policy of the study's base config (`experiments/studies/<study>.py`; `--smoke`: its
smoke config, and the probe's smoke size) with the given overrides (e.g. `--set sft.steps=600`);
the SFT warm start is loaded from, or trained into, `<run-dir>/../sft/`. It samples
`--questions` training and held-out tasks x `SAMPLES`, prints their rewards
and `--show` full episodes with the environment's verdict info, then the study's probe of the warm
start (when the study has one) as one JSON line. `--temperature` samples the episodes at another
temperature than the config's (set with `--set`, it would change the warm start's fingerprint and
train another); the probe keeps the study's sampling. Measurements made with it:
experiments/results/rubric_em/warm_start.md, experiments/results/golong_warm_start.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import time

import jax
import numpy as np
from rljax.experiments import cli, studies

from rljax.train import Trainer
from rljax.train.collect import sample_trajectories
from rljax.train.config import apply_overrides

SAMPLE_KEY = 3  # the episodes' sampling key
SAMPLES = 2  # episodes per task


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--study", required=True, choices=studies.names())
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--show", type=int, default=2)
    parser.add_argument("--temperature", type=float, default=None, help="the episodes' only")
    parser.add_argument("--smoke", action="store_true", help="the study's smoke config and probe")
    args = parser.parse_args()
    cli.configure_logging()
    study = studies.get(args.study)
    config = apply_overrides((study.smoke_config if args.smoke else study.config)(), args.overrides)
    trainer = Trainer(config, args.run_dir)
    wall = time.perf_counter()
    trainer.load_warm_start()
    print(f"warm start ready: {time.perf_counter() - wall:.0f} s wall (cached: ~0)")
    family = trainer.family
    sampling = config.task
    if args.temperature is not None:
        sampling = dataclasses.replace(sampling, temperature=args.temperature)
    for split in ("train", "heldout"):
        tasks = [family.generate(split, i) for i in range(args.questions)]
        traj = sample_trajectories(
            trainer.policy, family, tasks, trainer.tokenizer, sampling,
            jax.random.key(SAMPLE_KEY), group_size=SAMPLES,
        )  # fmt: skip
        print(f"\n===== {split}: rewards {np.round(np.asarray(traj.rewards), 2).tolist()}")
        for b in range(min(args.show, len(traj.rewards))):
            tokens = np.asarray(traj.tokens[b])[np.asarray(traj.segment_ids[b]) > 0]
            print(f"--- {tasks[b // SAMPLES].uid}")
            print(trainer.tokenizer.decode(tokens.tolist(), skip_special_tokens=False))
            print({k: v for k, v in traj.info[b].items() if k != "transcript"})
    if study.probe is None:
        return
    cpu = time.process_time()
    scalars = study.probe(trainer, smoke=args.smoke)["scalars"]
    print(f"probe ({time.process_time() - cpu:.0f} CPU-s): {json.dumps(scalars)}")


if __name__ == "__main__":
    main()
