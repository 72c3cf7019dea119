"""Tokenizer and chat rendering (plus task datasets)."""

from rljax.data.chat import (
    DEFAULT_FORMAT,
    ChatFormat,
    Rendered,
    Role,
    Turn,
    chat_format,
    encode_action,
    end_token_id,
    format_warnings,
    render_conversation,
    render_observation,
    render_prompt,
    render_segments,
    resolve_format,
    role_masks,
    stop_token_ids,
)
from rljax.data.tokenizer import BUILTIN_DIR, SPECIAL_TOKENS, load_tokenizer, token_counter

__all__ = [
    "BUILTIN_DIR",
    "DEFAULT_FORMAT",
    "SPECIAL_TOKENS",
    "ChatFormat",
    "Rendered",
    "Role",
    "Turn",
    "chat_format",
    "encode_action",
    "end_token_id",
    "format_warnings",
    "load_tokenizer",
    "render_conversation",
    "render_observation",
    "render_prompt",
    "render_segments",
    "resolve_format",
    "role_masks",
    "stop_token_ids",
    "token_counter",
]
