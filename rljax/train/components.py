"""What a run is built from: the policy and its tokenizer, the task family, the prompt stream, the
family check."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
from flax import nnx
from jax.sharding import Mesh

from rljax import parallel
from rljax.data import chat, load_tokenizer, token_counter
from rljax.data.pipeline import FamilySource, task_batches
from rljax.envs import base, registry
from rljax.methods import Method
from rljax.models import PRESETS, Decoder, load_hf
from rljax.train.config import HF_OVERRIDES, ModelSection, TaskSection

GENERATION_CONFIG = "generation_config.json"

# What each method need and run setting asks of the task family.
NEED_CAPABILITIES = {
    "teacher": base.TeacherContextFamily,
    "stages": base.StagedFamily,
    "clusters": base.ClusteredFamily,
}


def check_family(family: base.TaskFamily, method: Method, *, reflection: bool = False) -> None:
    """Checks once, at start-up, that `family` has every capability the run needs.

    Args:
        family: the task family.
        method: its `needs` name the capabilities it reads ("teacher", "stages", "clusters").
        reflection: the run has RubricEM's reflection phase (needs `ReflectiveFamily`).

    Raises:
        ValueError: naming the family, what needs the capability, and the missing protocol.
    """
    if not isinstance(family, base.TaskFamily):
        raise ValueError(
            f"{type(family).__name__} is not a TaskFamily: it needs "
            f"`name`, `generate(split, index)`, `verify(task, response)` and `expert(task, rng)`"
        )
    wanted = []
    if reflection:
        wanted.append(("the reflection phase (train.reflection)", base.ReflectiveFamily))
    for need in sorted(method.needs & NEED_CAPABILITIES.keys()):
        wanted.append((f"method {method.name!r}", NEED_CAPABILITIES[need]))
    family_name = family.name
    for user, protocol in wanted:
        if not isinstance(family, protocol):
            members = sorted(name for name in _members(protocol) if not hasattr(family, name))
            raise ValueError(
                f"task family {family_name!r} lacks the {protocol.__name__} capability "
                f"({', '.join(members)}) that {user} needs"
            )


def _members(protocol: type) -> set[str]:
    """The attributes and methods a capability protocol declares."""
    own = vars(protocol)
    return {n for n in own if not n.startswith("_")} | set(own.get("__annotations__", {}))


def policy_tokenizer(cfg: ModelSection) -> Any:
    """The policy's tokenizer: the checkpoint's (`cfg.hf_path`), else the built-in one, with the
    run's chat format installed (`configure_chat`: `cfg.chat_template_kwargs`, and the eos ids of
    the checkpoint's `generation_config.json` as extra stop tokens).
    """
    tokenizer = load_tokenizer(cfg.hf_path)
    eos = () if cfg.hf_path is None else generation_eos_ids(cfg.hf_path)
    configure_chat(tokenizer, cfg.chat_template_kwargs, eos)
    return tokenizer


def generation_eos_ids(path: str | os.PathLike) -> tuple[int, ...]:
    """The `eos_token_id`s of a checkpoint's `generation_config.json` (none without the file)."""
    file = os.path.join(path, GENERATION_CONFIG)
    if not os.path.isfile(file):
        return ()
    with open(file) as f:
        eos = json.load(f).get("eos_token_id")
    if eos is None:
        return ()
    return tuple(eos) if isinstance(eos, list) else (eos,)


def configure_chat(tokenizer: Any, template_kwargs: dict, stop_ids=()) -> chat.ChatFormat:
    """Derives the run's chat format (template options, extra stop ids) and installs it on
    `tokenizer` (`chat.set_format`), so every `fmt=None` render of the run uses it; returns it.

    Raises:
        ValueError: options given to a tokenizer without a chat template, or a stop id that is
            not a single token.
    """
    try:
        fmt = chat.chat_format(tokenizer, **template_kwargs)
    except ValueError as err:
        raise ValueError(f"model.chat_template_kwargs={template_kwargs!r}: {err}") from None
    fmt = chat.with_stop_ids(tokenizer, fmt, stop_ids)
    chat.set_format(tokenizer, fmt)
    return fmt


def build_family(
    task: TaskSection, tokenizer: Any, family: base.TaskFamily | None = None
) -> base.TaskFamily:
    """The run's task family: `family`, else `registry.make(task.family, **task.kwargs)`.

    A family that sizes its prompts in tokens (`base.TokenCountingFamily`) and has no counter gets
    the policy tokenizer's (`rljax.data.token_counter`), so its lengths are the model's tokens.
    """
    family = family if family is not None else registry.make(task.family, **task.kwargs)
    return base.with_token_counter(family, token_counter(tokenizer))


def build_policy(
    cfg: ModelSection, *, seed: int, mesh: Mesh | None = None, tokenizer: Any = None
) -> tuple[Any, Decoder]:
    """The tokenizer and the policy network a run starts from.

    With `cfg.hf_path`, both come from that local Hugging Face checkpoint directory (its
    `remat`/`scan_layers` overrides applied); otherwise the
    built-in tokenizer and a freshly initialised `cfg.preset` (vocabulary sized to the tokenizer)
    with `cfg.overrides` applied. Parameters are placed on `mesh` by the logical partition rules.
    `tokenizer` is `policy_tokenizer(cfg)` when the caller already loaded it (None: loaded here).

    Raises:
        ValueError: an unknown preset, or a model vocabulary that does not cover the tokenizer's
            ids (a preset's must equal it; a checkpoint's may be padded beyond it).
    """
    tokenizer = policy_tokenizer(cfg) if tokenizer is None else tokenizer
    if cfg.hf_path is not None:
        switches = {k: v for k, v in cfg.overrides.items() if k in HF_OVERRIDES}
        model = load_hf(cfg.hf_path, dtype=cfg.dtype, mesh=mesh, **switches)
        if model.config.vocab_size < len(tokenizer):
            raise ValueError(
                f"the checkpoint at {cfg.hf_path} has vocab_size={model.config.vocab_size}, "
                f"fewer than its tokenizer's {len(tokenizer)} ids"
            )
        return tokenizer, model
    if cfg.preset not in PRESETS:
        raise ValueError(f"model.preset={cfg.preset!r} is not one of {sorted(PRESETS)}")
    vocab = cfg.overrides.get("vocab_size", len(tokenizer))
    if vocab != len(tokenizer):
        raise ValueError(
            f"model.overrides.vocab_size={vocab} does not match the tokenizer's {len(tokenizer)} "
            f"ids; leave it unset (the vocabulary is sized to the tokenizer)"
        )
    overrides = {"vocab_size": len(tokenizer), "dtype": cfg.dtype, **cfg.overrides}
    model = Decoder(PRESETS[cfg.preset](**overrides), rngs=nnx.Rngs(seed))
    if mesh is not None:
        model = parallel.shard_model(model, mesh)
    return tokenizer, model


def prompt_stream(
    family: base.TaskFamily,
    prompts_per_step: int,
    *,
    seed: int,
    num_tasks: int | None = None,
    split: str = "train",
):
    """An endless iterator of `prompts_per_step`-task batches (this process's shard), shuffled by
    `seed`, whose `get_state()`/`set_state()` checkpoint its position exactly.

    `num_tasks` is the epoch size; None takes the family's `num_examples(split)` for a
    `SizedFamily` (finite datasets), else 100,000 generated instances.
    """
    if num_tasks is None:
        num_tasks = family.num_examples(split) if isinstance(family, base.SizedFamily) else 100_000
    return task_batches(
        FamilySource(family, split, num_tasks),
        batch_size=prompts_per_step,
        seed=seed,
        shard_index=jax.process_index(),
        shard_count=jax.process_count(),
    )
