"""Task-family registry (name -> factory) and the split rule every family shares.

The registry is the string edge used by the CLI and the TFDS builders: `make("countdown",
num_numbers=4)` builds a family. Built-in families are registered by import path, so importing
this module imports no family; other modules add theirs with `register`.

Split rule: an instance belongs to "train" or "heldout" by a hash of its content, never by its
index, so the two splits share no instance whatever the seed or index. A family draws candidate
instances from `instance_rng(seed, split, index)` until one hashes into the requested split
(`sample_in_split`).
"""

from __future__ import annotations

import hashlib
import importlib
from typing import Any, Callable, TypeVar

import numpy as np

from rljax.envs.base import SPLITS, TaskFamily, check_split

Instance = TypeVar("Instance")
Factory = Callable[..., TaskFamily]

_FACTORIES: dict[str, Factory | str] = {
    "arithmetic": "rljax.envs.arithmetic:ArithmeticFamily",
    "countdown": "rljax.envs.countdown:CountdownFamily",
    "terminal_find_value": "rljax.envs.terminal.tasks:FindValueFamily",
    "terminal_write_value": "rljax.envs.terminal.tasks:WriteValueFamily",
    "terminal_backup_file": "rljax.envs.terminal.tasks:BackupFileFamily",
    "terminal_append_line": "rljax.envs.terminal.tasks:AppendLineFamily",
    "terminal_count_files": "rljax.envs.terminal.tasks:CountFilesFamily",
    "terminal_sum_numbers": "rljax.envs.terminal.tasks:SumNumbersFamily",
    "longcontext": "rljax.envs.longcontext:LongContextFamily",
    "longcontext/precise_retrieval": "rljax.envs.longcontext:PreciseRetrievalFamily",
    "longcontext/comprehension": "rljax.envs.longcontext:ComprehensionFamily",
    "longcontext/exhaustive_retrieval": "rljax.envs.longcontext:ExhaustiveRetrievalFamily",
    "longcontext/numerical_reasoning": "rljax.envs.longcontext:NumericalReasoningFamily",
    "longcontext/structured_extraction": "rljax.envs.longcontext:StructuredExtractionFamily",
    "longcontext/structured_matching": "rljax.envs.longcontext:StructuredMatchingFamily",
    "longcontext/graded_ranking": "rljax.envs.longcontext:GradedRankingFamily",
    "longcontext/sequence_ordering": "rljax.envs.longcontext:SequenceOrderingFamily",
    "longcontext/summarization": "rljax.envs.longcontext:SummarizationFamily",
    "strategy": "rljax.envs.strategy:HiddenKeyFamily",
    "miniresearch": "rljax.envs.research:MiniResearchFamily",
    "keysearch": "rljax.envs.deliberation:KeySearchFamily",
}


def register(name: str, factory: Factory | str, *, overwrite: bool = False) -> None:
    """Registers a task-family factory under `name`.

    Args:
        name: the registry name, e.g. "terminal".
        factory: a callable `(**kwargs) -> TaskFamily`, or its import path "package.module:attr"
            (imported on first `make`, so registering costs no import).
        overwrite: replace an existing entry instead of raising.
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"name must be a non-empty str, got {name!r}")
    if not (callable(factory) or (isinstance(factory, str) and ":" in factory)):
        raise ValueError(f"factory must be callable or a 'module:attr' path, got {factory!r}")
    if name in _FACTORIES and not overwrite:
        raise ValueError(
            f"task family {name!r} is already registered; pass overwrite=True to replace it"
        )
    _FACTORIES[name] = factory


def names() -> list[str]:
    """Lists the registered task families.

    Returns:
        The registered names, sorted.
    """
    return sorted(_FACTORIES)


def make(name: str, /, **kwargs: Any) -> TaskFamily:
    """Builds the task family registered under `name`.

    Args:
        name: a registered name (see `names()`); positional, so a family knob may be called `name`.
        **kwargs: the family's knobs, passed to its factory.

    Returns:
        The task family.
    """
    if name not in _FACTORIES:
        raise ValueError(f"unknown task family {name!r}; registered: {names()}")
    factory = _FACTORIES[name]
    if isinstance(factory, str):
        module, attr = factory.split(":", 1)
        factory = getattr(importlib.import_module(module), attr)
        _FACTORIES[name] = factory
    family = factory(**kwargs)
    if not isinstance(family, TaskFamily):
        raise ValueError(
            f"factory of {name!r} returned {type(family).__name__}, which is not a TaskFamily"
        )
    return family


def content_split(content: str, *, heldout_fraction: float) -> str:
    """Assigns an instance to a split by a SHA-256 hash of its canonical content.

    Args:
        content: a canonical description of the instance (equal instances, equal strings).
        heldout_fraction: probability mass of "heldout", in (0, 1).

    Returns:
        "heldout" or "train".
    """
    check_heldout_fraction(heldout_fraction)
    digest = hashlib.sha256(content.encode("utf-8")).digest()
    unit = int.from_bytes(digest[:8], "big") / 2.0**64
    return "heldout" if unit < heldout_fraction else "train"


def instance_rng(seed: int, split: str, index: int) -> np.random.Generator:
    """The random generator that instance `index` of `split` draws from.

    Args:
        seed: the family seed (>= 0).
        split: "train" or "heldout".
        index: the instance index (>= 0).

    Returns:
        A numpy Generator seeded by (seed, split, index): same inputs, same stream.
    """
    check_split(split)
    for arg, value in (("seed", seed), ("index", index)):
        if not isinstance(value, (int, np.integer)) or value < 0:
            raise ValueError(f"{arg} must be a non-negative int, got {value!r}")
    return np.random.default_rng([int(seed), SPLITS.index(split), int(index)])


def sample_in_split(
    draw: Callable[[np.random.Generator], tuple[str, Instance]],
    *,
    seed: int,
    split: str,
    index: int,
    heldout_fraction: float,
    max_tries: int = 10_000,
) -> Instance:
    """Draws candidates until one's content hashes into `split` (rejection sampling).

    Args:
        draw: `rng -> (content, instance)`; `content` is the canonical string that is hashed.
        seed: the family seed.
        split: "train" or "heldout".
        index: instance index within the split.
        heldout_fraction: see `content_split`.
        max_tries: give up after this many candidates (the knobs leave the split (nearly) empty).

    Returns:
        The first drawn instance whose content belongs to `split`.
    """
    rng = instance_rng(seed, split, index)
    for _ in range(max_tries):
        content, instance = draw(rng)
        if content_split(content, heldout_fraction=heldout_fraction) == split:
            return instance
    raise ValueError(
        f"no instance of split {split!r} found in {max_tries} draws (index {index}); "
        f"the knobs leave too few distinct instances for heldout_fraction={heldout_fraction}"
    )


def check_heldout_fraction(heldout_fraction: float) -> None:
    """Validates a held-out share.

    Args:
        heldout_fraction: must satisfy 0 < heldout_fraction < 1, else ValueError.
    """
    if not 0.0 < heldout_fraction < 1.0:
        raise ValueError(f"heldout_fraction must be in (0, 1), got {heldout_fraction!r}")
