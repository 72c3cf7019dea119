"""Studies: several arms (experiment configs) x several seeds over one shared setup.

A study is one module here (one per paper, plus `grpo_family`) that defines `STUDY`, a `Study`.
Every arm shares the task, the model, the SFT warm start and the held-out evaluation of the study's
base config, and the same training budget; an arm only changes what it is about (the method, its
knobs, a tuned learning rate). `python -m rljax.experiments.reproduce <study>` runs arms x seeds
and writes the report with intervals over seeds and paired differences to the baseline arm.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import math
import pkgutil
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol

from rljax.train import config as config_lib
from rljax.train.config import ExperimentConfig

if TYPE_CHECKING:
    from rljax.train.loop import Trainer


class Probe(Protocol):
    """Measures the policy loaded in `trainer`; `smoke` asks for the smallest meaningful sizes."""

    def __call__(self, trainer: "Trainer", *, smoke: bool) -> dict: ...


# What every arm of a study must share with the base config (the shared warm start, task and
# evaluation, and an equal RL budget). The seed is set by the study, never by an arm.
SHARED_SECTIONS = ("model", "task", "sft")
SHARED_TRAIN_FIELDS = ("steps", "eval_every", "eval_prompts", "eval_samples", "seed")


@dataclasses.dataclass(frozen=True)
class Study:
    """Arms x seeds over one shared setup.

    Attributes:
        name: the study's name (its module name; the report goes to experiments/results/<name>/).
        title: one line for the report's heading.
        description: a paragraph for the report: the question, the setup, what to expect.
        config: the full run's base config (shared model, task, SFT warm start, evaluation and
            budget); `train.seed` is replaced per seed.
        smoke_config: the `--smoke` base config: 2 RL steps, a tiny model and evaluation.
        arms: {arm name: overrides}, each override a `section.field=value` string as for `--set`.
        baseline: the arm every other arm is compared with, paired by seed.
        metric: the held-out metric of the table (a key of the trainer's `eval.jsonl`).
        target: the value of `metric` whose first crossing gives "steps to target".
        diagnostics: training metrics plotted per arm with a band over seeds (an arm that does not
            log a key is left out of that panel).
        tuning: how the arms were tuned (the equal-effort statement quoted in the report).
        seeds: the default number of seeds (seed values 0 .. seeds-1).
        budget_minutes: the wall-time budget the full study is designed for.
        probe: measurements of a trained policy beyond the trainer's held-out evaluation, run once
            on each run's final checkpoint and once per seed on the shared SFT warm start (the
            "base model" of the report): `probe(trainer, smoke=...)` with the policy loaded in
            `trainer`, returning `{"scalars": {name: number}, "curves": {name: {"x": [...],
            "y": [...]}}}` (either key may be left out; a curve's x must not depend on the run).
            The report tabulates every scalar per arm with its interval and paired difference,
            and draws every curve with a band over seeds.
        sft_arms: arms that may change the `sft` section (e.g. a warm start on fewer
            demonstrations); each distinct SFT of a seed is trained once and shared by the arms
            that use it. Every other arm keeps the base config's SFT.
        arm_task_kwargs: task-family kwargs an arm may change although the task section is
            shared: only knobs that leave the prompts, rewards and evaluation as they are and
            change what the method is told (Poly-EPO's cluster-judge noise) or only what the
            scripted expert demonstrates (RubricEM's unstructured warm start). The SFT cache is
            keyed by the whole task section, so such an arm trains its own warm start (the same
            seed as the shared one).
        contrasts: comparisons beyond the baseline, each `(arm, reference, measures)`: the
            report adds `arm - reference` paired by seed for each measure, the held-out `metric`
            (its final value) or a probe scalar (e.g. two ablations of the same method).
    """

    name: str
    title: str
    description: str
    config: Callable[[], ExperimentConfig]
    smoke_config: Callable[[], ExperimentConfig]
    arms: Mapping[str, tuple[str, ...]]
    baseline: str
    metric: str
    target: float
    diagnostics: tuple[str, ...]
    tuning: str
    seeds: int = 3
    budget_minutes: float = 90.0
    probe: Probe | None = None
    sft_arms: tuple[str, ...] = ()
    arm_task_kwargs: tuple[str, ...] = ()
    contrasts: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def __post_init__(self):
        if self.baseline not in self.arms:
            raise ValueError(
                f"study {self.name!r}: baseline {self.baseline!r} is not one of its arms "
                f"{sorted(self.arms)}"
            )
        if self.seeds < 1:
            raise ValueError(f"study {self.name!r}: seeds must be >= 1, got {self.seeds}")
        unknown = sorted(set(self.sft_arms) - set(self.arms))
        if unknown:
            raise ValueError(
                f"study {self.name!r}: sft_arms {unknown} are not arms of it {sorted(self.arms)}"
            )
        for contrast in self.contrasts:
            arm, reference, measures = contrast
            if arm not in self.arms or reference not in self.arms or arm == reference:
                raise ValueError(
                    f"study {self.name!r}: contrast {contrast!r} must compare two different arms "
                    f"of {sorted(self.arms)}"
                )
            if not measures or (self.probe is None and set(measures) != {self.metric}):
                raise ValueError(
                    f"study {self.name!r}: contrast {contrast!r} needs measures: {self.metric!r} "
                    "or, with a probe, its scalars"
                )

    def run_config(self, arm: str, seed: int, *, smoke: bool = False) -> ExperimentConfig:
        """The config of one run: the (smoke) base config, the arm's overrides, the seed.

        Raises ValueError when the arm is unknown or when its overrides change what every arm must
        share (model, task, SFT warm start, evaluation, RL steps).
        """
        if arm not in self.arms:
            raise ValueError(
                f"study {self.name!r} has no arm {arm!r}; arms are {sorted(self.arms)}"
            )
        base = (self.smoke_config if smoke else self.config)()
        config = config_lib.apply_overrides(base, list(self.arms[arm]))
        config = dataclasses.replace(
            config,
            name=f"{self.name}-{arm}",
            train=dataclasses.replace(config.train, seed=seed),
        )
        seeded = dataclasses.replace(base, train=dataclasses.replace(base.train, seed=seed))
        sections = tuple(s for s in SHARED_SECTIONS if not (s == "sft" and arm in self.sft_arms))
        _check_shared(self.name, arm, seeded, config, sections, self.arm_task_kwargs)
        return config


def _check_shared(
    study: str,
    arm: str,
    base: ExperimentConfig,
    config: ExperimentConfig,
    sections: tuple[str, ...],
    free_task_kwargs: tuple[str, ...],
) -> None:
    def section(cfg: ExperimentConfig, name: str):
        value = getattr(cfg, name)
        if name == "task":
            kwargs = {k: v for k, v in value.kwargs.items() if k not in free_task_kwargs}
            value = dataclasses.replace(value, kwargs=kwargs)
        return value

    shared = {s: section(base, s) for s in sections}
    shared.update({f"train.{f}": getattr(base.train, f) for f in SHARED_TRAIN_FIELDS})
    mine = {s: section(config, s) for s in sections}
    mine.update({f"train.{f}": getattr(config.train, f) for f in SHARED_TRAIN_FIELDS})
    changed = sorted(k for k in shared if _canon(shared[k]) != _canon(mine[k]))
    if changed:
        raise ValueError(
            f"study {study!r}, arm {arm!r}: overrides change {changed}, which every arm must "
            "share (the warm start, task, evaluation and budget); change them in the study's base "
            "config instead" + ("" if "sft" not in sections else ", or list the arm in sft_arms")
        )


def check_probe(study: str, result: Any) -> dict:
    """`result` of a study's probe in canonical form (plain floats); ValueError naming what is wrong."""
    if not isinstance(result, Mapping) or set(result) - {"scalars", "curves"}:
        raise ValueError(
            f"study {study!r}: a probe returns {{'scalars': {{...}}, 'curves': {{...}}}}, got "
            f"{result!r:.200}"
        )
    scalars, curves = {}, {}
    for name, value in dict(result.get("scalars", {})).items():
        value = float(value)
        if not math.isfinite(value):
            raise ValueError(f"study {study!r}: probe scalar {name!r} is {value}, expected finite")
        scalars[str(name)] = value
    for name, curve in dict(result.get("curves", {})).items():
        x, y = [float(v) for v in curve["x"]], [float(v) for v in curve["y"]]
        if len(x) != len(y) or not x:
            raise ValueError(
                f"study {study!r}: probe curve {name!r} needs x and y of one non-zero length, "
                f"got {len(x)} and {len(y)}"
            )
        curves[str(name)] = {"x": x, "y": y}
    return {"scalars": scalars, "curves": curves}


def _canon(value) -> str:
    if dataclasses.is_dataclass(value):
        value = dataclasses.asdict(value)
    return json.dumps(value, sort_keys=True, default=str)


def names() -> list[str]:
    """The studies that exist (the modules of this package)."""
    return sorted(m.name for m in pkgutil.iter_modules(__path__) if not m.name.startswith("_"))


def get(name: str) -> Study:
    """The `STUDY` of module `rljax.experiments.studies.<name>` (ValueError if there is none)."""
    if name not in names():
        raise ValueError(f"unknown study {name!r}; expected one of {names()}")
    return importlib.import_module(f"{__name__}.{name}").STUDY


__all__ = ["Probe", "Study", "check_probe", "get", "names"]
