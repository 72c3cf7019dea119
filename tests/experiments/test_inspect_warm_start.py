"""`inspect_warm_start`: trains a study's (smoke) warm start, prints episodes and the probe."""

import json
import sys

from rljax.experiments import inspect_warm_start


def test_smoke_warm_start_is_trained_sampled_and_probed(tmp_path, monkeypatch, capsys):
    run_dir = tmp_path / "run"
    argv = ["inspect_warm_start", "--study", "rubric_em", "--run-dir", str(run_dir), "--smoke",
            "--questions", "1", "--show", "1", "--temperature", "0.5"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    inspect_warm_start.main()
    out = capsys.readouterr().out
    assert list((tmp_path / "sft").iterdir()), "the warm start was not saved beside the run"
    assert "===== train: rewards" in out and "===== heldout: rewards" in out
    assert "<|assistant|>" in out  # an episode was printed
    probe_line = next(line for line in out.splitlines() if line.startswith("probe ("))
    scalars = json.loads(probe_line.split(": ", 1)[1])
    assert {"answer_score", "stage_plan", "reflection_valid_rate"} <= set(scalars)
