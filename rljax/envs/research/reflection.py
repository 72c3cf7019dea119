"""Reflections, their judge and the reflection bank (rubric_em.md REM-10, REM-11, section 8.1).

A reflection answers the prompt `<reflect> <query> ... </query> TRAJECTORY` with exactly

    <reflection_rubrics> [REQ e a]* [PITFALL blog|dup|premature|dishonest]* </reflection_rubrics>
    <reflection_takeaways> [LESSON ...]{1..4} </reflection_takeaways>

where a lesson is `SEARCH e a`, `AVOID blog`, `CHECK e a` or the generic `CAREFUL`. The judge
(section 8.1) knows the trajectory's true failure set: diag = F1 between the reflection's REQ and
PITFALL items and that set (1 when both are empty); spec = share of items that name an entity or a
specific pitfall (only `CAREFUL` does not); scope = (categories present among REQ, PITFALL, LESSON)
/ 3 - 0.1 per repeated item, clipped to [0, 1]; u = `reflection_utility` (0.4 diag + 0.3 spec +
0.3 scope; 0 when malformed).

The bank keeps, per question, the best valid reflection of its latest reflection round (it
overwrites the entry) and retrieves by exact question (within-episode) or the top-k most similar
other questions by Jaccard similarity of their token sets (cross-episode); retrieved reflections
enter the prompt as one `<ref> ... </ref>` block before the question.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Sequence

import numpy as np

from rljax.envs import metrics
from rljax.envs.base import Observation, Verdict
from rljax.envs.research.corpus import ATTRIBUTES
from rljax.losses.rubric_em import reflection_utility

PITFALLS = ("blog", "dup", "premature", "dishonest")
REFLECT_PREFIX = "<reflect>"
_RUBRICS = re.compile(r"<reflection_rubrics>(.*?)</reflection_rubrics>", re.S)
_TAKEAWAYS = re.compile(r"<reflection_takeaways>(.*?)</reflection_takeaways>", re.S)
_ITEM = re.compile(r"\[([^\[\]]*)\]")
_FACT = rf"E\d\d (?:{'|'.join(ATTRIBUTES)})"
_RUBRIC_ITEM = re.compile(rf"REQ {_FACT}|PITFALL (?:{'|'.join(PITFALLS)})")
_LESSON_ITEM = re.compile(rf"LESSON (?:SEARCH {_FACT}|AVOID blog|CHECK {_FACT}|CAREFUL)")
MAX_LESSONS = 4


@dataclasses.dataclass(frozen=True)
class Reflection:
    """A parsed reflection.

    Attributes:
        rubric_items: the REQ and PITFALL items, e.g. ("REQ E03 size", "PITFALL blog"), in order.
        lessons: the LESSON items, e.g. ("LESSON CHECK E03 size",), in order.
        valid: exactly the two blocks, in order, nothing else, well-formed items, 1-4 lessons.
        errors: why it is not valid (empty when valid).
    """

    rubric_items: tuple[str, ...]
    lessons: tuple[str, ...]
    valid: bool
    errors: tuple[str, ...] = ()


def parse_reflection(text: str) -> Reflection:
    """Parses a reflection (see the module docstring).

    Args:
        text: the generated reflection.

    Returns:
        The items found and whether the reflection is valid.
    """
    errors = []
    rubrics, takeaways = _RUBRICS.findall(text), _TAKEAWAYS.findall(text)
    if len(rubrics) != 1 or len(takeaways) != 1:
        errors.append(
            f"expected exactly one <reflection_rubrics> and one <reflection_takeaways> block, "
            f"got {len(rubrics)} and {len(takeaways)}"
        )
    elif text.find("<reflection_rubrics>") > text.find("<reflection_takeaways>"):
        errors.append("<reflection_rubrics> must come before <reflection_takeaways>")
    if _TAKEAWAYS.sub(" ", _RUBRICS.sub(" ", text)).strip():
        errors.append("text outside the two reflection blocks")
    rubric_items = _items(rubrics[0] if rubrics else "", _RUBRIC_ITEM, "reflection_rubrics", errors)
    lessons = _items(
        takeaways[0] if takeaways else "", _LESSON_ITEM, "reflection_takeaways", errors
    )
    if not 1 <= len(lessons) <= MAX_LESSONS:
        errors.append(f"expected 1 to {MAX_LESSONS} LESSON items, got {len(lessons)}")
    return Reflection(tuple(rubric_items), tuple(lessons), not errors, tuple(errors))


def _items(body: str, pattern: re.Pattern, block: str, errors: list[str]) -> list[str]:
    items = [" ".join(m.group(1).split()) for m in _ITEM.finditer(body)]
    bad = [item for item in items if not pattern.fullmatch(item)]
    if bad or _ITEM.sub(" ", body).strip():
        errors.append(f"malformed content in <{block}>: {bad or _ITEM.sub(' ', body).split()}")
    return [item for item in items if pattern.fullmatch(item)]


@dataclasses.dataclass(frozen=True)
class ReflectionScore:
    """The judge's scores of one reflection: the three dimensions, validity and utility u."""

    diagnostic: float
    specificity: float
    scope: float
    valid: bool
    utility: float


def score_reflections(texts: Sequence[str], failures: Sequence[str]) -> list[ReflectionScore]:
    """Judges the G_ref reflections of one trajectory (section 8.1's reflection judge).

    Args:
        texts: the candidate reflections.
        failures: the trajectory's true failure set (`ProgrammaticJudge.failures`), e.g.
            ["PITFALL dup", "REQ E03 size"].

    Returns:
        One `ReflectionScore` per text; u comes from `rljax.losses.reflection_utility`.
    """
    parsed = [parse_reflection(text) for text in texts]
    dims = np.array([_dimensions(r, failures) for r in parsed], np.float32).reshape(
        1, len(texts), 3
    )
    valid = np.array([[r.valid for r in parsed]])
    utility = np.asarray(reflection_utility(dims[..., 0], dims[..., 1], dims[..., 2], valid))[0]
    return [
        ReflectionScore(float(d[0]), float(d[1]), float(d[2]), r.valid, float(u))
        for d, r, u in zip(dims[0], parsed, utility)
    ]


def _dimensions(reflection: Reflection, failures: Sequence[str]) -> tuple[float, float, float]:
    diagnosed, truth = set(reflection.rubric_items), set(failures)
    diagnostic = (
        1.0 if not diagnosed and not truth else metrics.set_f1(sorted(diagnosed), sorted(truth))
    )
    items = reflection.rubric_items + reflection.lessons
    specificity = sum(item != "LESSON CAREFUL" for item in items) / len(items) if items else 0.0
    categories = {item.split()[0] for item in items}
    scope = len(categories) / 3 - 0.1 * (len(items) - len(set(items)))
    return diagnostic, specificity, float(np.clip(scope, 0.0, 1.0))


class ReflectionEpisode:
    """A reflection prompt played as one turn: the reflection, then its judged utility as reward.

    The rollout of a warm-start demonstration or of a probe samples reflections through it (the
    trainer's reflection phase judges its samples by group instead). `info` holds the judge's
    dimensions, and "stage_rewards" [0, 0, 0, 0]: a reflection is not a staged research response,
    and the zeros keep its rows stackable with research rows in one batch.

    Args:
        failures: the reflected trajectory's true failure set.
        num_stages: K of the research responses it is batched with.
    """

    def __init__(self, failures: Sequence[str], *, num_stages: int):
        self._failures, self._num_stages = list(failures), num_stages
        self._response: str | None = None

    def step(self, action: str) -> Observation:
        """Records the reflection; the episode is over."""
        if self._response is not None:
            raise RuntimeError("a reflection episode takes one turn")
        self._response = action
        return Observation("", done=True)

    def verdict(self) -> Verdict:
        """The reflection's judged utility u (0 before any turn or when malformed)."""
        score = score_reflections([self._response or ""], self._failures)[0]
        reason = "valid reflection" if score.valid else "malformed reflection"
        return Verdict(
            score.utility,
            {
                "reason": f"{reason}: utility {score.utility:.3f}",
                "reflection_valid": score.valid,
                "reflection_diagnostic": score.diagnostic,
                "reflection_specificity": score.specificity,
                "reflection_scope": score.scope,
                "stage_rewards": [0.0] * self._num_stages,
            },
        )


def _question_tokens(question: str) -> set[str]:
    """The token set of a question for bank similarity: its words without the <query> tags."""
    return set(question.split()) - {"<query>", "</query>"}


def _jaccard(a: set[str], b: set[str]) -> float:
    """|a & b| / |a | b| (0 for two empty sets)."""
    return len(a & b) / len(a | b) if a | b else 0.0


@dataclasses.dataclass(frozen=True)
class BankEntry:
    """The best reflection written for one question, and its judged utility."""

    question: str
    reflection: str
    utility: float


class ReflectionBank:
    """Best reflection per question; exact and similarity retrieval (REM-10, REM-11)."""

    def __init__(self):
        self._entries: dict[str, BankEntry] = {}

    def __len__(self) -> int:
        return len(self._entries)

    def write(
        self, question: str, reflections: Sequence[str], scores: Sequence[ReflectionScore]
    ) -> BankEntry | None:
        """Overwrites the question's entry with the best valid candidate (ties: the first).

        Args:
            question: the question text.
            reflections: the G_ref candidate reflections.
            scores: their judged scores (`score_reflections`).

        Returns:
            The new entry, or None (and the bank unchanged) when no candidate is valid.
        """
        if len(reflections) != len(scores):
            raise ValueError(
                f"reflections and scores must pair up, got {len(reflections)} and {len(scores)}"
            )
        valid = [i for i, score in enumerate(scores) if score.valid]
        if not valid:
            return None
        best = max(valid, key=lambda i: (scores[i].utility, -i))
        entry = BankEntry(question, reflections[best], scores[best].utility)
        self._entries[question] = entry
        return entry

    def exact(self, question: str) -> BankEntry | None:
        """Within-episode retrieval (exact question).

        Args:
            question: the question text.

        Returns:
            The question's own entry, or None.
        """
        return self._entries.get(question)

    def similar(self, question: str, top_k: int = 2) -> list[BankEntry]:
        """Cross-episode retrieval (similar questions).

        Args:
            question: the question text.
            top_k: how many entries (REM-11: 2).

        Returns:
            The entries of the `top_k` OTHER questions with the highest positive Jaccard similarity
            of question token sets (ties: question text order).
        """
        if top_k < 0:
            raise ValueError(f"top_k must be >= 0, got {top_k}")
        tokens = _question_tokens(question)
        scored = [
            (_jaccard(tokens, _question_tokens(q)), q) for q in self._entries if q != question
        ]
        ranked = sorted(
            (item for item in scored if item[0] > 0), key=lambda item: (-item[0], item[1])
        )
        return [self._entries[q] for _, q in ranked[:top_k]]

    def get_state(self) -> dict:
        """The bank as JSON-serialisable data.

        Returns:
            {question: {"reflection": str, "utility": float}}.
        """
        return {
            q: {"reflection": e.reflection, "utility": e.utility} for q, e in self._entries.items()
        }

    def set_state(self, state: dict) -> None:
        """Replaces the contents with saved data.

        Args:
            state: `get_state`'s data.
        """
        self._entries = {
            q: BankEntry(q, e["reflection"], float(e["utility"])) for q, e in state.items()
        }


def reference_block(entries: Sequence[BankEntry]) -> str:
    """The retrieved reflections as one prompt block.

    Args:
        entries: retrieved bank entries.

    Returns:
        "<ref> R1 R2 </ref>", or "" for no entry.
    """
    return f"<ref> {' '.join(e.reflection.strip() for e in entries)} </ref>" if entries else ""
