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
from rljax.envs import registry as _registry

# A prepared TFDS question/answer dataset as a task family by name, e.g. for a config's
# task.family="external_qa" (TFDS, an optional extra, is imported only when one is made).
_registry.register("external_qa", "rljax.data.tfds_builders:external_qa", overwrite=True)

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
