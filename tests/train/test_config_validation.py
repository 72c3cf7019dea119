"""ExperimentConfig.validate: every field checked at start-up, each error naming field, value, rule."""

import dataclasses
import importlib
import types

import pytest

from rljax.train.config import ConfigError, ExperimentConfig, apply_overrides


def _errors(config, mesh=None):
    with pytest.raises(ConfigError) as info:
        config.validate(mesh=mesh)
    return str(info.value)


def test_default_and_preset_configs_are_valid():
    ExperimentConfig().validate()
    for name in ("grpo", "echo", "delta", "golong", "anti_sd", "rubric_em", "poly_epo"):
        module = importlib.import_module(f"rljax.experiments.{name}")
        for preset in ("smoke", "cpu"):
            module.PRESETS[preset]().validate()


@pytest.mark.parametrize(
    "override, expected",
    [
        ("optim.learning_rate=1e999", "optim.learning_rate=inf: must be a finite number in (0"),
        ("optim.learning_rate=-1.0", "optim.learning_rate=-1.0: must be a finite number in (0"),
        ("train.keep_checkpoints=0", "train.keep_checkpoints=0: must be an integer >= 1"),
        ("task.prompts_per_step=0", "task.prompts_per_step=0: must be an integer >= 1"),
        ("task.group_size=1", "task.group_size=1: group-relative advantages need >= 2"),
        ("task.group_size=-2", "task.group_size=-2: must be an integer >= 1"),
        ("task.max_new_tokens=0", "task.max_new_tokens=0: must be an integer >= 1"),
        ("task.max_len=8", "task.max_len=8: must exceed task.max_new_tokens=16"),
        ("task.temperature=0.0", "task.temperature=0.0: must be a finite number in (0"),
        ("task.top_p=1.5", "task.top_p=1.5: must be a finite number in (0.0, 1.0]"),
        ("train.minibatches=0", "train.minibatches=0: must be an integer >= 1"),
        ("train.minibatches=3", "train.minibatches=3: must divide the batch of 64"),
        ("train.microbatches=0", "train.microbatches=0: must be an integer >= 1"),
        ("train.microbatches=5", "train.microbatches=5: must divide a mini-batch of 64"),
        ("train.steps=0", "train.steps=0: must be an integer >= 1"),
        ("train.eval_samples=0", "train.eval_samples=0: must be an integer >= 1"),
        ("train.log_every=0", "train.log_every=0: must be an integer >= 1"),
        ("train.max_skipped_updates=0", "train.max_skipped_updates=0: must be an integer >= 1"),
        ("train.kernel_impl=fast", "train.kernel_impl='fast': must be one of"),
        ("optim.b2=1.0", "optim.b2=1.0: must be a finite number in [0.0, 1.0)"),
        ("optim.warmup_steps=100", "optim.warmup_steps=100: must be <= 20 optimiser updates"),
        ("optim.schedule=step", "optim.schedule='step': must be one of"),
        ("sft.batch_size=0", "sft.batch_size=0: must be an integer >= 1"),
        ("sft.noise=2.0", "sft.noise=2.0: must be a finite number in [0.0, 1.0]"),
        ("method.name=ppo", "method.name='ppo': must be one of"),
        ("method.kwargs.clip_low=1e999", "method.kwargs.clip_low=inf: must be finite"),
        ("method.kwargs.nonsense=1", "method.kwargs={'nonsense': 1}"),
        ("task.family=chess", "task.family='chess': must be one of"),
        ("model.preset=huge", "model.preset='huge': must be one of"),
        ("model.overrides.num_layers=0", "num_layers must be a positive int, got 0"),
    ],
)
def test_each_bad_field_is_named_with_value_and_rule(override, expected):
    assert expected in _errors(apply_overrides(ExperimentConfig(), [override]))


def test_nan_through_the_python_api_is_refused():
    config = ExperimentConfig()
    config = dataclasses.replace(
        config, optim=dataclasses.replace(config.optim, learning_rate=float("nan"))
    )
    assert "optim.learning_rate=nan: must be a finite number" in _errors(config)


def test_all_problems_are_reported_together():
    config = apply_overrides(
        ExperimentConfig(), ["train.keep_checkpoints=0", "sft.batch_size=-1", "train.steps=0"]
    )
    message = _errors(config)
    for key in ("train.keep_checkpoints=0", "sft.batch_size=-1", "train.steps=0"):
        assert key in message


def test_batch_must_divide_over_the_mesh():
    mesh = types.SimpleNamespace(shape={"data": 4, "fsdp": 3, "tensor": 1})
    message = _errors(ExperimentConfig(), mesh=mesh)
    assert "batch size 64 is not divisible by the data-parallel size 12" in message
    ExperimentConfig().validate(mesh=types.SimpleNamespace(shape={"data": 4, "fsdp": 2}))
