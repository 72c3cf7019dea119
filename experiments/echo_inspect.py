"""Inspects an ECHO SFT warm start on MiniShell (issue 16's diagnosis).

    python -m rljax.experiments.echo_inspect --run-dir runs/diag/before [--set FIELD=VALUE ...]
        [--study]

Builds the policy of the echo `cpu` preset (with `--study`: of the echo study's base config,
`experiments/studies/echo.py`) with the given overrides; the SFT warm start is loaded from, or
trained into, `<run-dir>/../sft/`, and the CPU seconds of this process (all threads) spent getting
it are printed (training: scripting, compiling and the SFT steps). With `--study` it then prints the
study's probe of the warm start (held-out success, first-response accuracy, observation CE/accuracy)
as one JSON line. Then it rolls out held-out and training tasks of the run's family and of the
`values="task"` family (same keys, redrawn values: a counterfactual for a policy that answers from
memory), prints `--show` full episodes and, per set, the success rate, the share of episodes whose
first lookup names the key's file, whose answer appears in an observation (read from the terminal)
and whose answer is the world's value of the key (memorised); `--tasks 0` skips this part.
"""

from __future__ import annotations

import argparse
import json
import re
import time

import jax
import numpy as np
from rljax.experiments import cli, echo
from rljax.experiments.studies import echo as echo_study

from rljax.envs import registry
from rljax.train import Trainer
from rljax.train.collect import sample_trajectories
from rljax.train.config import apply_overrides

_CMD = re.compile(r"<cmd>(.*?)</cmd>", re.S)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--run-dir", required=True)
    parser.add_argument("--set", dest="overrides", action="append", default=[])
    parser.add_argument("--tasks", type=int, default=64)
    parser.add_argument("--show", type=int, default=3)
    parser.add_argument("--study", action="store_true", help="the echo study's base config")
    args = parser.parse_args()
    cli.configure_logging()
    if args.study:
        config = apply_overrides(echo_study.config(), args.overrides)
    else:
        config = cli.resolve("echo", echo.PRESETS, "cpu", args.overrides)
    trainer = Trainer(config, args.run_dir)
    cpu, wall = time.process_time(), time.perf_counter()
    trainer.load_warm_start()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    print(f"warm start ready: {cpu:.0f} CPU-s, {wall:.0f} s wall (cached: ~0)")
    if args.study:
        cpu = time.process_time()
        scalars = echo_study.probe(trainer, smoke=False)["scalars"]
        print(f"probe ({time.process_time() - cpu:.0f} CPU-s): {json.dumps(scalars)}")
    kwargs = dict(config.task.kwargs)
    own = trainer.family
    redrawn = registry.make(config.task.family, **{**kwargs, "values": "task"})
    print(f"policy: SFT warm start of {args.run_dir} (task kwargs {kwargs})")
    sets = (
        ("heldout", own, "heldout"),
        ("train", own, "train"),
        ("train, values redrawn", redrawn, "train"),
    )
    for label, family, split in sets if args.tasks > 0 else ():
        tasks = [family.generate(split, i) for i in range(args.tasks)]
        traj = sample_trajectories(
            trainer.policy, family, tasks, trainer.tokenizer, config.task, jax.random.key(7),
            group_size=1,
        )  # fmt: skip
        stats = {"success": [], "first lookup in the key's file": [], "answer read": [],
                 "answer = world value": []}  # fmt: skip
        print(f"\n===== {label} ({split} split of values={family.values!r}) =====")
        for b, task in enumerate(tasks):
            tokens = np.asarray(traj.tokens[b])[np.asarray(traj.segment_ids[b]) > 0]
            text = trainer.tokenizer.decode(tokens.tolist(), skip_special_tokens=False)
            actions = trainer.tokenizer.decode(
                np.asarray(traj.tokens[b])[np.asarray(traj.action_mask[b])].tolist(),
                skip_special_tokens=False,
            )
            commands = [c.strip() for c in _CMD.findall(actions)]
            answer = next((c[7:].strip() for c in commands if c.startswith("answer ")), None)
            lookups = [c for c in commands if not c.startswith("answer")]
            stats["success"].append(float(traj.rewards[b]))
            stats["first lookup in the key's file"].append(
                bool(lookups) and lookups[0].split()[-1:] == [task.meta["file"]]
            )
            stats["answer read"].append(answer is not None and f"={answer}\n" in text)
            stats["answer = world value"].append(answer == family.world.values[task.meta["key"]])
            if b < args.show:
                print(f"--- {task.uid}: {task.prompt!r} answer {task.answer!r} "
                      f"(key in {task.meta['file']}); reward {float(traj.rewards[b])}, "
                      f"{traj.info[b].get('reason')!r}, stop {traj.info[b].get('stop')}")  # fmt: skip
                print(text)
        print(f"summary {label}: " + ", ".join(f"{k} {np.mean(v):.3f}" for k, v in stats.items()))


if __name__ == "__main__":
    main()
