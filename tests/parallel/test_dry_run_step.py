"""The dry run traces every compiled call of an RL step on the pod presets' abstract 256-device mesh
and reports each call's per-device memory."""

import importlib

import pytest
from rljax.experiments import dry_run, grpo

from rljax.train.config import apply_overrides

EXPERIMENTS = ("grpo", "echo", "delta", "golong", "anti_sd", "rubric_em", "poly_epo")
STAGES = ["rollout_prefill", "rollout_decode", "forward", "prepare", "update"]
GIB = 2**30


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_pod_dry_run_traces_the_whole_step(name):
    config = importlib.import_module(f"rljax.experiments.{name}").PRESETS["pod"]()
    summary = dry_run.check(config)
    step = summary["step"]
    assert step["traced"] == STAGES
    resident = summary["per_device_train_state_gib"]
    assert resident >= summary["per_device_param_gib"] + summary["per_device_optimizer_gib"]
    # Every call holds the train state plus its own arrays; decoding also holds the KV cache:
    # 2 (k, v) x layers x rows per device x max_len x kv heads x head dim x 2 bytes (bfloat16).
    assert all(step["per_device_gib"][stage] >= resident - 1e-3 for stage in STAGES)
    model = config.model
    layers, kv_heads, head_dim = {"llama3_1_8b": (32, 8, 128), "qwen3_8b": (36, 8, 128)}[
        model.preset
    ]
    rows = config.task.prompts_per_step * config.task.group_size // 128  # data 8 x fsdp 16
    cache = 2 * layers * rows * config.task.max_len * kv_heads * head_dim * 2 / GIB
    extra = step["per_device_gib"]["rollout_decode"] - resident
    assert cache - 2e-3 <= extra < cache * 1.01 + 0.01  # the summary rounds to 1e-3 GiB


def test_a_batch_that_does_not_split_over_the_mesh_is_refused():
    config = apply_overrides(grpo.PRESETS["pod"](), ["train.mesh=data=16,fsdp=16,tensor=1"])
    config = apply_overrides(config, ["task.prompts_per_step=8", "task.group_size=16"])
    with pytest.raises(ValueError, match="does not divide over the data axes"):
        dry_run.check(config)
