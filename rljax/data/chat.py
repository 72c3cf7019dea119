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

Real models: `chat_format(tokenizer)` derives the glue from the tokenizer's own chat template (Jinja,
as `apply_chat_template` renders it), so a Qwen2/Qwen3 tokenizer renders ChatML (`<|im_start|>`,
`<|im_end|>`, observations as the template's tool turns, `<tool_response>` blocks) and a Llama 3
tokenizer its header ids and `<|eot_id|>`; a tokenizer without a template gets the built-in glue
above. The derivation renders probe conversations whose contents are sentinels and reads the glue
between consecutive contents, for every pair of turn roles (plus the generation prompt and the
conversation's end); non-assistant contents are rendered through the template too (Llama 3 trims
them and JSON-encodes tool contents). Every render function takes `fmt=None` to mean "the
tokenizer's format" (`resolve_format`). The glue after an assistant content opens with the end
marker the policy emits (role ACTION); the rest is TEMPLATE. Stop tokens are that end marker plus
the tokenizer's eos (`stop_token_ids`).

Two departures from `apply_chat_template`, both deliberate: assistant contents are rendered verbatim,
since a rollout's action tokens are what the policy generated (Qwen3's template drops the reasoning
of assistant turns before the last user query and inserts an empty `<think>` block in a final turn
without one; Llama 3 trims assistant contents); and segments are encoded separately, so where the
template's text would merge across a content boundary (e.g. a tool content ending in "." before
ChatML's "\n") the ids differ from encoding the whole text, while every token's role stays exact.
A conversation rendered here ends with the template's full glue after its last turn (ChatML's
"<|im_end|>\n"); a rollout stops at the policy's end token.
"""

from __future__ import annotations

import dataclasses
import enum
import weakref
from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import numpy as np
import transformers

TURN_ROLES = ("system", "user", "assistant", "observation")
GLUE_BEFORE = ("start", *TURN_ROLES)  # what a glue string follows
GLUE_AFTER = (*TURN_ROLES, "generation", "end")  # what it leads to
TEMPLATE_ROLES = {
    "system": "system",
    "user": "user",
    "assistant": "assistant",
    "observation": "tool",
}


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

    The built-in format composes its glue from `bos`, `headers`, `end` and `separator`. A format
    derived from a tokenizer's chat template (`chat_format`) carries the glue between every pair of
    turn roles in `transitions` instead, and renders non-assistant contents through `template`.

    Attributes:
        bos: text opening a conversation ("" for none); `add_bos=False` drops it.
        headers: role name -> header text opening a turn of that role (all of TURN_ROLES); used
            only when `transitions` is empty.
        end: end-of-turn marker closing an assistant turn; must encode to exactly one token (the
            generation stop token).
        separator: glue after each end marker ("" for none); after an assistant turn it is emitted
            with the next turn, since the policy stops generating at `end`. Used only when
            `transitions` is empty.
        stops: further texts that stop a generated turn besides `end` (e.g. the tokenizer's eos),
            each one token.
        transitions: (before, after, glue) triples: the text between the content of a `before` turn
            (or "start") and the content of an `after` turn (or "generation": the generation prompt;
            "end": the conversation's end); empty for the built-in composition.
        template: the Jinja chat template non-assistant contents are rendered through (None:
            verbatim).
        template_kwargs: (name, value) pairs passed to the template (e.g. enable_thinking).
        frames: (role, prefix, suffix) triples: the text of a probe conversation around a `role`
            content, used to cut the template's rendering of a content out of it.
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
    stops: tuple[str, ...] = ()
    transitions: tuple[tuple[str, str, str], ...] = ()
    template: str | None = None
    template_kwargs: tuple[tuple[str, Any], ...] = ()
    frames: tuple[tuple[str, str, str], ...] = ()

    def __post_init__(self):
        if set(self.headers) != set(TURN_ROLES):
            raise ValueError(
                f"ChatFormat.headers must have keys {TURN_ROLES}, got {sorted(self.headers)}"
            )

    def glue(self, before: str, after: str) -> str:
        """The text between a `before` content (or "start") and an `after` content (or the
        generation prompt "generation", or the conversation's "end").

        Raises:
            ValueError: the template does not render this transition.
        """
        if before not in GLUE_BEFORE or after not in GLUE_AFTER:
            raise ValueError(f"no glue from {before!r} to {after!r}")
        if self.transitions:
            for b, a, text in self.transitions:
                if (b, a) == (before, after):
                    return text
            raise ValueError(
                f"the chat template does not render a {after!r} turn after {before!r} "
                "(its probe conversation failed to render)"
            )
        nxt = {"generation": self.headers["assistant"], "end": ""}.get(after) or self.headers.get(
            after, ""
        )
        if before == "start":
            return self.bos + nxt
        if after == "end" and before == "assistant":
            return self.end
        return self.end + self.separator + nxt


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


# ---------------------------------------------------------------------------------------------
# Formats from chat templates

_SENTINEL = "rljaxprobe{}x"
# The conversation a probe puts before a turn of each role: contents are sentinels 0, 1, 2...
_BEFORE = {
    "start": (),
    "system": ("system",),
    "user": ("user",),
    "assistant": ("user", "assistant"),
    "observation": ("user", "assistant", "observation"),
}


def _messages(roles: Sequence[str], texts: Mapping[int, str] | None = None) -> list[dict]:
    texts = texts or {}
    return [
        {"role": TEMPLATE_ROLES[r], "content": texts.get(i, _SENTINEL.format(i))}
        for i, r in enumerate(roles)
    ]


def _render_text(tokenizer, template: str, messages, generation: bool, kwargs: Mapping) -> str:
    return tokenizer.apply_chat_template(
        messages,
        chat_template=template,
        add_generation_prompt=generation,
        tokenize=False,
        **kwargs,
    )


def _between(text: str, first: int | None, second: int | None) -> str:
    """The text after sentinel `first` (None: from the start) up to sentinel `second` (None: end)."""
    start = 0
    if first is not None:
        marker = _SENTINEL.format(first)
        if text.count(marker) != 1:
            raise ValueError(f"probe content {marker!r} appears {text.count(marker)} times")
        start = text.index(marker) + len(marker)
    stop = len(text)
    if second is not None:
        marker = _SENTINEL.format(second)
        if text.count(marker) != 1:
            raise ValueError(f"probe content {marker!r} appears {text.count(marker)} times")
        stop = text.index(marker)
    if stop < start:
        raise ValueError("probe contents rendered out of order")
    return text[start:stop]


def _probe_glue(tokenizer, template, kwargs, before: str, after: str) -> str:
    roles = list(_BEFORE[before])
    first = len(roles) - 1 if roles else None
    if after in ("generation", "end"):
        if not roles:
            raise ValueError("an empty conversation")
        text = _render_text(tokenizer, template, _messages(roles), after == "generation", kwargs)
        return _between(text, first, None)
    # A user turn after an assistant probe keeps the assistant from being the last message
    # (Qwen3 inserts an empty <think> block into a final assistant turn).
    tail = ["user"] if after == "assistant" else []
    messages = _messages(roles + [after] + tail)
    text = _render_text(tokenizer, template, messages, False, kwargs)
    return _between(text, first, len(roles))


def _single_token(tokenizer, text: str, what: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise ValueError(
            f"{what} {text!r} encodes to {len(ids)} tokens {ids}; expected exactly one "
            "(add it to the tokenizer as a special token)"
        )
    return ids[0]


def chat_format(
    tokenizer: transformers.PreTrainedTokenizerFast,
    *,
    template: str | None = None,
    **template_kwargs: Any,
) -> ChatFormat:
    """Derives the `ChatFormat` of a tokenizer's chat template (the built-in format without one).

    Renders probe conversations with `apply_chat_template` whose contents are sentinels and reads
    the glue between consecutive contents for every pair of roles (observations are the template's
    "tool" messages), the generation prompt and the conversation's end. The end marker is the first
    token of the glue after an assistant content, which must be a special (added) token opening the
    glue to every next role; the
    stop tokens are that marker plus the tokenizer's eos. Transitions a template refuses to render
    (e.g. one that requires alternating roles) are left out and raise when rendered.

    Args:
        tokenizer: a fast tokenizer; its `chat_template` is used unless `template` is given.
        template: a Jinja chat template overriding the tokenizer's.
        **template_kwargs: extra template variables, e.g. `enable_thinking=False` (Qwen3) or
            `date_string="26 Jul 2024"` (Llama 3.1+; otherwise today's date).

    Returns:
        A `ChatFormat` (`DEFAULT_FORMAT` when there is no template).

    Raises:
        ValueError: the template renders no single-token end marker after an assistant turn, or
            does not render the transitions a conversation needs (system or user first, user ->
            assistant, assistant -> observation -> assistant, the generation prompt).
    """
    template = template if template is not None else tokenizer.chat_template
    if isinstance(template, dict):
        template = template.get("default")
    if not template:
        if template_kwargs:
            raise ValueError(f"template kwargs {sorted(template_kwargs)} given but no template")
        return DEFAULT_FORMAT
    transitions = []
    for before in GLUE_BEFORE:
        for after in GLUE_AFTER:
            try:
                glue = _probe_glue(tokenizer, template, template_kwargs, before, after)
            except Exception:  # noqa: BLE001 - a template may refuse any unusual transition
                continue
            transitions.append((before, after, glue))
    table = {(b, a): g for b, a, g in transitions}
    needed = [
        ("start", "user"),
        ("user", "assistant"),
        ("user", "generation"),
        ("assistant", "observation"),
        ("observation", "generation"),
        ("assistant", "end"),
    ]
    missing = [pair for pair in needed if pair not in table]
    if missing:
        raise ValueError(f"the chat template does not render the transitions {missing}")
    ids = tokenizer.encode(table[("assistant", "end")], add_special_tokens=False)
    added = tokenizer.added_tokens_decoder  # id -> AddedToken: special and added tokens
    end = added[ids[0]].content if ids and ids[0] in added else ""
    if not end or not table[("assistant", "end")].startswith(end):
        raise ValueError(
            "the chat template's glue after an assistant turn "
            f"{table[('assistant', 'end')]!r} does not open with a single end-of-turn token"
        )
    for (before, after), glue in table.items():
        if before == "assistant" and not glue.startswith(end):
            raise ValueError(
                f"the chat template's glue from an assistant turn to {after!r} is {glue!r}; "
                f"expected it to open with the end-of-turn token {end!r}"
            )
    stops = ()
    if tokenizer.eos_token and tokenizer.eos_token != end:
        stops = (tokenizer.eos_token,)
    bos = tokenizer.bos_token or ""
    if not (bos and table[("start", "user")].startswith(bos)):
        bos = ""
    frames = []
    for role in ("system", "user", "observation"):
        roles = _BEFORE[role]
        try:
            text = _render_text(tokenizer, template, _messages(roles), False, template_kwargs)
        except Exception:  # noqa: BLE001
            continue
        marker = _SENTINEL.format(len(roles) - 1)
        if text.count(marker) == 1:
            at = text.index(marker)
            frames.append((role, text[:at], text[at + len(marker) :]))
    return ChatFormat(
        bos=bos,
        end=end,
        stops=stops,
        transitions=tuple(transitions),
        template=template,
        template_kwargs=tuple(sorted(template_kwargs.items())),
        frames=tuple(frames),
    )


_FORMATS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def resolve_format(
    tokenizer: transformers.PreTrainedTokenizerFast, fmt: ChatFormat | None = None
) -> ChatFormat:
    """Returns `fmt`, or when it is None the tokenizer's own format (`chat_format`, cached)."""
    if fmt is not None:
        return fmt
    template = tokenizer.chat_template
    cached = _FORMATS.get(tokenizer)
    if cached is None or cached[0] != template:
        cached = (template, chat_format(tokenizer))
        _FORMATS[tokenizer] = cached
    return cached[1]


def set_format(tokenizer: transformers.PreTrainedTokenizerFast, fmt: ChatFormat) -> None:
    """Makes `fmt` what `resolve_format(tokenizer)` returns from now on (every `fmt=None` render).

    A run derives its format once, with the template options of its config and the checkpoint's
    extra stop tokens, and installs it on its tokenizer, so rollouts, evaluation, SFT and teacher
    contexts all render the same glue. Changing `tokenizer.chat_template` afterwards drops it.
    """
    _FORMATS[tokenizer] = (tokenizer.chat_template, fmt)


def with_stop_ids(
    tokenizer: transformers.PreTrainedTokenizerFast, fmt: ChatFormat, ids
) -> ChatFormat:
    """`fmt` with the tokens `ids` added to its stop texts (e.g. a checkpoint's
    `generation_config.json` eos ids: Qwen3 stops at `<|im_end|>` and `<|endoftext|>`, Llama 3
    at `<|eot_id|>`, `<|eom_id|>` and `<|end_of_text|>`).

    Raises:
        ValueError: an id is outside the tokenizer's vocabulary, or its text does not encode back
            to exactly that one token (stop texts are matched as single tokens).
    """
    stops = list(fmt.stops)
    have = stop_token_ids(tokenizer, fmt)
    for token_id in ids:
        token_id = int(token_id)
        if token_id in have:
            continue
        if not 0 <= token_id < len(tokenizer):
            raise ValueError(
                f"stop token id {token_id} is outside the tokenizer's {len(tokenizer)} ids"
            )
        text = tokenizer.decode([token_id], skip_special_tokens=False)
        if tokenizer.encode(text, add_special_tokens=False) != [token_id]:
            raise ValueError(
                f"stop token id {token_id} ({text!r}) does not encode back to itself; "
                "stop tokens must be single special tokens"
            )
        stops.append(text)
        have = have | {token_id}
    return dataclasses.replace(fmt, stops=tuple(stops))


def _content(tokenizer, fmt: ChatFormat, role: str, text: str) -> str:
    """A non-assistant content as the template renders it (verbatim for the built-in format)."""
    if fmt.template is None or not text:
        return text
    frame = next((f for f in fmt.frames if f[0] == role), None)
    if frame is None:
        raise ValueError(f"the chat template does not render a {role!r} turn")
    _, prefix, suffix = frame
    roles = _BEFORE[role]
    out = _render_text(
        tokenizer,
        fmt.template,
        _messages(roles, {len(roles) - 1: text}),
        False,
        dict(fmt.template_kwargs),
    )
    if not (out.startswith(prefix) and out.endswith(suffix)) or len(out) < len(prefix + suffix):
        raise ValueError(
            f"the chat template renders the glue around a {role!r} content differently for "
            f"{text[:40]!r}; it cannot be rendered segment by segment"
        )
    return out[len(prefix) : len(out) - len(suffix)]


# ---------------------------------------------------------------------------------------------
# Rendering


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
    tokenizer: transformers.PreTrainedTokenizerFast, fmt: ChatFormat | None = None
) -> int:
    """Returns the id of the end marker that closes an assistant turn (the policy's stop token).

    Args:
        tokenizer: any fast tokenizer.
        fmt: the chat format (None: the tokenizer's, `resolve_format`).

    Raises:
        ValueError: the end marker does not encode to exactly one token with this tokenizer.
    """
    fmt = resolve_format(tokenizer, fmt)
    return _single_token(tokenizer, fmt.end, "ChatFormat.end=")


def stop_token_ids(
    tokenizer: transformers.PreTrainedTokenizerFast, fmt: ChatFormat | None = None
) -> frozenset[int]:
    """The ids that end a generated turn: the end marker plus `fmt.stops` (the tokenizer's eos for
    a template-derived format).

    Raises:
        ValueError: a stop text does not encode to exactly one token.
    """
    fmt = resolve_format(tokenizer, fmt)
    ids = {end_token_id(tokenizer, fmt)}
    ids.update(_single_token(tokenizer, text, "stop text") for text in fmt.stops)
    return frozenset(ids)


def _glue_segments(fmt: ChatFormat, before: str, after: str, add_bos: bool = True) -> list:
    glue = fmt.glue(before, after)
    if before == "start" and not add_bos:
        glue = glue.removeprefix(fmt.bos)
    if before == "assistant":  # the policy emits the end marker; the rest is glue
        return [(fmt.end, Role.ACTION), (glue[len(fmt.end) :], Role.TEMPLATE)]
    return [(glue, Role.TEMPLATE)]


def _content_segments(tokenizer, turn: Turn, fmt: ChatFormat) -> list[tuple[str, Role]]:
    if turn.role == "assistant":
        return [(turn.text, Role.ACTION)]
    if turn.role != "observation":
        role = Role.SYSTEM if turn.role == "system" else Role.USER
        return [(_content(tokenizer, fmt, turn.role, turn.text), role)]
    warning = format_warnings(turn.warning)
    if not warning:
        return [(_content(tokenizer, fmt, "observation", turn.text), Role.ENV)]
    whole = _content(tokenizer, fmt, "observation", warning + turn.text)
    env = _content(tokenizer, fmt, "observation", turn.text)
    if not whole.endswith(env):
        raise ValueError("the chat template renders an observation's warnings and text inseparably")
    cut = len(whole) - len(env)
    return [(whole[:cut], Role.WARNING), (whole[cut:], Role.ENV)]


def render_conversation(
    tokenizer: transformers.PreTrainedTokenizerFast,
    turns: Sequence[Turn],
    *,
    fmt: ChatFormat | None = None,
    add_bos: bool = True,
    generation_prompt: bool = False,
) -> Rendered:
    """Renders a conversation to token ids and per-token roles.

    The result equals, token for token, what a rollout builds by rendering the prompt, appending the
    policy's tokens and the rendered observations (when the policy's tokens are its actions encoded
    with `encode_action`), except that a conversation ending in an assistant turn also carries the
    template's glue after the end marker (ChatML's "\\n"; none with the built-in format).

    Args:
        tokenizer: any fast tokenizer.
        turns: the conversation.
        fmt: the chat format (None: the tokenizer's, `resolve_format`).
        add_bos: open with `fmt.bos`.
        generation_prompt: end with the generation prompt, ready for the policy to generate.

    Returns:
        `Rendered` tokens [T] and roles [T].
    """
    fmt = resolve_format(tokenizer, fmt)
    segments, before = [], "start"
    for turn in turns:
        segments.extend(_glue_segments(fmt, before, turn.role, add_bos))
        segments.extend(_content_segments(tokenizer, turn, fmt))
        before = turn.role
    segments.extend(_glue_segments(fmt, before, "generation" if generation_prompt else "end"))
    return render_segments(tokenizer, segments)


def render_prompt(
    tokenizer: transformers.PreTrainedTokenizerFast,
    prompt: str,
    system: str | None = None,
    *,
    fmt: ChatFormat | None = None,
) -> Rendered:
    """Renders bos, an optional system turn, the user turn and the generation prompt.

    Args:
        tokenizer: any fast tokenizer.
        prompt: the user-turn text.
        system: the system-turn text, or None for no system turn (a template may still render its
            default system turn, e.g. Qwen2.5's or Llama 3's dated one).
        fmt: the chat format (None: the tokenizer's, `resolve_format`).

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
    fmt: ChatFormat | None = None,
    generation_prompt: bool = True,
) -> Rendered:
    """Renders what follows an assistant turn's end marker: the observation turn and its glue.

    Args:
        tokenizer: any fast tokenizer.
        text: the environment's observation text (ENV tokens).
        warning: harness warnings, one per line (WARNING tokens; "" for none).
        fmt: the chat format (None: the tokenizer's, `resolve_format`).
        generation_prompt: end with the generation prompt (else with the glue that ends a
            conversation after an observation).

    Returns:
        `Rendered` tokens [T] and roles [T], to append after the policy's end token.
    """
    fmt = resolve_format(tokenizer, fmt)
    segments = _glue_segments(fmt, "assistant", "observation")[1:]
    segments.extend(_content_segments(tokenizer, Turn("observation", text, warning), fmt))
    segments.extend(
        _glue_segments(fmt, "observation", "generation" if generation_prompt else "end")
    )
    return render_segments(tokenizer, segments)


def encode_action(
    tokenizer: transformers.PreTrainedTokenizerFast, text: str, *, fmt: ChatFormat | None = None
) -> list[int]:
    """Encodes an assistant turn's content followed by its end token, as the policy would emit it.

    Args:
        tokenizer: any fast tokenizer.
        text: the action text.
        fmt: the chat format (None: the tokenizer's, `resolve_format`).

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
