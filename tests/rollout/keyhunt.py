"""A small in-test multi-turn family ("key hunt") and helpers for the rollout tests.

Files f00..f02 each hold one `key=value` line. An action is `<think> ... </think> <cmd> CMD </cmd>`;
CMD is `cat FILE` (prints the file) or `answer V` (ends the episode; reward 1 iff V is the value of
the task's key). A missing <think> block gives the warning "Missing <think> block". The episode
records every action it was given, and its verdict can carry per-stage rewards. With `max_turns`
set, the episode closes itself at that many actions (its last observation has `done=True`), as
the terminal families do.
"""

import dataclasses
import re

import numpy as np

from rljax.envs.base import Observation, Task, Verdict

FILES = {"f00": "k00=ab12", "f01": "k01=zz9q", "f02": "k02=c3po"}


class KeyHuntEpisode:
    def __init__(self, task: Task, with_stages: bool, max_turns: int | None):
        self.task, self.with_stages, self.max_turns, self.actions = task, with_stages, max_turns, []
        self.answer: str | None = None

    def step(self, action: str) -> Observation:
        self.actions.append(action)
        match = re.search(r"<cmd>(.*?)</cmd>", action, re.S)
        command = match.group(1).strip() if match else ""
        warning = "" if "<think>" in action else "Missing <think> block"
        if command.startswith("answer "):
            self.answer = command.split(" ", 1)[1]
            return Observation(text="", done=True)
        done = self.max_turns is not None and len(self.actions) >= self.max_turns
        if command.startswith("cat "):
            name = command.split()[1]
            status = FILES[name] if name in FILES else f"cat: {name}: No such file or directory"
            text = f"$ {command}\n{status}\n(exit={0 if name in FILES else 1})"
            return Observation(text=text, warning=warning, done=done)
        return Observation(
            text="No valid tool calls or done signal found.", warning=warning, done=done
        )

    def verdict(self) -> Verdict:
        correct = self.answer == self.task.answer
        info = {
            "reason": "correct" if correct else f"answer {self.answer!r}",
            "actions": len(self.actions),
        }
        if self.with_stages:
            info["stage_rewards"] = [len(self.actions) / 10, 0.5, 0.25, float(correct)]
        return Verdict(reward=float(correct), info=info)


@dataclasses.dataclass
class KeyHuntFamily:
    with_stages: bool = False
    max_turns: int | None = None
    name: str = "keyhunt"

    def __post_init__(self):
        self.episodes: list[KeyHuntEpisode] = []

    def generate(self, split: str, index: int) -> Task:
        key = f"k{index % 3:02d}"
        return Task(
            uid=f"keyhunt/{split}/{index}",
            family=self.name,
            prompt=f"Q: value of {key} ?",
            answer=FILES[f"f{index % 3:02d}"].split("=")[1],
            task_id=index % 2,
        )

    def verify(self, task: Task, response: str) -> Verdict:
        return Verdict(
            reward=float(f"answer {task.answer}" in response), info={"reason": "final answer"}
        )

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        return self.expert_actions(task, rng, noise)[-1]

    def start(self, task: Task) -> KeyHuntEpisode:
        episode = KeyHuntEpisode(task, self.with_stages, self.max_turns)
        self.episodes.append(episode)
        return episode

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        index = int(task.uid.rsplit("/", 1)[1]) % 3
        wrong = rng.random() < noise
        value = "xxxx" if wrong else task.answer
        return [
            f"<think> read </think> <cmd> cat f{index:02d} </cmd>",
            f"<think> got it </think> <cmd> answer {value} </cmd>",
        ]


def masked_spans(tokenizer, tokens, mask) -> list[str]:
    """Decodes each maximal run of True in `mask` (one row)."""
    out, run = [], []
    for token, flag in zip(list(tokens) + [None], list(mask) + [False]):
        if flag:
            run.append(int(token))
        elif run:
            out.append(tokenizer.decode(run, skip_special_tokens=False))
            run = []
    return out
