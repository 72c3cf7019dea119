"""`TerminalFamily`: what every terminal task family shares (a `MultiTurnFamily`).

A family fixes the world (`world.make_world(seed)`, shared by all its episodes), draws instances
with the registry's content-hash split rule, starts episodes on a backend built by its `backend`
factory (`MiniShell` by default, `sandbox.Sandbox` for a real shell), and scripts noisy experts.
Subclasses provide `_draw` (an instance and its canonical content), `_task` (prompt, answer,
meta), `judge` (the verifier on the final state) and `expert_actions`.

`verify(task, response)` replays the `<cmd>` blocks of a whole response in order, one per turn,
on a fresh backend, so a single-string response (e.g. `expert()`'s, the actions joined by
newlines) scores exactly as the episode that plays those commands.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from typing import Any, ClassVar

import numpy as np

from rljax.envs import registry
from rljax.envs.base import Task, Verdict, check_split
from rljax.envs.replay import replay
from rljax.envs.terminal import render as render_lib
from rljax.envs.terminal.actions import cmd_blocks
from rljax.envs.terminal.backend import BackendFactory, TerminalBackend
from rljax.envs.terminal.episode import TerminalEpisode
from rljax.envs.terminal.shell import MiniShell
from rljax.envs.terminal.world import ROOT, World, make_world

SYSTEM_PROMPT = (
    "You are in a terminal at /data. Each turn, think, then run one command: "
    "<think> ... </think> <cmd> COMMAND </cmd>. Commands: ls cd pwd cat head tail grep wc sort "
    "find echo mkdir touch rm mv cp. Finish with <cmd> answer VALUE </cmd>."
)
_KNOWN_COMMANDS = frozenset(
    "ls cd pwd cat head tail grep wc sort find echo mkdir touch rm mv cp answer".split()
)


@dataclasses.dataclass(frozen=True)
class TerminalFamily(abc.ABC):
    """Base of the terminal task families (not registered itself).

    Attributes:
        seed: experiment seed: fixes the world and the instances.
        num_files: files in /data (echo.md: 20).
        lines_per_file: key=value lines per file (echo.md: 5).
        value_chars: characters of every value (echo.md: 4).
        heldout_fraction: share of the instance space (by content hash) reserved for "heldout".
        max_turns: turn limit of an episode (the final answer included).
        render: observation rendering, "harness" or "compact".
        max_output_chars: truncation limit on command output (None: no limit).
        system: system-turn text of every task (e.g. `SYSTEM_PROMPT`; None: no system turn).
        backend: `(files, dirs, cwd) -> TerminalBackend` building each episode's backend.
        name: family name, the first field of every uid.
        world: the world of `seed` (derived, not an argument).
    """

    seed: int = 0
    num_files: int = 20
    lines_per_file: int = 5
    value_chars: int = 4
    heldout_fraction: float = 0.2
    max_turns: int = 3
    render: str = "harness"
    max_output_chars: int | None = 50_000
    system: str | None = None
    backend: BackendFactory = MiniShell
    name: str = "terminal"
    world: World = dataclasses.field(init=False, repr=False, compare=False)
    task_id: ClassVar[int] = 0
    min_turns: ClassVar[int] = 2  # actions the noiseless expert needs

    def __post_init__(self):
        registry.check_heldout_fraction(self.heldout_fraction)
        render_lib.check_render(self.render)
        render_lib.check_max_output_chars(self.max_output_chars)
        if not isinstance(self.max_turns, int) or self.max_turns < self.min_turns:
            raise ValueError(
                f"max_turns must be an int >= {self.min_turns} (the expert's minimum for {self.name}), "
                f"got {self.max_turns!r}"
            )
        if not callable(self.backend):
            raise ValueError(
                f"backend must be a callable (files, dirs, cwd) -> TerminalBackend, got {self.backend!r}"
            )
        world = make_world(
            self.seed,
            num_files=self.num_files,
            lines_per_file=self.lines_per_file,
            value_chars=self.value_chars,
        )
        object.__setattr__(self, "world", world)  # drawn once, shared by every episode

    def generate(self, split: str, index: int) -> Task:
        """Returns instance `index` of `split`; same inputs, same task.

        Args:
            split: "train" or "heldout" (disjoint by the content hash of `_draw`).
            index: any non-negative int.

        Returns:
            The task; `meta` holds "world" (`world_id`), the instance's own files ("files",
            "dirs") and whatever the judge and expert need.
        """
        check_split(split)
        instance = registry.sample_in_split(
            self._draw,
            seed=self.seed,
            split=split,
            index=index,
            heldout_fraction=self.heldout_fraction,
        )
        prompt, answer, meta = self._task(instance)
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=prompt,
            answer=answer,
            task_id=self.task_id,
            system=self.system,
            meta={**meta, "world": self.world_id},
        )

    def start(self, task: Task) -> TerminalEpisode:
        """Starts an episode of `task` on a fresh backend (world files + the task's own files)."""
        self._check_task(task)
        files = {**self.world.files, **task.meta.get("files", {})}
        backend = self.backend(files, list(task.meta.get("dirs", [])), ROOT)
        return TerminalEpisode(
            backend,
            functools.partial(self.judge, task),
            max_turns=self.max_turns,
            render=self.render,
            max_output_chars=self.max_output_chars,
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Replays the response's `<cmd>` blocks (one per turn, at most `max_turns`) and judges.

        Args:
            task: a task of this family.
            response: every action of the episode, concatenated.

        Returns:
            The verdict of the replayed episode.
        """
        with self.start(task) as episode:
            return replay(episode, (f"<cmd>{command}</cmd>" for command in cmd_blocks(response)))

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """The expert's actions joined by newlines (`verify` scores it like the episode)."""
        return "\n".join(self.expert_actions(task, rng, noise))

    @abc.abstractmethod
    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """Scripted actions, one per turn, ending with the final answer (see subclasses)."""

    @abc.abstractmethod
    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Scores the final file system and answer (see subclasses)."""

    @abc.abstractmethod
    def _draw(self, rng: np.random.Generator) -> tuple[str, Any]:
        """Draws one instance and its canonical content string (hashed for the split)."""

    @abc.abstractmethod
    def _task(self, instance: Any) -> tuple[str, Any, dict]:
        """(prompt, reference answer, meta) of an instance."""

    @property
    def world_id(self) -> str:
        """Identifies the world the tasks refer to, e.g. "seed=0,files=20,lines=5,chars=4"."""
        return (
            f"seed={self.seed},files={self.num_files},lines={self.lines_per_file},"
            f"chars={self.value_chars}"
        )

    def _check_task(self, task: Task) -> None:
        if task.family != self.name or task.meta.get("world") != self.world_id:
            raise ValueError(
                f"task {task.uid!r} (family {task.family!r}, world {task.meta.get('world')!r}) "
                f"does not belong to family {self.name!r} with world {self.world_id!r}"
            )

    def _mistake_slots(self, rng: np.random.Generator, noise: float) -> int:
        """How many mistakes the expert makes: one Bernoulli(noise) per spare turn."""
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        return int((rng.random(self.max_turns - self.min_turns) < noise).sum())


def act(thought: str, command: str) -> str:
    """Formats one well-formed action (echo.md section 8.1's action format).

    Args:
        thought: the reasoning text.
        command: the command line.

    Returns:
        "<think> THOUGHT </think> <cmd> COMMAND </cmd>".
    """
    return f"<think> {thought} </think> <cmd> {command} </cmd>"


def typo(command: str, rng: np.random.Generator) -> str:
    """Misspells the program name of `command` (two adjacent letters swapped, or one dropped).

    Args:
        command: a command line, e.g. "grep k01 f00".
        rng: chooses the misspelling.

    Returns:
        The command with a misspelt program (e.g. "gerp k01 f00"); never a known command, so the
        shell answers "command not found".
    """
    program, _, rest = command.partition(" ")
    candidates = [
        program[:i] + program[i + 1] + program[i] + program[i + 2 :]
        for i in range(len(program) - 1)
    ]
    candidates += [program[:i] + program[i + 1 :] for i in range(len(program))]
    candidates = [c for c in dict.fromkeys(candidates) if c and c not in _KNOWN_COMMANDS]
    misspelt = candidates[int(rng.integers(len(candidates)))]
    return f"{misspelt} {rest}" if rest else misspelt


def other(items: list[str], avoid: str, rng: np.random.Generator) -> str:
    """Draws an item other than `avoid`.

    Args:
        items: candidates (at least one differs from `avoid`).
        avoid: the item to exclude.
        rng: the random generator.

    Returns:
        A uniformly drawn item of `items` that is not `avoid`.
    """
    choices = [item for item in items if item != avoid]
    return choices[int(rng.integers(len(choices)))]
