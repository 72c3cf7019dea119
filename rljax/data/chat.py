"""Chat rendering: conversations -> token ids plus a per-token role (the source of every rollout mask).

A conversation is a list of `Turn`s (system, user, assistant, observation). Rendering tokenises each
segment (a role header, a turn's content, an end marker, a warning block...) separately and
concatenates the ids, so the role of every token is exact for any tokenizer: no token ever straddles
two segments. With the built-in byte-level BPE this also means merges never cross a segment boundary;
the rendered ids can therefore differ from encoding the joined text in one call, and rollouts always
use the segment-wise ids.

Layout with the default `ChatFormat` (roles in brackets):

    <|bos|>[T]
    <|system|>[T] system text[SYSTEM] <|end|>[T]
    <|user|>[T] user text[USER] <|end|>[T]
    <|assistant|>[T] action text[ACTION] <|end|>[ACTION]             # the policy emits its <|end|>
    <|observation|>[T] WARNINGS:\n- W1\n\n[WARNING] env text[ENV] <|end|>[T]
    <|assistant|>[T] ...                                             # generation prompt

Observation warnings follow echo.md section 8.1: a non-empty warning string (one warning per line)
is rendered as the prefix `WARNINGS:\n- W1\n- W2\n\n` inside the observation, and its tokens carry
role WARNING; the observation's header and end marker are chat glue (TEMPLATE) and in no mask.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Sequence
from typing import NamedTuple

import numpy as np
import transformers

TURN_ROLES = ("system", "user", "assistant", "observation")


class Role(enum.IntEnum):
    """Provenance of one rendered token."""

    TEMPLATE = 0  # chat glue: bos, role headers, end markers of non-assistant turns, separators
    SYSTEM = 1
    USER = 2
    ACTION = 3  # assistant content including its closing end marker
    ENV = 4  # observation content
    WARNING = 5  # harness warnings inside an observation


@dataclasses.dataclass(frozen=True)
class ChatFormat:
    """The glue strings of a chat template.

    Attributes:
        bos: text opening a conversation ("" for none).
        headers: role name -> header text opening a turn of that role (all of TURN_ROLES).
        end: end-of-turn marker; must encode to exactly one token (the generation stop token).
        separator: glue after each end marker ("" for none); after an assistant turn it is emitted
            with the next turn, since the policy stops generating at `end`.
    """

    bos: str = "<|bos|>"
    headers: dict = dataclasses.field(
        default_factory=lambda: {
            "system": "<|system|>",
            "user": "<|user|>",
            "assistant": "<|assistant|>",
            "observation": "<|observation|>",
        }
    )
    end: str = "<|end|>"
    separator: str = ""

    def __post_init__(self):
        if set(self.headers) != set(TURN_ROLES):
            raise ValueError(
                f"ChatFormat.headers must have keys {TURN_ROLES}, got {sorted(self.headers)}"
            )


DEFAULT_FORMAT = ChatFormat()


@dataclasses.dataclass(frozen=True)
class Turn:
    """One conversation turn.

    Attributes:
        role: one of "system", "user", "assistant", "observation".
        text: the turn's content (for an observation: the environment text).
        warning: observation only: harness warnings, one per line ("" for none).
    """

    role: str
    text: str
    warning: str = ""

    def __post_init__(self):
        if self.role not in TURN_ROLES:
            raise ValueError(f"Turn.role must be one of {TURN_ROLES}, got {self.role!r}")
        if self.warning and self.role != "observation":
            raise ValueError(
                f"Turn.warning is only allowed on observation turns, got role {self.role!r}"
            )


class Rendered(NamedTuple):
    """Token ids and their roles, aligned.

    Attributes:
        tokens: [T] int32 token ids.
        roles: [T] int8 `Role` of each token.
    """

    tokens: np.ndarray
    roles: np.ndarray

    def __len__(self) -> int:
        return self.tokens.shape[0]


def format_warnings(warning: str) -> str:
    """Renders harness warnings as echo.md section 8.1's observation prefix.

    Args:
        warning: warnings, one per line; blank lines are ignored.

    Returns:
        "WARNINGS:\\n- W1\\n- W2\\n\\n", or "" when there is no warning.
    """
    lines = [line.strip() for line in warning.splitlines() if line.strip()]
    if not lines:
        return ""
    return "WARNINGS:\n" + "".join(f"- {line}\n" for line in lines) + "\n"


def render_segments(
    tokenizer: transformers.PreTrainedTokenizerFast, segments: Sequence[tuple[str, Role]]
) -> Rendered:
    """Tokenises (text, role) segments separately and concatenates them.

    Args:
        tokenizer: any fast tokenizer; special tokens written in the text map to their ids.
        segments: (text, role) pairs in order; empty texts contribute nothing.

    Returns:
        The concatenated `Rendered` ids and roles.
    """
    ids, roles = [], []
    for text, role in segments:
        encoded = tokenizer.encode(text, add_special_tokens=False) if text else []
        ids.extend(encoded)
        roles.extend([int(role)] * len(encoded))
    return Rendered(np.asarray(ids, np.int32), np.asarray(roles, np.int8))


def end_token_id(
    tokenizer: transformers.PreTrainedTokenizerFast, fmt: ChatFormat = DEFAULT_FORMAT
) -> int:
    """Returns the id of `fmt.end`, the token that ends an assistant turn (the generation stop token).

    Raises:
        ValueError: `fmt.end` does not encode to exactly one token with this tokenizer.
    """
    ids = tokenizer.encode(fmt.end, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"ChatFormat.end={fmt.end!r} encodes to {len(ids)} tokens {ids}; expected exactly one "
            "(add it to the tokenizer as a special token)"
        )
    return ids[0]


def _turn_segments(turn: Turn, fmt: ChatFormat) -> list[tuple[str, Role]]:
    header = (fmt.headers[turn.role], Role.TEMPLATE)
    if turn.role == "assistant":
        return [header, (turn.text, Role.ACTION), (fmt.end, Role.ACTION)]
    if turn.role == "observation":
        content = [(format_warnings(turn.warning), Role.WARNING), (turn.text, Role.ENV)]
    else:
        content = [(turn.text, Role.SYSTEM if turn.role == "system" else Role.USER)]
    return [header, *content, (fmt.end, Role.TEMPLATE), (fmt.separator, Role.TEMPLATE)]


def render_conversation(
    tokenizer: transformers.PreTrainedTokenizerFast,
    turns: Sequence[Turn],
    *,
    fmt: ChatFormat = DEFAULT_FORMAT,
    add_bos: bool = True,
    generation_prompt: bool = False,
) -> Rendered:
    """Renders a conversation to token ids and per-token roles.

    The result equals, token for token, what a rollout builds by rendering the prompt, appending the
    policy's tokens and the rendered observations (when the policy's tokens are its actions encoded
    with `encode_action`).

    Args:
        tokenizer: any fast tokenizer.
        turns: the conversation.
        fmt: the chat template's glue strings.
        add_bos: open with `fmt.bos`.
        generation_prompt: end with the assistant header, ready for the policy to generate.

    Returns:
        `Rendered` tokens [T] and roles [T].
    """
    segments = [(fmt.bos, Role.TEMPLATE)] if add_bos else []
    after_assistant = False
    for turn in turns:
        if after_assistant:
            segments.append((fmt.separator, Role.TEMPLATE))
        segments.extend(_turn_segments(turn, fmt))
        after_assistant = turn.role == "assistant"
    if generation_prompt:
        if after_assistant:
            segments.append((fmt.separator, Role.TEMPLATE))
        segments.append((fmt.headers["assistant"], Role.TEMPLATE))
    return render_segments(tokenizer, segments)


def render_prompt(
    tokenizer: transformers.PreTrainedTokenizerFast,
    prompt: str,
    system: str | None = None,
    *,
    fmt: ChatFormat = DEFAULT_FORMAT,
) -> Rendered:
    """Renders bos, an optional system turn, the user turn and the generation prompt.

    Args:
        tokenizer: any fast tokenizer.
        prompt: the user-turn text.
        system: the system-turn text, or None for no system turn.
        fmt: the chat template's glue strings.

    Returns:
        `Rendered` tokens [T] and roles [T]; the policy generates next.
    """
    turns = ([Turn("system", system)] if system is not None else []) + [Turn("user", prompt)]
    return render_conversation(tokenizer, turns, fmt=fmt, generation_prompt=True)


def render_observation(
    tokenizer: transformers.PreTrainedTokenizerFast,
    text: str,
    warning: str = "",
    *,
    fmt: ChatFormat = DEFAULT_FORMAT,
    generation_prompt: bool = True,
) -> Rendered:
    """Renders what follows an assistant turn: separator, observation turn, generation prompt.

    Args:
        tokenizer: any fast tokenizer.
        text: the environment's observation text (ENV tokens).
        warning: harness warnings, one per line (WARNING tokens; "" for none).
        fmt: the chat template's glue strings.
        generation_prompt: end with the assistant header.

    Returns:
        `Rendered` tokens [T] and roles [T], to append after the policy's end token.
    """
    segments = [
        (fmt.separator, Role.TEMPLATE),
        *_turn_segments(Turn("observation", text, warning), fmt),
    ]
    if generation_prompt:
        segments.append((fmt.headers["assistant"], Role.TEMPLATE))
    return render_segments(tokenizer, segments)


def encode_action(
    tokenizer: transformers.PreTrainedTokenizerFast, text: str, *, fmt: ChatFormat = DEFAULT_FORMAT
) -> list[int]:
    """Encodes an assistant turn's content followed by its end token, as the policy would emit it.

    Args:
        tokenizer: any fast tokenizer.
        text: the action text.
        fmt: the chat template's glue strings.

    Returns:
        The token ids of `text` plus the end-token id.
    """
    return tokenizer.encode(text, add_special_tokens=False) + [end_token_id(tokenizer, fmt)]


def role_masks(roles: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Splits per-token roles into the rollout masks.

    Args:
        roles: [..., T] int `Role` values.

    Returns:
        (action_mask, env_mask, warning_mask), each [..., T] bool: ACTION; ENV or WARNING; WARNING.
    """
    roles = np.asarray(roles)
    warning = roles == Role.WARNING
    return roles == Role.ACTION, (roles == Role.ENV) | warning, warning
