"""Hidden-key search with checker feedback: Anti-SD's deliberation task (anti_sd.md section 8).

A lock id hides a key k* in 0..N-1 (a hash of the seed and the lock: the policy cannot read it
off the prompt, it has to search). Each assistant turn is `WAIT* TRY a` or `WAIT* ANSWER a`: WAIT
is deliberation (keep searching), `TRY a` gets the observation `YES` or `NO`, `ANSWER a` ends the
episode. Reward 1 iff the answer is k*. Tries beyond the budget (`max_tries`, at least N/2; default
N) are refused with a warning, as is any malformed action; the episode also ends at `max_turns`.

    family = KeySearchFamily(num_keys=8)                 # or registry.make("keysearch", num_keys=8)
    task = family.generate("train", 0)                   # "LOCK 0427 KEYS 0-7 TRIES 8"
    episode = family.start(task)
    episode.step("WAIT TRY 3").text                      # "NO"

Warm start (section 8): student-mode traces search systematically with a WAIT before every TRY
(`expert_actions` on a plain task; with probability `noise` the trace answers early, before finding
the key, guessing among the untried keys); teacher-mode traces answer a task whose prompt carries
the privileged block (`teacher_task`) by going straight to `TRY k*`, `ANSWER k*` with no WAIT (with
probability `noise` one wrong try first). `teacher_context` is the text of the self-teacher's
context (ASD-7; `rljax.rollout.teacher.build_teacher_batch` tokenises it for the trainer): the
prompt, then `SOL <solution>` and `CORRECT`/`INCORRECT`, the solution being a correct peer's
TRY/ANSWER trace with feedback (WAITs, the deliberation, stripped) or the reference
`TRY k* YES ANSWER k*`.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
import re

import numpy as np

from rljax.envs import registry
from rljax.envs.base import Observation, Task, Verdict, check_split
from rljax.envs.replay import replay

_SOLUTION_TOKENS = re.compile(r"\b(?:TRY \d+|ANSWER \d+|YES|NO)\b")
TEACHER_MODE = "teacher"


class KeySearchEpisode:
    """One hidden-key search (an `Episode`).

    Args:
        key: the hidden key k*.
        num_keys: N; keys are 0..N-1.
        max_tries: TRY budget.
        max_turns: turn limit, the answer included.
    """

    def __init__(self, key: int, *, num_keys: int, max_tries: int, max_turns: int):
        self._key, self.num_keys, self.max_tries, self.max_turns = (
            key,
            num_keys,
            max_tries,
            max_turns,
        )
        self.turns = self.tries = self.waits = 0
        self.found = False
        self.answer: int | None = None
        self.answered_before_yes = False
        self.done = False

    def step(self, action: str) -> Observation:
        """Applies one action: `YES`/`NO` after a TRY, an empty done observation after ANSWER.

        Args:
            action: the text of one assistant turn.

        Returns:
            The observation; malformed or over-budget actions get a warning and change nothing.
        """
        if self.done:
            raise RuntimeError(f"the episode is over after {self.turns} turns; start a new one")
        self.turns += 1
        words = action.split()
        command, value, problem = self._parse(words)
        text, warning = "", problem
        if command == "ANSWER":
            self.waits += len(words) - 2
            self.answer, self.answered_before_yes, self.done = value, not self.found, True
            return Observation("", "", True)
        if command == "TRY" and self.tries >= self.max_tries:
            warning = f"try budget spent ({self.max_tries} tries): ANSWER now"
        elif command == "TRY":
            self.waits += len(words) - 2
            self.tries += 1
            self.found |= value == self._key
            text = "YES" if value == self._key else "NO"
        self.done = self.turns >= self.max_turns
        return Observation(text, warning, self.done)

    def _parse(self, words: list[str]) -> tuple[str | None, int | None, str]:
        expected = (
            f"expected `WAIT ... TRY a` or `WAIT ... ANSWER a` with a in 0..{self.num_keys - 1}"
        )
        if (
            len(words) < 2
            or words[-2] not in ("TRY", "ANSWER")
            or any(w != "WAIT" for w in words[:-2])
        ):
            return None, None, f"malformed action {' '.join(words)[:60]!r}: {expected}"
        if not words[-1].isdigit() or int(words[-1]) >= self.num_keys:
            return None, None, f"key {words[-1]!r} is not in 0..{self.num_keys - 1}: {expected}"
        return words[-2], int(words[-1]), ""

    def verdict(self) -> Verdict:
        """Reward 1 iff the answer is the key.

        Returns:
            The verdict; `info` holds "reason", "tries", "waits", "turns" and "premature" (an answer
            before any YES).
        """
        info = {
            "tries": self.tries,
            "waits": self.waits,
            "turns": self.turns,
            "premature": self.answer is not None and self.answered_before_yes,
        }
        if self.answer is None:
            return Verdict(0.0, {"reason": "no answer: the episode ended without ANSWER", **info})
        if self.answer != self._key:
            return Verdict(
                0.0, {"reason": f"wrong: answered {self.answer}, the key is {self._key}", **info}
            )
        return Verdict(1.0, {"reason": "correct", **info})


@dataclasses.dataclass(frozen=True)
class KeySearchFamily:
    """Hidden-key search tasks (a `MultiTurnFamily`) with Anti-SD's teacher context.

    Attributes:
        num_keys: N, keys 0..N-1 (section 8: 8-16).
        max_tries: TRY budget, in [ceil(N/2), N] (None: N, so systematic search always succeeds).
        max_turns: episode turn limit (None: max_tries + 1, every try plus the answer).
        lock_digits: digits of the lock id (10**lock_digits locks).
        seed: hides the keys and seeds the instances.
        heldout_fraction: share of locks (by content hash) reserved for "heldout".
        system: system-turn text of every task (None: no system turn).
        name: family name, the first field of every uid.
    """

    num_keys: int = 8
    max_tries: int | None = None
    max_turns: int | None = None
    lock_digits: int = 4
    seed: int = 0
    heldout_fraction: float = 0.2
    system: str | None = None
    name: str = "keysearch"

    def __post_init__(self):
        if not isinstance(self.num_keys, int) or not 2 <= self.num_keys <= 100:
            raise ValueError(f"num_keys must be an int in [2, 100], got {self.num_keys!r}")
        tries = self.num_keys if self.max_tries is None else self.max_tries
        if not isinstance(tries, int) or not math.ceil(self.num_keys / 2) <= tries <= self.num_keys:
            raise ValueError(
                f"max_tries must be an int in [{math.ceil(self.num_keys / 2)}, {self.num_keys}] "
                f"(at least N/2, anti_sd.md section 8), got {self.max_tries!r}"
            )
        turns = tries + 1 if self.max_turns is None else self.max_turns
        if not isinstance(turns, int) or turns < 2:
            raise ValueError(f"max_turns must be an int >= 2, got {self.max_turns!r}")
        if not isinstance(self.lock_digits, int) or not 2 <= self.lock_digits <= 8:
            raise ValueError(f"lock_digits must be an int in [2, 8], got {self.lock_digits!r}")
        registry.check_heldout_fraction(self.heldout_fraction)
        object.__setattr__(self, "max_tries", tries)
        object.__setattr__(self, "max_turns", turns)

    def key_of(self, lock: int) -> int:
        """The hidden key of a lock.

        Args:
            lock: the lock id.

        Returns:
            SHA-256 of "keysearch/{seed}/{lock}" (first 8 bytes, big-endian) modulo N.
        """
        digest = hashlib.sha256(f"keysearch/{self.seed}/{lock}".encode("utf-8")).digest()
        return int.from_bytes(digest[:8], "big") % self.num_keys

    def generate(self, split: str, index: int) -> Task:
        """Returns task `index` of `split`: prompt "LOCK dddd KEYS 0-(N-1) TRIES m", answer k*.

        Args:
            split: "train" or "heldout" (disjoint: the split is a hash of the lock).
            index: any non-negative int.

        Returns:
            The task; `meta` holds the lock and the mode ("student").
        """
        check_split(split)

        def draw(rng: np.random.Generator) -> tuple[str, int]:
            lock = int(rng.integers(10**self.lock_digits))
            return f"keysearch{self.seed}/{lock}", lock

        lock = registry.sample_in_split(
            draw, seed=self.seed, split=split, index=index, heldout_fraction=self.heldout_fraction
        )
        prompt = (
            f"LOCK {lock:0{self.lock_digits}d} KEYS 0-{self.num_keys - 1} TRIES {self.max_tries}"
        )
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=prompt,
            answer=self.key_of(lock),
            system=self.system,
            meta={"lock": lock, "mode": "student"},
        )

    def start(self, task: Task) -> KeySearchEpisode:
        """Starts an episode.

        Args:
            task: a task of this family (either mode).

        Returns:
            The episode.
        """
        self._check_task(task)
        return KeySearchEpisode(
            task.answer, num_keys=self.num_keys, max_tries=self.max_tries, max_turns=self.max_turns
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Replays a response one action per line (e.g. `expert()`'s).

        Args:
            task: a task of this family.
            response: the actions, one per line.

        Returns:
            The verdict of the replayed episode.
        """
        return replay(self.start(task), response.splitlines())

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """The scripted expert as one response.

        Args:
            task: a task of this family.
            rng: the expert's randomness.
            noise: the flaw probability in [0, 1].

        Returns:
            `expert_actions` joined by newlines (`verify` replays them).
        """
        return "\n".join(self.expert_actions(task, rng, noise))

    def expert_actions(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> list[str]:
        """Student-mode or, for a `teacher_task`, teacher-mode actions (see the module docstring).

        Args:
            task: a task of this family (plain: student mode; from `teacher_task`: teacher mode).
            rng: the expert's randomness.
            noise: probability of the scripted flaw (an early answer; a wrong first try), in [0, 1].

        Returns:
            The actions, one per turn, ending with the answer.
        """
        self._check_task(task)
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        key = task.answer
        if task.meta["mode"] == TEACHER_MODE:
            wrong = [k for k in range(self.num_keys) if k != key]
            first = [f"TRY {wrong[int(rng.integers(len(wrong)))]}"] if rng.random() < noise else []
            return first + [f"TRY {key}", f"ANSWER {key}"]
        start = int(rng.integers(self.num_keys))
        order = [(start + i) % self.num_keys for i in range(self.num_keys)]
        position = order.index(key)
        tries = min(position + 1, self.max_tries)
        if rng.random() < noise:
            tries = int(
                rng.integers(min(position, self.max_tries) + 1)
            )  # stop before reaching the key
        actions = [f"WAIT TRY {k}" for k in order[:tries]]
        if tries and order[tries - 1] == key:
            return actions + [f"ANSWER {key}"]
        untried = order[tries:]
        return actions + [f"ANSWER {untried[int(rng.integers(len(untried)))]}"]

    # -- Anti-SD teacher context (ASD-7) -------------------------------------------------------

    def reference_solution(self, task: Task) -> str:
        """The dataset reference solution.

        Args:
            task: a task of this family.

        Returns:
            "TRY k* YES ANSWER k*".
        """
        return f"TRY {task.answer} YES ANSWER {task.answer}"

    def solution_text(self, response: str) -> str:
        """A peer's solution: its response with the deliberation stripped.

        Args:
            response: the peer's response text (actions and observations joined by spaces).

        Returns:
            Its TRY/ANSWER actions and YES/NO feedback in order, e.g. "TRY 3 NO TRY 5 YES ANSWER 5".
        """
        return " ".join(_SOLUTION_TOKENS.findall(response))

    def privileged_prompt(self, task: Task, solution: str, correct: bool) -> str:
        """The teacher's user turn (section 8's compact form of the ASD-7 block).

        Args:
            task: the student's task.
            solution: the verified solution text.
            correct: whether the student's own attempt was correct.

        Returns:
            "{prompt}\nSOL {solution}\nCORRECT" (or INCORRECT).
        """
        return f"{task.prompt}\nSOL {solution}\n{'CORRECT' if correct else 'INCORRECT'}"

    def teacher_context(self, task: Task, peer: str | None, correct: bool) -> str:
        """What the self-teacher reads before the student's response (ASD-7).

        Args:
            task: the student's task.
            peer: a correct peer's response text, or None when the group has no correct rollout.
            correct: whether the student's own attempt was correct.

        Returns:
            `privileged_prompt` with the peer's `solution_text`, else the `reference_solution`.
        """
        solution = self.reference_solution(task) if peer is None else self.solution_text(peer)
        return self.privileged_prompt(task, solution, correct)

    def teacher_task(self, task: Task, solution: str | None = None, correct: bool = False) -> Task:
        """`task` with the privileged block in its prompt (teacher mode, for warm-start traces).

        Args:
            task: a plain task of this family.
            solution: the solution shown (None: the reference solution).
            correct: the feedback shown.

        Returns:
            The teacher-mode task (same key; uid suffixed "/teacher").
        """
        self._check_task(task)
        solution = self.reference_solution(task) if solution is None else solution
        return dataclasses.replace(
            task,
            uid=f"{task.uid}/teacher",
            prompt=self.privileged_prompt(task, solution, correct),
            meta={**task.meta, "mode": TEACHER_MODE},
        )

    def warm_start_tasks(self, num_tasks: int, *, teacher_fraction: float = 0.5) -> list[Task]:
        """Section 8's warm-start mixture of student-mode and teacher-mode tasks.

        Args:
            num_tasks: training tasks 0..num_tasks-1.
            teacher_fraction: probability that a task is shown in teacher mode (reference solution,
                random feedback), in [0, 1].

        Returns:
            The tasks, deterministic in the seed.
        """
        if not 0.0 <= teacher_fraction <= 1.0:
            raise ValueError(f"teacher_fraction must be in [0, 1], got {teacher_fraction!r}")
        rng = np.random.default_rng([self.seed, 0x5F7])
        tasks = []
        for i in range(num_tasks):
            task = self.generate("train", i)
            teacher, correct = rng.random() < teacher_fraction, rng.random() < 0.5
            tasks.append(self.teacher_task(task, correct=bool(correct)) if teacher else task)
        return tasks

    def _check_task(self, task: Task) -> None:
        if task.family != self.name or task.meta.get("mode") not in ("student", TEACHER_MODE):
            raise ValueError(
                f"task {task.uid!r} (family {task.family!r}) does not belong to family {self.name!r}"
            )
