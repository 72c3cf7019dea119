"""Held-out evaluation: unbiased pass@k and majority-vote maj@k over k samples per prompt."""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

import jax
import numpy as np
from etils import epath
from flax import nnx

from rljax import losses
from rljax.envs.base import TaskFamily
from rljax.rollout.types import Trajectories
from rljax.train.collect import sample_trajectories
from rljax.train.config import TaskSection

_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.S)
# A terminal episode's final answer is the command `answer V` (rljax.envs.terminal.actions).
_COMMAND_ANSWER = re.compile(r"<cmd>\s*answer\s+(.*?)</cmd>", re.S)


def final_answers(traj: Trajectories, tokenizer) -> list[str]:
    """The last `<answer>...</answer>` of each row's generated text, else its last terminal
    `<cmd> answer V </cmd>`, else the whole generated text (every turn's actions)."""
    out = []
    for tokens, mask in zip(np.asarray(traj.tokens), np.asarray(traj.action_mask)):
        text = tokenizer.decode(tokens[mask > 0].tolist(), skip_special_tokens=True)
        found = _ANSWER.findall(text) or _COMMAND_ANSWER.findall(text)
        out.append(found[-1].strip() if found else text.strip())
    return out


def score_samples(
    rewards: np.ndarray, answers: Sequence[str], num_samples: int
) -> dict[str, float]:
    """pass@k (k = 1, 2, 4, ... <= n) and maj@n from per-sample rewards and final answers.

    Args:
        rewards: [P * n] rewards, a sample counts as correct when its reward is 1.
        answers: [P * n] final answers (majority vote classes; "" does not vote).
        num_samples: n samples per prompt.
    """
    correct = np.asarray(rewards).reshape(-1, num_samples) >= 1.0
    ks = [k for k in (1, 2, 4, 8, 16, 32, 64) if k <= num_samples]
    metrics = {
        f"pass@{k}": float(
            np.mean([losses.pass_at_k(num_samples, int(c.sum()), k) for c in correct])
        )
        for k in ks
    }
    ids = np.empty(correct.shape, np.int32)
    for p in range(correct.shape[0]):
        classes: dict[str, int] = {}
        for g in range(num_samples):
            answer = answers[p * num_samples + g]
            ids[p, g] = -1 if not answer else classes.setdefault(answer, len(classes))
    metrics[f"maj@{num_samples}"] = float(np.mean(losses.maj_at_k(ids, correct)))
    metrics["mean_reward"] = float(np.mean(rewards))
    return metrics


def evaluate(
    model: nnx.Module,
    family: TaskFamily,
    tokenizer: Any,
    cfg: TaskSection,
    key: jax.Array,
    *,
    num_prompts: int,
    num_samples: int,
) -> dict[str, float]:
    """Samples `num_samples` responses to each of the first `num_prompts` held-out tasks.

    Args:
        model: the policy.
        family: supplies the held-out tasks and verifies the responses.
        tokenizer: the policy's tokenizer.
        cfg: sampling settings.
        key: the sampling key.
        num_prompts: held-out tasks 0 .. num_prompts - 1 (0: no evaluation).
        num_samples: n samples per task.

    Returns:
        `score_samples`'s metrics ({} when num_prompts is 0).
    """
    if num_prompts <= 0:
        return {}
    tasks = [family.generate("heldout", i) for i in range(num_prompts)]
    traj = sample_trajectories(model, family, tasks, tokenizer, cfg, key, group_size=num_samples)
    return score_samples(np.asarray(traj.rewards), final_answers(traj, tokenizer), num_samples)


class EvalLog:
    """`eval.jsonl`: one line per evaluation; on resume, lines after `resume_step` are dropped.

    With `write=False` (the processes other than 0 of a multi-process run) nothing is written.
    """

    def __init__(self, path: str | epath.Path, *, resume_step: int = 0, write: bool = True):
        self.path = epath.Path(path)
        self._write = write
        if write:
            lines = self.read()
            self.path.write_text(
                "".join(
                    json.dumps(r) + "\n" for r in lines if resume_step and r["step"] <= resume_step
                )
            )

    def write(self, step: int, metrics: dict) -> None:
        if not metrics or not self._write:
            return
        with self.path.open("a") as f:
            f.write(json.dumps({"step": int(step), **metrics}) + "\n")

    def read(self) -> list[dict]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line]
