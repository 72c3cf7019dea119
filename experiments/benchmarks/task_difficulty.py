"""Task difficulty: the scripted expert's mean reward per task suite and noise level (held-out tasks).

Experiments use it to pick a starting point where rewards are neither all 0 nor all 1. Each suite
is one line of `SUITES`: a label -> (registry name, family knobs). For each suite and noise level
the expert (`family.expert(task, rng, noise)`) answers the same held-out tasks and the family's
verifier scores it. Families that size prompts in tokens (the long-context ones) count the
built-in tokenizer's. Writes JSON and prints a markdown table.

    python -m rljax.experiments.benchmarks.task_difficulty --num-tasks 100 --noise 0 0.1 0.3 0.5
"""

from __future__ import annotations

import argparse
import json
import pathlib
from typing import Any, Sequence

import numpy as np

from rljax.data import load_tokenizer, token_counter
from rljax.envs import registry
from rljax.envs.base import with_token_counter

SUITES: dict[str, tuple[str, dict[str, Any]]] = {
    "longcontext/precise_retrieval": ("longcontext/precise_retrieval", {}),
    "longcontext/comprehension": ("longcontext/comprehension", {}),
    "longcontext/exhaustive_retrieval": ("longcontext/exhaustive_retrieval", {}),
    "longcontext/numerical_reasoning": ("longcontext/numerical_reasoning", {}),
    "longcontext/structured_extraction": ("longcontext/structured_extraction", {}),
    "longcontext/structured_matching": ("longcontext/structured_matching", {}),
    "longcontext/graded_ranking": ("longcontext/graded_ranking", {}),
    "longcontext/sequence_ordering": ("longcontext/sequence_ordering", {}),
    "longcontext/summarization": ("longcontext/summarization", {}),
    "longcontext (uniform mix)": ("longcontext", {}),
    "strategy (HiddenKey)": ("strategy", {}),
    "miniresearch (RubricEM)": ("miniresearch", {}),
    "keysearch (Anti-SD, N=8)": ("keysearch", {}),
}
"""label -> (registry name, knobs); add a suite with one line."""

DEFAULT_NOISE = (0.0, 0.1, 0.3, 0.5)
DEFAULT_OUT = pathlib.Path(__file__).resolve().parent / "results" / "task_difficulty.json"


def measure_suite(
    name: str, kwargs: dict[str, Any], *, num_tasks: int, noise: Sequence[float], seed: int
) -> dict[str, Any]:
    """The expert's reward statistics on `num_tasks` held-out tasks of one suite.

    Args:
        name: registry name of the task family.
        kwargs: the family's knobs.
        num_tasks: held-out tasks 0..num_tasks-1.
        noise: the expert noise levels.
        seed: seed of the expert's random stream (the same for every noise level).

    Returns:
        {"family", "kwargs", "mean_reward", "std_reward", "solved"} with one value per noise level
        (keys are the noise levels as strings; "solved" = share of reward-1 answers), plus
        "mean_context_tokens" when the tasks report their context length.
    """
    family = with_token_counter(registry.make(name, **kwargs), token_counter(load_tokenizer()))
    tasks = [family.generate("heldout", index) for index in range(num_tasks)]
    result: dict[str, Any] = {
        "family": name,
        "kwargs": kwargs,
        "mean_reward": {},
        "std_reward": {},
        "solved": {},
    }
    for level in noise:
        rng = np.random.default_rng(seed)
        rewards = np.array(
            [family.verify(task, family.expert(task, rng, level)).reward for task in tasks]
        )
        key = str(level)
        result["mean_reward"][key] = float(rewards.mean())
        result["std_reward"][key] = float(rewards.std())
        result["solved"][key] = float(np.mean(rewards > 1.0 - 1e-9))
    lengths = [task.meta["context_tokens"] for task in tasks if "context_tokens" in task.meta]
    if lengths:
        result["mean_context_tokens"] = float(np.mean(lengths))
    return result


def markdown_table(results: dict[str, dict[str, Any]], noise: Sequence[float]) -> str:
    """Markdown table: one row per suite, the mean reward at each noise level.

    Args:
        results: label -> `measure_suite` output.
        noise: the noise levels (column order).

    Returns:
        The table text.
    """
    header = "| suite | " + " | ".join(f"noise {level:g}" for level in noise) + " |"
    rule = "|---|" + "---|" * len(noise)
    rows = [
        f"| {label} | "
        + " | ".join(f"{r['mean_reward'][str(level)]:.3f}" for level in noise)
        + " |"
        for label, r in results.items()
    ]
    return "\n".join([header, rule, *rows])


def main(argv: Sequence[str] | None = None) -> dict[str, Any]:
    """Measures every suite, writes the JSON and prints the table.

    Args:
        argv: command-line arguments (None: sys.argv).

    Returns:
        The report written to `--out`.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--num-tasks", type=int, default=100, help="held-out tasks per suite")
    parser.add_argument("--noise", type=float, nargs="+", default=list(DEFAULT_NOISE))
    parser.add_argument("--seed", type=int, default=0, help="seed of the expert's random stream")
    parser.add_argument("--suites", nargs="+", default=list(SUITES), choices=list(SUITES))
    parser.add_argument("--out", type=pathlib.Path, default=DEFAULT_OUT)
    args = parser.parse_args(argv)
    if args.num_tasks < 1 or not all(0.0 <= level <= 1.0 for level in args.noise):
        parser.error(
            f"--num-tasks must be >= 1 and --noise levels in [0, 1], got {args.num_tasks}, {args.noise}"
        )
    results = {
        label: measure_suite(
            *SUITES[label], num_tasks=args.num_tasks, noise=args.noise, seed=args.seed
        )
        for label in args.suites
    }
    report = {
        "num_tasks": args.num_tasks,
        "split": "heldout",
        "seed": args.seed,
        "noise": args.noise,
        "suites": results,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(markdown_table(results, args.noise))
    return report


if __name__ == "__main__":
    main()
