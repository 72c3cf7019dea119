"""Export a trained policy as a Hugging Face checkpoint directory that vLLM, SGLang or
`transformers` load: `config.json` + safetensors (`rljax.models.save_hf`), the tokenizer files
(with its chat template) and `generation_config.json`.

The driver writes `<run_dir>/hf/` at the end of a run (`train.export_hf`, default: when the run
started from `model.hf_path`); `python -m rljax.experiments.export --run-dir R [--step N]` writes
one from any checkpoint.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import transformers

from rljax.data import chat
from rljax.models import Decoder, save_hf

log = logging.getLogger(__name__)

GENERATION_CONFIG = "generation_config.json"
EXPORT_INFO = "rljax_export.json"


def generation_config(
    tokenizer: Any, *, source: str | os.PathLike | None = None
) -> transformers.GenerationConfig:
    """The generation config of an exported policy.

    The source checkpoint's `generation_config.json` (its sampling defaults) when it has one, with
    `eos_token_id` set to the ids the run's rollouts stopped at (`chat.stop_token_ids`: the chat
    template's end-of-turn token, the tokenizer's eos and the source's eos ids), so a server stops
    where training did; `bos_token_id`/`pad_token_id` from the tokenizer when the source has none.

    Args:
        tokenizer: the run's tokenizer (its installed chat format, `chat.resolve_format`).
        source: the checkpoint directory the run started from (None: a preset).
    """
    values: dict[str, Any] = {}
    if source is not None and os.path.isfile(os.path.join(source, GENERATION_CONFIG)):
        with open(os.path.join(source, GENERATION_CONFIG)) as f:
            values = json.load(f)
        values.pop("transformers_version", None)
    values["eos_token_id"] = sorted(chat.stop_token_ids(tokenizer))
    for name in ("bos_token_id", "pad_token_id"):
        token_id = getattr(tokenizer, name, None)
        if values.get(name) is None and token_id is not None:
            values[name] = token_id
    return transformers.GenerationConfig(**values)


def export_hf(
    model: Decoder,
    tokenizer: Any,
    directory: str | os.PathLike,
    *,
    source: str | os.PathLike | None = None,
    info: dict | None = None,
) -> Path:
    """Writes `model` with its tokenizer and generation config as a Hugging Face directory.

    The files are written to `<directory>.tmp` and moved into place once complete, replacing an
    earlier export, so a reader never sees a half-written directory.

    Args:
        model: the policy (parameters addressable from this process; bf16 stays bf16).
        tokenizer: its tokenizer; saved with `save_pretrained` (chat template included).
        directory: the output directory.
        source: the checkpoint the run started from; its `generation_config.json` is the base of
            the exported one.
        info: provenance written to `rljax_export.json` (run directory, step...).

    Returns:
        The directory.
    """
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_hf(model, tmp)
    tokenizer.save_pretrained(tmp)
    generation_config(tokenizer, source=source).save_pretrained(tmp)
    (tmp / EXPORT_INFO).write_text(
        json.dumps({"source": None if source is None else str(source), **(info or {})}, indent=2)
    )
    if directory.exists():
        shutil.rmtree(directory)
    os.replace(tmp, directory)
    log.info("exported the policy to %s", directory)
    return directory
