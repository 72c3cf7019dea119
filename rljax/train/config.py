"""Experiment configuration: nested frozen dataclasses, JSON round-trip and dotted overrides.

One `ExperimentConfig` fully describes a run (model, task, method, optimiser, trainer, SFT warm start).
Experiments build it from a preset and apply command-line overrides such as
`train.steps=50` or `method.kwargs.coef=0.2`; an override of a field that does not exist stops the
run at start-up with a message naming the field and the fields that do exist.
"""

from __future__ import annotations

import ast
import dataclasses
import json
import math
import os
import types
import typing
from typing import Any


@dataclasses.dataclass(frozen=True)
class ModelSection:
    """Which policy network to build.

    Attributes:
        preset: a name in `rljax.models.PRESETS` (ignored when `hf_path` is set).
        overrides: ModelConfig fields replacing the preset's (e.g. {"num_layers": 2}).
        hf_path: a local Hugging Face checkpoint directory to load instead of a preset (weights,
            tokenizer, chat template and the eos ids of its `generation_config.json`); only the
            `remat` and `scan_layers` overrides apply to it.
        dtype: parameter/compute dtype name.
        chat_template_kwargs: variables passed to the tokenizer's chat template, e.g.
            {"enable_thinking": False} (Qwen3) or {"date_string": "26 Jul 2024"} (Llama 3.1+,
            otherwise today's date): fixed in the config, so a run resumed on a later day renders
            the same prompts.
        require_hf_path: refuse to start without `hf_path` (the `real` presets: their shapes
            describe a published checkpoint, and a random one would otherwise train silently).
    """

    preset: str = "tiny"
    overrides: dict = dataclasses.field(default_factory=dict)
    hf_path: str | None = None
    dtype: str = "float32"
    chat_template_kwargs: dict = dataclasses.field(default_factory=dict)
    require_hf_path: bool = False


@dataclasses.dataclass(frozen=True)
class TaskSection:
    """What the policy is trained on and how rollouts are sampled.

    Attributes:
        family: a task family name in `rljax.envs.registry`.
        kwargs: keyword arguments of the family's factory (difficulty knobs, seed of the world...).
        prompts_per_step: P, prompts per RL step.
        group_size: G, samples per prompt.
        max_new_tokens: generation budget per assistant turn.
        max_turns: assistant turns per episode (1 = single-turn).
        max_len: context budget (tokens) of a whole episode.
        temperature: sampling temperature (the same tau is used in the loss).
        top_k: 0 = off.
        top_p: 1.0 = off.
        num_tasks: training-epoch size (None: the family's `num_examples`, else 100,000).
    """

    family: str = "arithmetic"
    kwargs: dict = dataclasses.field(default_factory=dict)
    prompts_per_step: int = 8
    group_size: int = 8
    max_new_tokens: int = 16
    max_turns: int = 1
    max_len: int = 64
    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 1.0
    num_tasks: int | None = None


@dataclasses.dataclass(frozen=True)
class MethodSection:
    """The RL method: a registry name from `rljax.methods.METHODS` and its keyword arguments."""

    name: str = "grpo"
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class OptimSection:
    """AdamW with linear warm-up, cosine or constant decay and global-norm clipping (optax)."""

    learning_rate: float = 3e-4
    warmup_steps: int = 0
    schedule: str = "constant"
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.999
    grad_clip: float = 1.0


@dataclasses.dataclass(frozen=True)
class TrainSection:
    """The RL loop.

    Attributes:
        steps: RL steps (one rollout batch each).
        minibatches: optimiser updates per rollout batch (1 = on-policy, ratio 1).
        microbatches: gradient-accumulation chunks per mini-batch (exact global normalisation).
        seed: the run's only source of randomness.
        mesh: mesh spec for `rljax.parallel.make_mesh` ("auto", "data=2,fsdp=2,tensor=2", ...).
        kernel_impl: `kernels.token_stats` implementation ("auto", "pallas", "xla_chunked", "reference").
        checkpoint_every: steps between checkpoints (0 = only at the end).
        keep_checkpoints: how many recent checkpoints to keep.
        eval_every: steps between held-out evaluations (0 = only at the end).
        eval_prompts: held-out prompts per evaluation.
        eval_samples: samples per held-out prompt (pass@k for k = 1..eval_samples).
        log_every: steps between console log lines.
        max_gen_rounds: DAPO dynamic sampling: rollout batches drawn per step at most.
        reflection: RubricEM's reflection phase and windowed curriculum: None = off, else the
            keyword arguments of `rljax.train.reflection_phase.ReflectionPhase` ({} = paper defaults).
        max_skipped_updates: consecutive optimiser updates skipped for a non-finite gradient after
            which the run stops with an error (keeping its last good checkpoint).
        start_fresh_if_unreadable: when checkpoints exist but none is readable, move them aside and
            start from step 0 instead of stopping.
        export_hf: at the end of the run, write the policy with its tokenizer and generation
            config to `<run_dir>/hf/` (`rljax.train.export`); None: when `model.hf_path` is set.
    """

    steps: int = 20
    minibatches: int = 1
    microbatches: int = 1
    seed: int = 0
    mesh: str = "auto"
    kernel_impl: str = "auto"
    checkpoint_every: int = 10
    keep_checkpoints: int = 2
    eval_every: int = 10
    eval_prompts: int = 32
    eval_samples: int = 4
    log_every: int = 1
    max_gen_rounds: int = 4
    reflection: dict | None = None
    max_skipped_updates: int = 10
    start_fresh_if_unreadable: bool = False
    export_hf: bool | None = None


@dataclasses.dataclass(frozen=True)
class SFTSection:
    """Supervised warm start on scripted-expert demonstrations (0 steps = skip).

    `seed` seeds the warm start (initial parameters, demonstrations and their order); None uses
    `train.seed`. A fixed value shares one warm start across a study's seeds, which then vary
    only the RL.
    """

    steps: int = 0
    batch_size: int = 32
    learning_rate: float = 1e-3
    noise: float = 0.0
    num_demos: int = 512
    seed: int | None = None


@dataclasses.dataclass(frozen=True)
class ExperimentConfig:
    """A whole run. `name` is the experiment (and run-directory) name."""

    name: str = "grpo"
    model: ModelSection = ModelSection()
    task: TaskSection = TaskSection()
    method: MethodSection = MethodSection()
    optim: OptimSection = OptimSection()
    train: TrainSection = TrainSection()
    sft: SFTSection = SFTSection()

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self, *, mesh: Any = None, ignore: tuple[str, ...] = ()) -> "ExperimentConfig":
        """Checks every field (see `validate`); returns self so calls can be chained."""
        validate(self, mesh=mesh, ignore=ignore)
        return self

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict) -> "ExperimentConfig":
        return _from_dict(cls, data, path="")


def _from_dict(cls, data: dict, path: str):
    if not isinstance(data, dict):
        raise ValueError(f"config section {path or '<root>'} must be a mapping, got {data!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise ValueError(
            f"unknown config field(s) {sorted(unknown)} in {path or '<root>'}; "
            f"expected some of {sorted(names)}"
        )
    kwargs = {}
    for name, value in data.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _from_dict(hint, value, f"{path}{name}.")
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _coerce(text: str, hint: Any, key: str) -> Any:
    """Parses an override value according to the field's type hint."""
    if hint is str:
        return text
    if hint in (str | None, typing.Optional[str]):
        return None if text in ("None", "null") else text
    try:
        value = ast.literal_eval(text)
    except (ValueError, SyntaxError):
        value = text
    origin = typing.get_origin(hint)
    allowed = typing.get_args(hint) if origin in (typing.Union, types.UnionType) else (hint,)
    for typ in allowed:
        typ = typing.get_origin(typ) or typ
        if typ is type(None) and value is None:
            return None
        if typ is float and isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if typ is not type(None) and isinstance(value, typ):
            return value
    raise ValueError(f"override {key}={text!r}: expected a value of type {hint}, got {value!r}")


def apply_overrides(config: ExperimentConfig, overrides: list[str]) -> ExperimentConfig:
    """Applies `section.field=value` (or `section.dictfield.key=value`) overrides.

    Values are Python literals (`3`, `0.2`, `'text'`, `[1, 2]`, `{"a": 1}`, `None`); bare words are
    strings. A field that does not exist raises ValueError naming it and the fields that do.
    """
    for item in overrides:
        if "=" not in item:
            raise ValueError(f"override {item!r} must look like section.field=value")
        key, text = item.split("=", 1)
        parts = key.strip().split(".")
        config = _set(config, parts, text, key)
    return config


def _set(node: Any, parts: list[str], text: str, key: str) -> Any:
    head, rest = parts[0], parts[1:]
    if dataclasses.is_dataclass(node):
        names = [f.name for f in dataclasses.fields(node)]
        if head not in names:
            raise ValueError(
                f"override {key!r}: {type(node).__name__} has no field {head!r}; fields are {names}"
            )
        hint = typing.get_type_hints(type(node))[head]
        current = getattr(node, head)
        if rest:
            if not (dataclasses.is_dataclass(current) or isinstance(current, dict)):
                raise ValueError(
                    f"override {key!r}: {head!r} is a {type(current).__name__}, not a section"
                )
            return dataclasses.replace(node, **{head: _set(current, rest, text, key)})
        if dataclasses.is_dataclass(current):
            raise ValueError(f"override {key!r}: {head!r} is a section; set one of its fields")
        if isinstance(current, dict):  # a whole free-form dict, e.g. task.kwargs={"digits": 1}
            value = _coerce(text, dict, key)
            return dataclasses.replace(node, **{head: value})
        return dataclasses.replace(node, **{head: _coerce(text, hint, key)})
    # A free-form dict (model.overrides, task.kwargs, method.kwargs): keys are validated later by
    # the factory that receives them (unknown keyword arguments are reported there).
    new = dict(node)
    if rest:
        new[head] = _set(new.get(head, {}), rest, text, key)
    else:
        try:
            new[head] = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            new[head] = text
    return new


# The ModelConfig switches that apply to a checkpoint loaded from model.hf_path.
HF_OVERRIDES = frozenset({"remat", "scan_layers"})


class ConfigError(ValueError):
    """One or more config fields are out of range; the message lists each field, value and rule."""


def validate(config: ExperimentConfig, *, mesh: Any = None, ignore: tuple[str, ...] = ()) -> None:
    """Checks every field of `config` before anything is built or compiled.

    Sizes must be positive integers, rates and coefficients finite, names registered, the batch
    divisible into mini-batches, micro-batches and the mesh's data-parallel ways. All problems are
    reported at once.

    Args:
        config: the run's config (as built by a preset, overrides or the Python API).
        mesh: the run's mesh; None builds it from `train.mesh` (no compilation).
        ignore: fields not to check (the driver skips `task.family`/`method.name` and their
            kwargs when it is given a family or method object instead of a registry name).

    Raises:
        ConfigError listing each bad field as `section.field=value: what is allowed`.
    """
    from rljax import methods, parallel
    from rljax.envs import registry
    from rljax.kernels import IMPLS
    from rljax.models import PRESETS
    from rljax.train.optim import SCHEDULES

    errors: list[str] = []

    def bad(key: str, value: Any, allowed: str) -> None:
        if key.split("[")[0] not in ignore and not any(key.startswith(f"{i}.") for i in ignore):
            errors.append(f"{key}={value!r}: {allowed}")

    def integer(key: str, value: Any, low: int) -> bool:
        ok = isinstance(value, int) and not isinstance(value, bool) and value >= low
        if not ok:
            bad(key, value, f"must be an integer >= {low}")
        return ok

    def real(key: str, value: Any, low: float, high: float = math.inf, closed: str = "") -> None:
        """A finite number in (low, high); `closed` holds "low" and/or "high" for [ or ]."""
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        ok = ok and math.isfinite(value)
        ok = ok and (value >= low if "low" in closed else value > low)
        ok = ok and (value <= high if "high" in closed else value < high)
        if not ok:
            interval = (
                f"{'[' if 'low' in closed else '('}{low}, "
                f"{high if high != math.inf else 'inf'}{']' if 'high' in closed else ')'}"
            )
            bad(key, value, f"must be a finite number in {interval}")

    def choice(key: str, value: Any, allowed, what: str = "") -> None:
        if value not in allowed:
            unknown = f" (unknown {what} {value!r})" if what else ""
            bad(key, value, f"must be one of {sorted(allowed)}{unknown}")

    def finite_tree(key: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                finite_tree(f"{key}.{k}", v)
        elif isinstance(value, (list, tuple)):
            for i, v in enumerate(value):
                finite_tree(f"{key}[{i}]", v)
        elif isinstance(value, float) and not math.isfinite(value):
            bad(key, value, "must be finite")

    if not isinstance(config.name, str) or not config.name or "/" in config.name:
        bad("name", config.name, "must be a non-empty string without '/'")

    m = config.model
    if m.hf_path is None and m.require_hf_path is True:
        bad(
            "model.hf_path",
            None,
            f"the {config.name!r} preset trains a published checkpoint (model.require_hf_path): "
            "pass --set model.hf_path=/path/to/checkpoint, a directory with config.json, "
            "safetensors and tokenizer files (e.g. Qwen/Qwen3-0.6B)",
        )
    if not isinstance(m.require_hf_path, bool):
        bad("model.require_hf_path", m.require_hf_path, "must be a bool")
    if not isinstance(m.chat_template_kwargs, dict):
        bad("model.chat_template_kwargs", m.chat_template_kwargs, "must be a dict")
    if m.hf_path is not None and isinstance(m.overrides, dict):
        if set(m.overrides) - HF_OVERRIDES:
            bad(
                "model.overrides",
                m.overrides,
                f"with model.hf_path only {sorted(HF_OVERRIDES)} apply (the checkpoint's "
                "config.json fixes the shapes)",
            )
    if m.hf_path is None:
        choice("model.preset", m.preset, PRESETS, "model preset")
        if m.preset in PRESETS and isinstance(m.overrides, dict):
            try:
                PRESETS[m.preset](**m.overrides)
            except (TypeError, ValueError) as err:
                bad("model.overrides", m.overrides, str(err))
    elif not (
        isinstance(m.hf_path, str) and os.path.isfile(os.path.join(m.hf_path, "config.json"))
    ):
        bad("model.hf_path", m.hf_path, "must be a directory holding a Hugging Face config.json")
    if not isinstance(m.overrides, dict):
        bad("model.overrides", m.overrides, "must be a dict of ModelConfig fields")
    choice("model.dtype", m.dtype, ("float32", "bfloat16", "float16"))

    t = config.task
    choice("task.family", t.family, registry.names(), "task family")
    if not isinstance(t.kwargs, dict):
        bad("task.kwargs", t.kwargs, "must be a dict")
    integer("task.prompts_per_step", t.prompts_per_step, 1)
    if integer("task.group_size", t.group_size, 1) and t.group_size < 2:
        bad("task.group_size", t.group_size, "group-relative advantages need >= 2 samples")
    integer("task.max_new_tokens", t.max_new_tokens, 1)
    integer("task.max_turns", t.max_turns, 1)
    if integer("task.max_len", t.max_len, 2) and isinstance(t.max_new_tokens, int):
        if t.max_len <= t.max_new_tokens:
            bad("task.max_len", t.max_len, f"must exceed task.max_new_tokens={t.max_new_tokens}")
    real("task.temperature", t.temperature, 0.0)
    integer("task.top_k", t.top_k, 0)
    real("task.top_p", t.top_p, 0.0, 1.0, "high")
    if t.num_tasks is not None:
        integer("task.num_tasks", t.num_tasks, 1)

    me = config.method
    choice("method.name", me.name, methods.METHODS, "method")
    if not isinstance(me.kwargs, dict):
        bad("method.kwargs", me.kwargs, "must be a dict")
    else:
        count = len(errors)
        finite_tree("method.kwargs", me.kwargs)
        if count == len(errors) and me.name in methods.METHODS:
            try:
                methods.make_method(me.name, **me.kwargs)
            except (TypeError, ValueError) as err:
                bad("method.kwargs", me.kwargs, str(err))

    o, tr = config.optim, config.train
    real("optim.learning_rate", o.learning_rate, 0.0)
    total = tr.steps * tr.minibatches if isinstance(tr.steps, int) else None
    if integer("optim.warmup_steps", o.warmup_steps, 0) and isinstance(total, int):
        if o.warmup_steps > max(total, 1):
            bad("optim.warmup_steps", o.warmup_steps, f"must be <= {total} optimiser updates")
    choice("optim.schedule", o.schedule, SCHEDULES)
    real("optim.weight_decay", o.weight_decay, 0.0, closed="low")
    real("optim.b1", o.b1, 0.0, 1.0, "low")
    real("optim.b2", o.b2, 0.0, 1.0, "low")
    real("optim.grad_clip", o.grad_clip, 0.0)

    integer("train.steps", tr.steps, 1)
    integer("train.seed", tr.seed, 0)
    choice("train.kernel_impl", tr.kernel_impl, IMPLS)
    integer("train.checkpoint_every", tr.checkpoint_every, 0)
    integer("train.keep_checkpoints", tr.keep_checkpoints, 1)
    integer("train.eval_every", tr.eval_every, 0)
    integer("train.eval_prompts", tr.eval_prompts, 0)
    integer("train.eval_samples", tr.eval_samples, 1)
    integer("train.log_every", tr.log_every, 1)
    integer("train.max_gen_rounds", tr.max_gen_rounds, 1)
    integer("train.max_skipped_updates", tr.max_skipped_updates, 1)
    if tr.reflection is not None and not isinstance(tr.reflection, dict):
        bad("train.reflection", tr.reflection, "must be None or a dict of ReflectionPhase kwargs")
    if tr.export_hf is not None and not isinstance(tr.export_hf, bool):
        bad(
            "train.export_hf",
            tr.export_hf,
            "must be None (export when model.hf_path is set) or a bool",
        )
    if not isinstance(tr.start_fresh_if_unreadable, bool):
        bad("train.start_fresh_if_unreadable", tr.start_fresh_if_unreadable, "must be a bool")
    sizes_ok = all(
        isinstance(x, int) and not isinstance(x, bool) and x >= 1
        for x in (t.prompts_per_step, t.group_size)
    )
    if integer("train.minibatches", tr.minibatches, 1) and sizes_ok:
        batch = t.prompts_per_step * t.group_size
        if batch % tr.minibatches:
            bad(
                "train.minibatches",
                tr.minibatches,
                f"must divide the batch of {batch} sequences (prompts_per_step * group_size)",
            )
        elif integer("train.microbatches", tr.microbatches, 1):
            rows = batch // tr.minibatches
            if rows % tr.microbatches:
                bad(
                    "train.microbatches",
                    tr.microbatches,
                    f"must divide a mini-batch of {rows} rows",
                )
            try:
                mesh = parallel.make_mesh(tr.mesh) if mesh is None else mesh
            except ValueError as err:
                bad("train.mesh", tr.mesh, str(err))
            else:
                try:
                    parallel.check_batch_size(rows, mesh)
                except ValueError as err:
                    bad("train.mesh", tr.mesh, f"a mini-batch of {rows} rows: {err}")

    sf = config.sft
    integer("sft.steps", sf.steps, 0)
    real("sft.learning_rate", sf.learning_rate, 0.0)
    real("sft.noise", sf.noise, 0.0, 1.0, "low high")
    if sf.seed is not None:
        integer("sft.seed", sf.seed, 0)
    if integer("sft.batch_size", sf.batch_size, 1) and integer("sft.num_demos", sf.num_demos, 1):
        if isinstance(sf.steps, int) and sf.steps > 0 and sf.num_demos < sf.batch_size:
            bad("sft.num_demos", sf.num_demos, f"must be >= sft.batch_size={sf.batch_size}")

    if errors:
        raise ConfigError("invalid config:\n  " + "\n  ".join(errors))
