"""Inspects a RubricEM SFT warm start on MiniResearch (issue 20's warm-start measurement).

    python -m rljax.experiments.rubric_em_inspect --run-dir runs/diag/rubric/run
        [--set FIELD=VALUE ...] [--questions 8] [--show 2]

Builds the policy of the rubric_em study's base config (`experiments/studies/rubric_em.py`) with
the given overrides (e.g. `--set sft.steps=600`); the SFT warm start is loaded from, or trained
into, `<run-dir>/../sft/`. It samples `--questions` training and held-out questions x 2, prints
their rewards and `--show` full episodes with the environment's verdict info, then the study's
probe of the warm start (answer score, stage scores, process failures, reflections, the held-out
template) as one JSON line. Results: experiments/results/rubric_em/warm_start.md.
"""

from __future__ import annotations

import argparse
import json
import time

import jax
import numpy as np
from rljax.experiments import cli
from rljax.experiments.studies import rubric_em as study

from rljax.train import Trainer
from rljax.train.collect import sample_trajectories
from rljax.train.config import apply_overrides

SAMPLE_KEY = 3  # the episodes' sampling key


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--questions", type=int, default=8)
    parser.add_argument("--show", type=int, default=2)
    args = parser.parse_args()
    cli.configure_logging()
    config = apply_overrides(study.config(), args.overrides)
    trainer = Trainer(config, args.run_dir)
    wall = time.perf_counter()
    trainer.load_warm_start()
    print(f"warm start ready: {time.perf_counter() - wall:.0f} s wall (cached: ~0)")
    family = trainer.family
    for split in ("train", "heldout"):
        tasks = [family.generate(split, i) for i in range(args.questions)]
        traj = sample_trajectories(
            trainer.policy, family, tasks, trainer.tokenizer, config.task,
            jax.random.key(SAMPLE_KEY), group_size=2,
        )  # fmt: skip
        print(f"\n===== {split}: rewards {np.round(np.asarray(traj.rewards), 2).tolist()}")
        for b in range(min(args.show, len(traj.rewards))):
            tokens = np.asarray(traj.tokens[b])[np.asarray(traj.segment_ids[b]) > 0]
            print(f"--- {tasks[b // 2].uid}")
            print(trainer.tokenizer.decode(tokens.tolist(), skip_special_tokens=False))
            print({k: v for k, v in traj.info[b].items() if k != "transcript"})
    cpu = time.process_time()
    scalars = study.probe(trainer, smoke=False)["scalars"]
    print(f"probe ({time.process_time() - cpu:.0f} CPU-s): {json.dumps(scalars)}")


if __name__ == "__main__":
    main()
