"""Context assembly for the long-context tasks: filler up to a length in tokens, interleaving.

A context is a list of lines joined by newlines. The task's own lines (the units) are mixed with
filler lines until the context holds at least the target number of tokens, as counted by the
caller's `count_tokens` (a run passes its policy tokenizer's, `rljax.data.token_counter`), then
shuffled: free units anywhere, ordered units (a story, a log whose order matters) in their
relative order at random positions.
"""

from __future__ import annotations

import dataclasses
from typing import Callable, Sequence

import numpy as np

_FIRST_CHUNK = 8


@dataclasses.dataclass(frozen=True)
class Unit:
    """One line a task needs in its context.

    Attributes:
        text: the line.
        ordered: keep this line's order relative to the other ordered units.
    """

    text: str
    ordered: bool = False


def build_context(
    rng: np.random.Generator,
    units: Sequence[Unit],
    filler: Callable[[], str],
    target_tokens: int,
    *,
    count_tokens: Callable[[str], int],
    max_tokens: int | None = None,
) -> tuple[list[str], int]:
    """Adds filler lines to the units until the context reaches `target_tokens`, then shuffles.

    Filler is drawn in chunks sized from the tokens per filler line seen so far; lines of the last
    chunk beyond the target are dropped. A context whose units alone exceed the target gets no
    filler. With `max_tokens`, filling stops before a line that would take the context past it
    (the units themselves must fit).

    Args:
        rng: the random stream (filler and shuffling).
        units: the task's lines.
        filler: draws one filler line (it must not change the task's gold answer).
        target_tokens: the minimum context length in tokens (>= 1), unless `max_tokens` stops the
            filling first.
        count_tokens: text -> number of tokens (no special tokens), e.g.
            `rljax.data.token_counter(tokenizer)`.
        max_tokens: the maximum context length in tokens (None: no maximum).

    Returns:
        (lines, num_tokens): the context lines in order and the context length in tokens, counted
        as the sum of the lines' counts plus one token per newline: exact for a tokenizer that
        merges nothing across a newline (the built-in one, and the usual BPE pre-tokenizers).
    """
    if not isinstance(target_tokens, int) or target_tokens < 1:
        raise ValueError(f"target_tokens must be an int >= 1, got {target_tokens!r}")
    total = context_length([u.text for u in units], count_tokens)
    if max_tokens is not None and total > max_tokens:
        raise ValueError(f"the units alone hold {total} tokens, more than max_tokens={max_tokens}")
    filler_lines: list[str] = []
    per_line = None
    full = False
    while total < target_tokens and not full:
        wanted = _FIRST_CHUNK if per_line is None else (target_tokens - total) // per_line + 1
        chunk = [filler() for _ in range(wanted)]
        counts = [count_tokens(line) for line in chunk]
        per_line = max(1, min(counts) + 1)
        for line, count in zip(chunk, counts):
            added = count + (1 if total else 0)
            full = max_tokens is not None and total + added > max_tokens
            if total >= target_tokens or full:
                break
            filler_lines.append(line)
            total += added
    free = [u.text for u in units if not u.ordered] + filler_lines
    ordered = [u.text for u in units if u.ordered]
    return interleave(rng, ordered, free), total


def context_length(lines: Sequence[str], count_tokens: Callable[[str], int]) -> int:
    """Tokens of lines joined by newlines: their counts plus one token per newline.

    Args:
        lines: the lines.
        count_tokens: text -> number of tokens.

    Returns:
        The length (0 for no lines).
    """
    return sum(count_tokens(line) for line in lines) + max(len(lines) - 1, 0)


def interleave(rng: np.random.Generator, ordered: Sequence[str], free: Sequence[str]) -> list[str]:
    """Shuffles `free` and inserts `ordered` at random positions, keeping its order.

    Args:
        rng: the random stream.
        ordered: lines whose relative order is kept.
        free: lines placed in random order.

    Returns:
        All lines, len(ordered) + len(free) of them.
    """
    size = len(ordered) + len(free)
    slots = set(int(i) for i in rng.choice(size, size=len(ordered), replace=False))
    shuffled = iter([free[int(i)] for i in rng.permutation(len(free))])
    in_order = iter(ordered)
    return [next(in_order) if i in slots else next(shuffled) for i in range(size)]
