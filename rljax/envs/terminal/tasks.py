"""Terminal task families: find a value, create or edit files, count or aggregate.

| family               | prompt                                       | reward 1 iff                       | turns |
|----------------------|----------------------------------------------|------------------------------------|-------|
| terminal_find_value  | Q: value of KEY ?                            | `answer V` gives KEY's value       | 3     |
| terminal_write_value | Q: write the value of KEY to /data/out.txt   | /data/out.txt holds the value      | 4     |
| terminal_backup_file | Q: copy FILE into a new directory /data/DIR  | /data/DIR/FILE is a copy, FILE     | 4     |
|                      |                                              | unchanged                          |       |
| terminal_append_line | Q: add the line NEW=VAL to FILE              | FILE gained exactly that line, no  | 3     |
|                      |                                              | other world file changed           |       |
| terminal_count_files | Q: how many files are in /data/inbox ?       | `answer N` gives the count         | 3     |
| terminal_sum_numbers | Q: sum of the numbers in /data/numbers.txt ? | `answer N` gives the sum           | 3     |

The first is echo.md section 8.1's episode. All share the world of their seed
(`world.make_world`); the last two add per-task files. Splits follow the registry's content-hash
rule; for the key families the hashed content is the key (with the world seed), so a held-out key
is never a training query of either key family. The key families take `values`: "world" (the
spec: a key's value is the world's, so a training key can be answered from memory, and a held-out
key's file was never a lookup target) or "task" (each task redraws every value over the world's
layout and is split by key and values: held-out tasks ask for training keys, with values no
training task shows, so held-out success measures reading the terminal; issue 16). File-state tasks are judged on the final file
system whatever the answer (`answer done` just ends early). Experts make, per spare turn, a
mistake with probability `noise`: a look at the wrong file or a misspelt command (both
recoverable); with noise 0 they solve every task.
"""

from __future__ import annotations

import dataclasses
import re
from typing import ClassVar

import numpy as np

from rljax.envs.base import Task, Verdict
from rljax.envs.terminal.backend import TerminalBackend
from rljax.envs.terminal.family import TerminalFamily, act, other, typo
from rljax.envs.terminal.world import ROOT, VALUE_ALPHABET

OUT_FILE = f"{ROOT}/out.txt"
INBOX = f"{ROOT}/inbox"
NUMBERS_FILE = f"{ROOT}/numbers.txt"
_DIR_WORDS = ("backup", "archive", "old", "save", "copy", "store", "keep", "vault")
_INBOX_WORDS = ("log", "note", "todo", "data", "mail", "memo", "draft", "list")
_INTEGER = re.compile(r"-?[0-9]+")
_DONE = ("Done.", "answer done")


def key_content(seed: int, key: str) -> str:
    """The canonical content of a key query, hashed by the registry's split rule.

    Args:
        seed: the world seed.
        key: the queried key.

    Returns:
        "world{seed}/{key}"; both key families use it, so they split the keys the same way.
    """
    return f"world{seed}/{key}"


VALUE_SOURCES = ("world", "task")


@dataclasses.dataclass(frozen=True)
class _KeyFamily(TerminalFamily):
    """A family whose tasks ask for the value of one key of the world (find / write a value).

    Attributes:
        values: "world" (echo.md section 8.1: every key keeps the world's value, so a policy can
            answer a training key from memory) or "task" (each task redraws every value over the
            world's layout, so the value must be read from the terminal; the split then hashes the
            key with the task's values, so held-out tasks ask for training keys with values no
            training task shows).
    """

    values: str = "world"

    def __post_init__(self):
        if self.values not in VALUE_SOURCES:
            raise ValueError(f"values must be one of {VALUE_SOURCES}, got {self.values!r}")
        super().__post_init__()

    def _draw(self, rng: np.random.Generator) -> tuple[str, tuple[str, dict[str, str] | None]]:
        key = self.world.keys[int(rng.integers(len(self.world.values)))]
        if self.values == "world":
            return key_content(self.seed, key), (key, None)
        width = len(self.world.values[key])
        letters = rng.integers(len(VALUE_ALPHABET), size=(len(self.world.keys), width))
        values = {
            k: "".join(VALUE_ALPHABET[c] for c in row) for k, row in zip(self.world.keys, letters)
        }
        content = f"{key_content(self.seed, key)}:" + ",".join(values[k] for k in self.world.keys)
        return content, (key, values)

    def _key_task(self, instance: tuple[str, dict[str, str] | None]) -> tuple[str, dict]:
        """(the key's value, meta) of an instance; meta["files"] holds the task's own values."""
        key, values = instance
        meta = {"key": key, "file": self.world.key_file[key]}
        if values is None:
            return self.world.values[key], meta
        files = {
            path: "".join(f"{line.split('=', 1)[0]}={values[line.split('=', 1)[0]]}\n"
                          for line in text.splitlines())
            for path, text in self.world.files.items()
        }  # fmt: skip
        return values[key], {**meta, "files": files}


@dataclasses.dataclass(frozen=True)
class FindValueFamily(_KeyFamily):
    """`Q: value of KEY ?`: look the key up, then `answer VALUE` (echo.md section 8.1's episode)."""

    max_turns: int = 3
    name: str = "terminal_find_value"
    task_id: ClassVar[int] = 0
    min_turns: ClassVar[int] = 2

    def _task(self, instance: tuple[str, dict[str, str] | None]) -> tuple[str, str, dict]:
        answer, meta = self._key_task(instance)
        return f"Q: value of {meta['key']} ?", answer, meta

    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Reward 1 iff the answer is exactly the key's value."""
        return _judge_answer(answer, task.answer)

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """`grep KEY FILE` or `cat FILE` (after any mistakes), then `answer VALUE`."""
        key, name = task.meta["key"], task.meta["file"]
        steps = [
            _lookup_mistake(self, key, name, rng) for _ in range(self._mistake_slots(rng, noise))
        ]
        steps += [
            _lookup(key, name, rng),
            (f"The value of {key} is {task.answer}.", f"answer {task.answer}"),
        ]
        return [act(*step) for step in steps]


@dataclasses.dataclass(frozen=True)
class WriteValueFamily(_KeyFamily):
    """`Q: write the value of KEY to /data/out.txt`: look up, `echo VALUE > /data/out.txt`."""

    max_turns: int = 4
    name: str = "terminal_write_value"
    task_id: ClassVar[int] = 1
    min_turns: ClassVar[int] = 3

    def _task(self, instance: tuple[str, dict[str, str] | None]) -> tuple[str, str, dict]:
        answer, meta = self._key_task(instance)
        return f"Q: write the value of {meta['key']} to {OUT_FILE}", answer, meta

    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Reward 1 iff /data/out.txt holds the value (one trailing newline allowed)."""
        text = backend.read_file(OUT_FILE)
        if text is None:
            return Verdict(0.0, {"reason": f"missing: {OUT_FILE} is not a file"})
        if text.removesuffix("\n") != task.answer:
            return Verdict(
                0.0, {"reason": f"wrong: {OUT_FILE} holds {text!r}, expected {task.answer!r}"}
            )
        return Verdict(1.0, {"reason": "correct"})

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """Look the key up, write the value with `echo`, then `answer done`."""
        key, name, value = task.meta["key"], task.meta["file"], task.answer
        steps = [
            _lookup_mistake(self, key, name, rng) for _ in range(self._mistake_slots(rng, noise))
        ]
        steps += [
            _lookup(key, name, rng),
            (f"The value is {value}; write it.", f"echo {value} > {OUT_FILE}"),
            _DONE,
        ]
        return [act(*step) for step in steps]


@dataclasses.dataclass(frozen=True)
class BackupFileFamily(TerminalFamily):
    """`Q: copy FILE into a new directory /data/DIR`: `mkdir`, then `cp`."""

    max_turns: int = 4
    name: str = "terminal_backup_file"
    task_id: ClassVar[int] = 2
    min_turns: ClassVar[int] = 3

    def _draw(self, rng: np.random.Generator) -> tuple[str, tuple[str, str]]:
        name = self.world.file_names[int(rng.integers(self.num_files))]
        directory = f"{_DIR_WORDS[int(rng.integers(len(_DIR_WORDS)))]}{int(rng.integers(10))}"
        return f"world{self.seed}/{name}->{directory}", (name, directory)

    def _task(self, instance: tuple[str, str]) -> tuple[str, str, dict]:
        name, directory = instance
        target = f"{ROOT}/{directory}/{name}"
        return (
            f"Q: copy {name} into a new directory {ROOT}/{directory}",
            target,
            {"file": name, "dir": directory},
        )

    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Reward 1 iff /data/DIR/FILE equals the original and the original is unchanged."""
        original = self.world.files[f"{ROOT}/{task.meta['file']}"]
        if backend.read_file(f"{ROOT}/{task.meta['file']}") != original:
            return Verdict(0.0, {"reason": f"wrong: {task.meta['file']} was moved or changed"})
        copy = backend.read_file(task.answer)
        if copy != original:
            found = "missing" if copy is None else f"holds {copy!r}"
            return Verdict(0.0, {"reason": f"wrong: {task.answer} is {found}, expected a copy"})
        return Verdict(1.0, {"reason": "correct"})

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """`mkdir /data/DIR`, `cp FILE /data/DIR`, `answer done`; mistakes: a misspelt command,
        or copying a wrong file into the new directory first (harmless to the verdict)."""
        name, directory = task.meta["file"], f"{ROOT}/{task.meta['dir']}"
        steps = [(f"Create {directory} first.", f"mkdir {directory}"),
                 (f"Copy {name} into it.", f"cp {name} {directory}")]  # fmt: skip
        for _ in range(self._mistake_slots(rng, noise)):
            if rng.random() < 0.5:
                wrong = other(self.world.file_names, name, rng)
                steps.insert(len(steps) - 1, (f"Copy {wrong} into it.", f"cp {wrong} {directory}"))
            else:
                slot = int(rng.integers(len(steps)))
                steps.insert(slot, (steps[slot][0], typo(steps[slot][1], rng)))
        return [act(*step) for step in steps + [_DONE]]


@dataclasses.dataclass(frozen=True)
class AppendLineFamily(TerminalFamily):
    """`Q: add the line NEW=VAL to FILE`: `echo NEW=VAL >> FILE`; no other world file may change."""

    max_turns: int = 3
    name: str = "terminal_append_line"
    task_id: ClassVar[int] = 3
    min_turns: ClassVar[int] = 2

    def _draw(self, rng: np.random.Generator) -> tuple[str, tuple[str, str]]:
        name = self.world.file_names[int(rng.integers(self.num_files))]
        value = "".join(VALUE_ALPHABET[c] for c in rng.integers(len(VALUE_ALPHABET), size=4))
        line = f"n{int(rng.integers(100)):02d}={value}"
        return f"world{self.seed}/{name}+{line}", (name, line)

    def _task(self, instance: tuple[str, str]) -> tuple[str, str, dict]:
        name, line = instance
        expected = self.world.files[f"{ROOT}/{name}"] + line + "\n"
        return f"Q: add the line {line} to {name}", expected, {"file": name, "line": line}

    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Reward 1 iff FILE is its original text plus the line, and no other world file changed."""
        target = f"{ROOT}/{task.meta['file']}"
        text = backend.read_file(target)
        if text != task.answer:
            return Verdict(
                0.0, {"reason": f"wrong: {target} holds {text!r}, expected {task.answer!r}"}
            )
        changed = [
            p
            for p, original in self.world.files.items()
            if p != target and backend.read_file(p) != original
        ]
        if changed:
            return Verdict(0.0, {"reason": f"wrong: other files changed: {changed}"})
        return Verdict(1.0, {"reason": "correct"})

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """`echo NEW=VAL >> FILE`, `answer done`; mistakes: a misspelt `echo` (bash opens the
        `>>` target first, which leaves it unchanged), or a look at a wrong file."""
        name, line = task.meta["file"], task.meta["line"]
        command = f"echo {line} >> {name}"
        steps = []
        for _ in range(self._mistake_slots(rng, noise)):
            if rng.random() < 0.5:
                steps.append((f"Append the line to {name}.", typo(command, rng)))
            else:
                steps.append(
                    (
                        "Look at the file first.",
                        f"tail -n 2 {other(self.world.file_names, name, rng)}",
                    )
                )
        return [act(*step) for step in steps + [(f"Append the line to {name}.", command), _DONE]]


@dataclasses.dataclass(frozen=True)
class CountFilesFamily(TerminalFamily):
    """`Q: how many files are in /data/inbox ?`: `ls /data/inbox`, then `answer N` (0-8 files)."""

    max_turns: int = 3
    max_files: int = 8
    name: str = "terminal_count_files"
    task_id: ClassVar[int] = 4
    min_turns: ClassVar[int] = 2

    def _draw(self, rng: np.random.Generator) -> tuple[str, list[str]]:
        pool = [f"{word}{digit}.txt" for word in _INBOX_WORDS for digit in range(10)]
        count = int(rng.integers(self.max_files + 1))
        names = sorted(pool[i] for i in rng.choice(len(pool), size=count, replace=False))
        return "inbox:" + ",".join(names), names

    def _task(self, names: list[str]) -> tuple[str, int, dict]:
        files = {f"{INBOX}/{name}": f"{name}\n" for name in names}
        return f"Q: how many files are in {INBOX} ?", len(names), {"files": files, "dirs": [INBOX]}

    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Reward 1 iff the answer is the integer count."""
        return _judge_answer(answer, str(task.answer), integer=True)

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """`ls /data/inbox`, then `answer N`; mistakes: `ls /data` (wrong place), or a misspelt ls."""
        command = f"ls {INBOX}"
        actions = [
            act("List the inbox.", typo(command, rng))
            if rng.random() < 0.5
            else act("List the files.", f"ls {ROOT}")
            for _ in range(self._mistake_slots(rng, noise))
        ]
        answer = act(f"There are {task.answer} files.", f"answer {task.answer}")
        return actions + [act("List the inbox.", command), answer]


@dataclasses.dataclass(frozen=True)
class SumNumbersFamily(TerminalFamily):
    """`Q: sum of the numbers in /data/numbers.txt ?`: `cat` it, then `answer SUM` (3-6 numbers, 1-99)."""

    max_turns: int = 3
    name: str = "terminal_sum_numbers"
    task_id: ClassVar[int] = 5
    min_turns: ClassVar[int] = 2

    def _draw(self, rng: np.random.Generator) -> tuple[str, list[int]]:
        numbers = [int(n) for n in rng.integers(1, 100, size=int(rng.integers(3, 7)))]
        return "numbers:" + ",".join(map(str, numbers)), numbers

    def _task(self, numbers: list[int]) -> tuple[str, int, dict]:
        files = {NUMBERS_FILE: "".join(f"{n}\n" for n in numbers)}
        return f"Q: sum of the numbers in {NUMBERS_FILE} ?", sum(numbers), {"files": files}

    def judge(self, task: Task, backend: TerminalBackend, answer: str | None) -> Verdict:
        """Reward 1 iff the answer is the integer sum."""
        return _judge_answer(answer, str(task.answer), integer=True)

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """`cat /data/numbers.txt`, then `answer SUM`; mistakes: `cat` of a wrong file, or a misspelt cat."""
        command = f"cat {NUMBERS_FILE}"
        actions = []
        for _ in range(self._mistake_slots(rng, noise)):
            wrong = f"cat {self.world.file_names[int(rng.integers(self.num_files))]}"
            actions.append(
                act("Read the numbers.", typo(command, rng) if rng.random() < 0.5 else wrong)
            )
        answer = act(f"They sum to {task.answer}.", f"answer {task.answer}")
        return actions + [act("Read the numbers.", command), answer]


FAMILIES = {
    family.name: family
    for family in (
        FindValueFamily,
        WriteValueFamily,
        BackupFileFamily,
        AppendLineFamily,
        CountFilesFamily,
        SumNumbersFamily,
    )
}


def _lookup(key: str, name: str, rng: np.random.Generator) -> tuple[str, str]:
    """(thought, command) reading KEY from file `name`: `grep KEY NAME` or `cat NAME`."""
    return f"{key} is in {name}.", f"grep {key} {name}" if rng.random() < 0.5 else f"cat {name}"


def _lookup_mistake(
    family: TerminalFamily, key: str, name: str, rng: np.random.Generator
) -> tuple[str, str]:
    """A lookup in a wrong file, or the right lookup misspelt."""
    if rng.random() < 0.5:
        return _lookup(key, other(family.world.file_names, name, rng), rng)
    thought, command = _lookup(key, name, rng)
    return thought, typo(command, rng)


def _judge_answer(answer: str | None, expected: str, *, integer: bool = False) -> Verdict:
    if answer is None:
        return Verdict(0.0, {"reason": "no answer: the episode ended without `answer V`"})
    if integer and not _INTEGER.fullmatch(answer):
        return Verdict(0.0, {"reason": f"malformed: answer {answer!r} is not an integer"})
    if (int(answer) if integer else answer) != (int(expected) if integer else expected):
        return Verdict(0.0, {"reason": f"wrong: expected {expected!r}, got {answer!r}"})
    return Verdict(1.0, {"reason": "correct"})
