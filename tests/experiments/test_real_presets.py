"""The `real` presets: a published small model (Qwen3-0.6B shapes) in bf16 on one device."""

import importlib

import pytest
from rljax.experiments import dry_run

EXPERIMENTS = ("grpo", "echo", "delta", "golong", "anti_sd", "rubric_em", "poly_epo")

# Qwen3-0.6B (config.json of Qwen/Qwen3-0.6B): 28 layers, hidden 1024, 16 query / 8 kv heads of
# 128, MLP 3072, vocab 151936, tied embeddings. Per layer: q 1024*2048 + k,v 2*1024*1024 +
# o 2048*1024 + q/k norms 2*128 + MLP 3*1024*3072 + 2 norms 2*1024 = 15,730,944.
QWEN3_0_6B_PARAMS = 28 * 15_730_944 + 151_936 * 1024 + 1024  # = 596,049,920 (0.44B non-embedding)


@pytest.mark.parametrize("name", EXPERIMENTS)
def test_real_preset_passes_the_dry_run(name):
    config = importlib.import_module(f"rljax.experiments.{name}").PRESETS["real"]()
    assert config.model.dtype == "bfloat16" and config.model.hf_path is None
    assert config.sft.steps == 0  # an instruction-tuned checkpoint needs no warm start
    summary = dry_run.check(config)
    assert summary["devices"] == 1
    assert summary["num_params"] == QWEN3_0_6B_PARAMS
    assert summary["per_device_param_gib"] + summary["per_device_optimizer_gib"] < 16
