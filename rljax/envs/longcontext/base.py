"""`CapabilityFamily`: what the nine long-context task families share (golongrl.md section 8).

A capability draws a *draft* (its own context lines, the question, the gold answer, the entities
that get near-duplicate distractors, and the values filler records must avoid). The family turns
it into a task: near-duplicate distractor records, filler records up to the context length knob,
shuffled, then `<q>` and the question. The split of an instance is the content hash of its draft
(units and question, not the filler), so held-out questions never appear in train.

Response format (golongrl.md 8.1, library form): `<think> ... </think>` then
`<answer> item \\n item ... </answer>`. The reward is 0 unless the response has exactly one
`</think>` and at most one `<think>` (`metrics.format_gate`); the text after `</think>` must end
with one `<answer>...</answer>` (`metrics.extract_answer`), whose lines are the answer items
scored by the capability's native metric.
"""

from __future__ import annotations

import abc
import dataclasses
from typing import Any, Callable, ClassVar, Collection, Mapping

import numpy as np

from rljax.envs import metrics, registry
from rljax.envs.base import Task, Verdict, check_split
from rljax.envs.longcontext import records
from rljax.envs.longcontext.context import Unit, build_context, context_length

_FULL_MARKS = 1.0 - 1e-9  # ROUGE-L's package variant gives 2 / (2 + 1e-12) for a perfect match
# Drafts drawn per candidate before giving up on fitting the context range and response budget.
_DRAFT_ATTEMPTS = 200
# Mistakes drawn before giving up on one that fits the response budget.
_MISTAKE_ATTEMPTS = 32
SYSTEM_PROMPT = (
    "Read the document, then answer the question after <q>. Think inside <think> ... </think>, "
    "then give the answer inside <answer> ... </answer>, one item per line."
)


@dataclasses.dataclass(frozen=True)
class Draft:
    """What a capability contributes to one task.

    Attributes:
        units: the capability's own context lines.
        question: the question text (after `<q>`).
        answer: the gold answer (JSON-serialisable: a str, an int or a list of str).
        entities: entity ids that get near-duplicate distractor records.
        avoid: attribute -> values no distractor or filler record may take.
        meta: capability data the expert needs (JSON-serialisable).
        thinking: what the expert writes inside `<think> ... </think>`: the intermediate fact the
            answer follows from (e.g. the last transfer of the asked item), or "" when the answer
            is read off the context directly.
    """

    units: tuple[Unit, ...]
    question: str
    answer: Any
    thinking: str = ""
    entities: tuple[str, ...] = ()
    avoid: Mapping[str, Collection[str]] = dataclasses.field(default_factory=dict)
    meta: dict = dataclasses.field(default_factory=dict)


def answer_text(answer: Any) -> str:
    """The text of a gold answer as the expert writes it: list items one per line.

    Args:
        answer: a str, an int, or a list of str.

    Returns:
        The answer text.
    """
    if isinstance(answer, list):
        return "\n".join(answer)
    return str(answer)


def expert_response(thinking: str, text: str) -> str:
    """The expert's response: `<think> THINKING </think>\n<answer>\nTEXT\n</answer>`.

    Args:
        thinking: the thinking text ("" gives `<think> </think>`).
        text: the answer text.

    Returns:
        The response.
    """
    inner = f"{thinking} " if thinking else ""
    return f"<think> {inner}</think>\n<answer>\n{text}\n</answer>"


@dataclasses.dataclass(frozen=True)
class CapabilityFamily(abc.ABC):
    """Base of the nine long-context task families.

    Attributes:
        context_tokens: context length in tokens of `count_tokens`, an int >= 1 or an inclusive
            range (lo, hi). An int is a minimum: the context has at least that many tokens (more
            when the task's own lines are longer). A range bounds every context: a target is drawn
            in it, filler goes up to the target but never past hi, a draft whose own lines would
            pass hi is redrawn (smaller structures: fewer transfers, listed entities, ...) and
            distractors that would pass it are left out, so a context holds at most hi tokens,
            and at least lo when hi - lo exceeds one record. About 29 built-in-tokenizer tokens per record, so
            the default holds ~10-30 records; scales to tens of thousands of tokens (ids widen
            past 1,000 tokens).
        response_tokens: the longest expert response (`expert`, mistakes included) in tokens of
            `count_tokens`, None for no limit. A run's generation budget counts the end token, so
            a run sets `task.max_new_tokens - 1`: a response the policy cannot generate in full is
            useless as a demonstration. Drafts whose correct response is longer are redrawn (fewer
            items in list answers), and so are longer mistakes.
        near_duplicates: distractor records per task whose ids are near-duplicates of the task's
            entities (digits swapped or off by one); 0 disables them.
        seed: family seed.
        heldout_fraction: share of the instance space (by content hash) reserved for "heldout".
        system: system-turn text of every task (e.g. `SYSTEM_PROMPT`; None: no system turn).
        name: family name, the first field of every uid.
        count_tokens: text -> number of tokens, which sizes the contexts (`generate` raises
            without it): the policy tokenizer's, `rljax.data.token_counter(tokenizer)`, which the
            trainer sets itself (`envs.base.with_token_counter`). Not part of equality.
    """

    context_tokens: int | tuple[int, int] = (300, 900)
    response_tokens: int | None = None
    near_duplicates: int = 2
    seed: int = 0
    heldout_fraction: float = 0.2
    system: str | None = None
    name: str = "longcontext"
    count_tokens: Callable[[str], int] | None = dataclasses.field(
        default=None, compare=False, repr=False
    )
    task_id: ClassVar[int]
    metric: ClassVar[str]

    def __post_init__(self):
        knob = self.context_tokens
        ok = isinstance(knob, int) and knob >= 1
        if (
            isinstance(knob, (tuple, list))
            and len(knob) == 2
            and all(isinstance(k, int) for k in knob)
        ):
            ok = 1 <= knob[0] <= knob[1]
            object.__setattr__(self, "context_tokens", tuple(knob))
        if not ok:
            raise ValueError(
                f"context_tokens must be an int >= 1 or a range (lo, hi) with "
                f"1 <= lo <= hi, got {knob!r}"
            )
        budget = self.response_tokens
        if budget is not None and (not isinstance(budget, int) or budget < 1):
            raise ValueError(f"response_tokens must be an int >= 1 or None, got {budget!r}")
        if not isinstance(self.near_duplicates, int) or self.near_duplicates < 0:
            raise ValueError(f"near_duplicates must be an int >= 0, got {self.near_duplicates!r}")
        registry.check_heldout_fraction(self.heldout_fraction)

    def generate(self, split: str, index: int) -> Task:
        """Returns instance `index` of `split`; same inputs, same task.

        Args:
            split: "train" or "heldout" (disjoint by the content hash of the draft).
            index: any non-negative int.

        Returns:
            The task: `prompt` = context lines, then `<q> QUESTION`; `task_id` = the capability
            index; `meta` holds "capability", "metric", "evidence" (the task's own lines, the
            hashed content with the question), "distractors" (near-duplicate records, as many
            of `near_duplicates` as fit under the context range), "context_tokens" (measured),
            "target_tokens", "thinking" (the expert's) and the capability's own fields.

        Raises:
            ValueError: the family has no `count_tokens`, or no draft fits `context_tokens` and
                `response_tokens` (the message names the smallest sizes drawn).
        """
        check_split(split)
        count_tokens = require_counter(self.name, self.count_tokens)
        draft, target, pool, rng = registry.sample_in_split(
            self._candidate,
            seed=self.seed,
            split=split,
            index=index,
            heldout_fraction=self.heldout_fraction,
        )
        cap = self._max_context()
        total = context_length([u.text for u in draft.units], count_tokens)
        distractors = []
        for _ in range(self.near_duplicates if draft.entities else 0):
            near = pool.near(draft.entities[int(rng.integers(len(draft.entities)))])
            if near is None:
                continue
            line = records.random_record(rng, near, avoid=draft.avoid).render()
            added = count_tokens(line) + 1
            if cap is None or total + added <= cap:
                distractors.append(line)
                total += added
        lines, num_tokens = build_context(
            rng,
            draft.units + tuple(Unit(d) for d in distractors),
            lambda: records.random_record(rng, pool.take(), avoid=draft.avoid).render(),
            target,
            count_tokens=count_tokens,
            max_tokens=cap,
        )
        meta = {
            "capability": self.capability,
            "metric": self.metric,
            "evidence": [u.text for u in draft.units],
            "distractors": distractors,
            "context_tokens": num_tokens,
            "target_tokens": target,
            "thinking": draft.thinking,
            **draft.meta,
        }
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt="\n".join(lines) + f"\n<q> {draft.question}",
            answer=draft.answer,
            task_id=self.task_id,
            system=self.system,
            meta=meta,
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Scores a response with the capability's native metric behind the format gate.

        Args:
            task: a task of this family.
            response: the full response.

        Returns:
            The verdict: reward = the metric in [0, 1]; `info` holds "reason" (starting with
            "correct", "partial", "wrong" or "malformed"), "metric" and, when scored, "score".
        """
        scored = metrics.format_gate(response)
        if scored is None:
            reason = "malformed: expected exactly one </think> and at most one <think>"
            return Verdict(0.0, {"reason": reason, "metric": self.metric})
        content, reason = metrics.extract_answer(scored)
        if content is None:
            return Verdict(0.0, {"reason": f"{reason} after </think>", "metric": self.metric})
        score = float(self.score(content, task.answer))
        verdict = "correct" if score >= _FULL_MARKS else "wrong" if score == 0.0 else "partial"
        return Verdict(
            score,
            {
                "reason": f"{verdict}: {self.metric} = {score:.6g}",
                "metric": self.metric,
                "score": score,
            },
        )

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """A scripted response; with probability `noise` its answer carries one realistic mistake.

        The thinking is the draft's (`meta["thinking"]`: a short intermediate fact, or nothing);
        a mistake always lowers the reward below 1 (see each capability's `mistake`) and is
        redrawn while its response is longer than `response_tokens`.

        Args:
            task: a task of this family.
            rng: randomness for the mistake.
            noise: probability of a mistake, in [0, 1].

        Returns:
            `<think> THINKING </think>\\n<answer>\\nANSWER\\n</answer>`.

        Raises:
            ValueError: bad `noise`, or no mistake of the task fits `response_tokens`.
        """
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        thinking = task.meta["thinking"]
        if rng.random() >= noise:
            return expert_response(thinking, answer_text(task.answer))
        for _ in range(_MISTAKE_ATTEMPTS):
            response = expert_response(thinking, self.mistake(task, rng))
            if self.response_tokens is None:
                return response
            if require_counter(self.name, self.count_tokens)(response) <= self.response_tokens:
                return response
        raise ValueError(
            f"no mistake of task {task.uid!r} in {_MISTAKE_ATTEMPTS} draws fits "
            f"response_tokens={self.response_tokens}"
        )

    @property
    def capability(self) -> str:
        """The capability name, `CAPABILITY_NAMES[task_id]`, e.g. "precise_retrieval"."""
        return CAPABILITY_NAMES[self.task_id]

    @abc.abstractmethod
    def score(self, content: str, answer: Any) -> float:
        """The capability's native metric (golongrl.md 8.1) of an answer against the gold.

        Overrides document only the metric; arguments and result are as here.

        Args:
            content: the answer text (between the answer tags), items one per line.
            answer: the gold answer, `Task.answer`.

        Returns:
            The score in [0, 1].
        """

    @abc.abstractmethod
    def mistake(self, task: Task, rng: np.random.Generator) -> str:
        """An answer text with one realistic mistake, which scores below 1.

        Overrides document only the mistakes; arguments and result are as here.

        Args:
            task: a task of this family.
            rng: randomness for the mistake.

        Returns:
            The mistaken answer text (items one per line).
        """

    @abc.abstractmethod
    def _draft(self, rng: np.random.Generator, pool: records.IdPool) -> Draft:
        """Draws the capability's lines, question and gold answer."""

    def _max_context(self) -> int | None:
        """The most tokens a context may hold: hi of a range, None for an int (a minimum)."""
        return None if isinstance(self.context_tokens, int) else self.context_tokens[1]

    def _candidate(
        self, rng: np.random.Generator
    ) -> tuple[str, tuple[Draft, int, records.IdPool, np.random.Generator]]:
        # The instance carries its stream on, so filler is drawn after the split is decided.
        count_tokens = require_counter(self.name, self.count_tokens)
        knob, cap = self.context_tokens, self._max_context()
        low, high = (knob, knob) if isinstance(knob, int) else knob
        smallest = (float("inf"), float("inf"))
        for _ in range(_DRAFT_ATTEMPTS):
            target = int(rng.integers(low, high + 1))
            pool = records.IdPool("E", records.id_width(target), rng)
            draft = self._draft(rng, pool)
            own = context_length([u.text for u in draft.units], count_tokens)
            response = count_tokens(expert_response(draft.thinking, answer_text(draft.answer)))
            if (cap is None or own <= cap) and (
                self.response_tokens is None or response <= self.response_tokens
            ):
                content = "\n".join(u.text for u in draft.units) + f"\n<q> {draft.question}"
                return content, (draft, target, pool, rng)
            smallest = (min(smallest[0], own), min(smallest[1], response))
        raise ValueError(
            f"{self.name}: no draft in {_DRAFT_ATTEMPTS} fits context_tokens={knob!r} (its own "
            f"lines at most {cap} tokens) and response_tokens={self.response_tokens!r} (the "
            f"expert response); the smallest drawn had {smallest[0]} context tokens and a "
            f"{smallest[1]}-token response: raise context_tokens or response_tokens"
        )


CAPABILITY_NAMES = (
    "precise_retrieval",
    "comprehension",
    "exhaustive_retrieval",
    "numerical_reasoning",
    "structured_extraction",
    "structured_matching",
    "graded_ranking",
    "sequence_ordering",
    "summarization",
)
"""The nine capabilities in task-id order (golongrl.md 8.2 rows 1-9 are task ids 0-8)."""


def require_counter(family: str, count_tokens: Callable[[str], int] | None) -> Callable[[str], int]:
    """`count_tokens`, or a ValueError naming `family` when it is None.

    Args:
        family: the family name, for the message.
        count_tokens: the family's token counter.

    Returns:
        The counter.
    """
    if count_tokens is None:
        raise ValueError(
            f"task family {family!r} sizes its contexts in tokens but has no count_tokens; build it "
            "with count_tokens=rljax.data.token_counter(tokenizer), the policy's tokenizer (the "
            "trainer sets it itself)"
        )
    return count_tokens


def draw_count(rng: np.random.Generator, low: int, high: int) -> int:
    """A uniform int in an inclusive range.

    Args:
        rng: the random stream.
        low: smallest value.
        high: largest value (>= low).

    Returns:
        The int.
    """
    return int(rng.integers(low, high + 1))


def other_value(rng: np.random.Generator, attribute: str, value: str) -> str:
    """A uniform value of an attribute other than a given one (for mistakes).

    Args:
        rng: the random stream.
        attribute: one of `records.ATTRIBUTES`.
        value: the value to avoid.

    Returns:
        The other value.
    """
    choices = [v for v in records.VALUES[attribute] if v != value]
    return choices[int(rng.integers(len(choices)))]
