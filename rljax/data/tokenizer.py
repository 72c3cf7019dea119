"""Tokenizers: the built-in byte-level BPE and any Hugging Face fast tokenizer directory.

`transformers.PreTrainedTokenizerFast` is the interface everywhere in rljax (rendering, rollouts,
datasets), so a real model's tokenizer drops in for the built-in one.

The built-in tokenizer (`rljax/data/assets/`, built offline by `tools/train_tokenizer.py`) is a
byte-level BPE with 1024 ids, small enough that tiny models stay fast:

- ids 0..7 are the special tokens `SPECIAL_TOKENS` (`<|pad|>` = 0, then `<|bos|>`, `<|eos|>`,
  `<|system|>`, `<|user|>`, `<|assistant|>`, `<|observation|>`, `<|end|>`), ids 8..263 the 256
  bytes, the rest merges learnt on template text (arithmetic, shell commands and file contents,
  English-ish prose, XML-ish action tags, the MiniResearch grammar);
- every byte is a token, so any text encodes and decodes losslessly; no normaliser, no prefix
  space, no clean-up of spaces on decode;
- digits are always single tokens (numbers are spelled digit by digit);
- special tokens written literally in text are encoded as their single special id.
"""

from __future__ import annotations

import functools
import os
import pathlib
from typing import Any, Callable

import transformers

SPECIAL_TOKENS = (
    "<|pad|>",
    "<|bos|>",
    "<|eos|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|observation|>",
    "<|end|>",
)
BUILTIN_DIR = pathlib.Path(__file__).resolve().parent / "assets"


def load_tokenizer(path: str | os.PathLike | None = None) -> transformers.PreTrainedTokenizerFast:
    """Loads the built-in tokenizer (no path) or a Hugging Face fast tokenizer directory.

    Args:
        path: a local directory holding `tokenizer.json` (and usually `tokenizer_config.json`), e.g.
            a model checkpoint directory; None for rljax's built-in byte-level BPE.

    Returns:
        A `PreTrainedTokenizerFast`. Encode with `add_special_tokens=False` and decode with
        `skip_special_tokens=False` for exact round trips; the chat renderer adds the chat glue itself.

    Raises:
        FileNotFoundError: `path` is not a directory or has no `tokenizer.json`.
        ValueError: the directory does not load as a fast (Rust-backed) tokenizer.
    """
    directory = BUILTIN_DIR if path is None else pathlib.Path(path)
    if not (directory / "tokenizer.json").is_file():
        raise FileNotFoundError(
            f"tokenizer path {str(directory)!r} must be a directory containing tokenizer.json"
        )
    tokenizer = transformers.AutoTokenizer.from_pretrained(str(directory), use_fast=True)
    if not tokenizer.is_fast:
        raise ValueError(
            f"tokenizer at {str(directory)!r} loaded as {type(tokenizer).__name__}, expected a fast "
            "(PreTrainedTokenizerFast) tokenizer"
        )
    return tokenizer


def token_counter(tokenizer: Any) -> Callable[[str], int]:
    """A function text -> its number of tokens under `tokenizer`, no special tokens added.

    It is what a family that sizes its prompts in tokens takes as `count_tokens` (the long-context
    families); a run passes the policy tokenizer's counter, so lengths are the model's own tokens.

    Args:
        tokenizer: a Hugging Face tokenizer (`load_tokenizer()`, or a checkpoint's).

    Returns:
        The counter (picklable when the tokenizer is). No warning for a text longer than the
        tokenizer's `model_max_length`: counting a document is not feeding it to the model.
    """
    return functools.partial(_count_tokens, tokenizer)


def _count_tokens(tokenizer: Any, text: str) -> int:
    return len(tokenizer(text, add_special_tokens=False, verbose=False)["input_ids"])
