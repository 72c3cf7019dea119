"""Experiment CLI: presets resolve, overrides apply, and bad input stops at start-up with a message."""

import importlib

import pytest
from rljax.experiments import cli, dry_run

EXPERIMENTS = ("grpo", "echo", "delta", "golong", "anti_sd", "rubric_em", "poly_epo")


def _presets(name):
    return importlib.import_module(f"rljax.experiments.{name}").PRESETS


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_every_experiment_has_the_three_presets(name):
    presets = _presets(name)
    assert set(presets) == set(cli.PRESET_NAMES)
    for preset in presets.values():
        config = preset()
        assert config.name == name


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_pod_preset_passes_the_shape_dry_run(name):
    summary = dry_run.check(_presets(name)["pod"]())
    assert summary["devices"] == 256
    assert summary["num_params"] > 5e9  # the paper-scale models, never materialised
    assert summary["per_device_param_gib"] < 4
    assert "loss" in summary["loss_metrics"]


def test_overrides_reach_the_config():
    config = cli.resolve(
        "grpo",
        _presets("grpo"),
        "smoke",
        ["train.steps=7", "method.kwargs.clip_high=0.28", "task.kwargs.digits=1"],
    )
    assert config.train.steps == 7
    assert config.method.kwargs == {"clip_high": 0.28}
    assert config.task.kwargs["digits"] == 1


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--preset", "laptop"], "unknown preset 'laptop'"),
        (["--preset", "smoke", "--set", "train.stepz=3"], "has no field 'stepz'"),
        (["--preset", "smoke", "--set", "train.steps=many"], "expected a value of type"),
        (["--preset", "smoke", "--set", "method.name=ppo"], "unknown method 'ppo'"),
        (["--preset", "smoke", "--set", "method.kwargs.clip=0.3"], "has no option(s) ['clip']"),
        (["--preset", "smoke", "--set", "task.family=chess"], "unknown task family 'chess'"),
        (
            ["--preset", "smoke", "--set", "train.mesh=data=3"],
            "needs 3 devices but 8 are available",
        ),
        (
            ["--preset", "smoke", "--set", "train.mesh=data=8", "--set", "task.prompts_per_step=3"],
            "not divisible by the data-parallel size 8",
        ),
    ],
)
def test_bad_input_stops_with_a_clear_message(tmp_path, argv, message):
    with pytest.raises(SystemExit) as err:
        cli.main("grpo", _presets("grpo"), argv + ["--run-dir", str(tmp_path / "run")])
    assert message in str(err.value)
