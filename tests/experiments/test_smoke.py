"""Every experiment's `smoke` preset runs end to end: SFT warm start, rollouts, the method's
prepare and update, evaluation, checkpoints and the report, logging the method's diagnostics."""

import importlib
import json
import math

import pytest
from rljax.experiments import cli

# The diagnostics each method must log (on top of loss, reward and entropy).
DIAGNOSTICS = {
    "grpo": ("clip_fraction", "approx_kl"),
    "echo": ("env_loss", "ce_env_per_token"),
    "delta": ("delta_coef_std", "delta_coef_min", "delta_coef_max"),
    "golong": ("tmn_task_cv",),
    "anti_sd": ("anti_sd_gate", "teacher_entropy_median", "anti_sd_penalty_mean"),
    "rubric_em": ("stage_adv_abs_0", "stage_adv_abs_3", "kl"),
    "poly_epo": ("strategy_clusters", "successful_strategies", "strategy_entropy"),
}


@pytest.mark.parametrize("name", sorted(DIAGNOSTICS))
def test_smoke_preset_runs_end_to_end(tmp_path, name):
    module = importlib.import_module(f"rljax.experiments.{name}")
    run_dir = tmp_path / "runs" / name
    page = cli.main(name, module.PRESETS, ["--preset", "smoke", "--run-dir", str(run_dir)])
    assert page == run_dir / "report" / "README.md" and page.exists()
    assert (run_dir / "report" / "curves.png").stat().st_size > 0
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        for key in ("loss", "reward", "entropy", "grad_norm", *DIAGNOSTICS[name]):
            assert key in row, f"{name} does not log {key}"
            assert math.isfinite(row[key]), f"{name}: {key} = {row[key]}"
    evals = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines()]
    assert [e["step"] for e in evals] == [0, 1, 2]
    assert all(0.0 <= e["pass@1"] <= e["pass@2"] <= 1.0 for e in evals)
    assert (run_dir / "checkpoints" / "2").exists()
