"""The policy side of a rollout: the decode-session protocol and a `ScriptedSession` that replays text.

A decode session holds B growing token contexts (for a model: a KV cache). The rollout prefills the
rendered prompts, asks for one assistant turn per active row, and appends the rendered observations.
`rljax.sampling.DecodeSession` implements the protocol with a model; `ScriptedSession` implements it
by replaying given action texts, for tests and for expert demonstrations. Both return
`rljax.sampling.Generation` records.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Protocol, runtime_checkable

import transformers

from rljax.data.chat import ChatFormat, encode_action
from rljax.sampling.session import Generation


@runtime_checkable
class DecodeSessionProtocol(Protocol):
    """B token contexts that a policy extends; what `rollout` drives.

    `rljax.sampling.DecodeSession` implements it with a model and a KV cache.
    """

    def prefill(self, prompts: list[Sequence[int]]) -> None:
        """Starts row b's context with `prompts[b]` (one prompt per row)."""

    def generate(
        self,
        *,
        max_new_tokens: Sequence[int],
        stop_tokens: Sequence[Collection[int]],
        active: Sequence[bool],
    ) -> list[Generation]:
        """Extends each active row by up to `max_new_tokens[b]` ids, stopping after a stop token.

        The generated ids join the row's context. Inactive rows return an empty `Generation`.
        """

    def append(self, chunks: list[Sequence[int]]) -> None:
        """Appends `chunks[b]` to row b's context (an empty chunk leaves the row unchanged)."""

    @property
    def lengths(self) -> list[int]:
        """Current context length of every row."""

    def any_active(self, active: Sequence[bool]) -> bool:
        """Whether the rollout goes on: any row of the whole batch is active, given `active` of
        these rows (a session whose batch spans processes asks every process)."""


class ScriptedSession:
    """A decode session that replays fixed action texts, one per generate call and row.

    Row b's i-th `generate` returns `encode_action(actions[b][i])` (the text's ids plus the end
    token), cut after the first stop token and to `max_new_tokens[b]`; every log-prob is 0.0 (the
    script is deterministic). Used for tests and expert demonstrations.

    Args:
        tokenizer: any fast tokenizer.
        actions: [B] lists of action texts, one per assistant turn.
        max_len: context capacity of every row.
        fmt: the chat format whose end marker closes each action (None: the tokenizer's).
    """

    def __init__(
        self,
        tokenizer: transformers.PreTrainedTokenizerFast,
        actions: Sequence[Sequence[str]],
        *,
        max_len: int,
        fmt: ChatFormat | None = None,
    ):
        if max_len < 1:
            raise ValueError(f"max_len must be >= 1, got {max_len}")
        self._actions = [
            [encode_action(tokenizer, text, fmt=fmt) for text in row] for row in actions
        ]
        self._max_len = max_len
        self._contexts: list[list[int]] = []
        self._turns: list[int] = []

    @property
    def contexts(self) -> list[list[int]]:
        """Copies of every row's token context, as the policy sees it."""
        return [list(context) for context in self._contexts]

    @property
    def lengths(self) -> list[int]:
        return [len(context) for context in self._contexts]

    def any_active(self, active: Sequence[bool]) -> bool:
        return any(active)

    def prefill(self, prompts: list[Sequence[int]]) -> None:
        if len(prompts) != len(self._actions):
            raise ValueError(
                f"prefill got {len(prompts)} prompts, expected one per scripted row ({len(self._actions)})"
            )
        self._contexts = [[] for _ in prompts]
        self._turns = [0] * len(prompts)
        self.append(prompts)

    def generate(
        self,
        *,
        max_new_tokens: Sequence[int],
        stop_tokens: Sequence[Collection[int]],
        active: Sequence[bool],
    ) -> list[Generation]:
        batch = len(self._contexts)
        for name, value in (
            ("max_new_tokens", max_new_tokens),
            ("stop_tokens", stop_tokens),
            ("active", active),
        ):
            if len(value) != batch:
                raise ValueError(f"{name} has {len(value)} entries, expected batch size {batch}")
        out = []
        for b in range(batch):
            if not active[b]:
                out.append(Generation([], [], False))
                continue
            if self._turns[b] >= len(self._actions[b]):
                raise ValueError(
                    f"row {b} has no scripted action left after {self._turns[b]} turns"
                )
            tokens = self._actions[b][self._turns[b]]
            self._turns[b] += 1
            stop_at = next((i for i, tok in enumerate(tokens) if tok in stop_tokens[b]), None)
            if stop_at is not None:
                tokens = tokens[: stop_at + 1]
            stopped = stop_at is not None and stop_at < max_new_tokens[b]
            tokens = tokens[: max_new_tokens[b]]
            self._extend(b, tokens)
            out.append(Generation(list(tokens), [0.0] * len(tokens), stopped))
        return out

    def append(self, chunks: list[Sequence[int]]) -> None:
        if len(chunks) != len(self._contexts):
            raise ValueError(
                f"append got {len(chunks)} chunks, expected batch size {len(self._contexts)}"
            )
        for b, chunk in enumerate(chunks):
            self._extend(b, chunk)

    def _extend(self, b: int, tokens: Sequence[int]) -> None:
        if len(self._contexts[b]) + len(tokens) > self._max_len:
            raise ValueError(
                f"row {b} would grow to {len(self._contexts[b]) + len(tokens)} tokens, over max_len={self._max_len}"
            )
        self._contexts[b].extend(int(t) for t in tokens)
