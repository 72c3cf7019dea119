"""Experiment runs across processes: 2 local processes x 4 CPU devices (gloo collectives) give the
metrics, evaluations and final parameters of 1 process x 8 devices on the same mesh, and a process
started with another config is refused.

Each run is the CLI's smoke preset (SFT warm start, 2 RL steps with rollout, prepare, update,
checkpoint and evaluation), launched by `rljax.experiments.launch`.
"""

import json
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from rljax.experiments import launch

MESH = "train.mesh=data=2,fsdp=4,tensor=1"
# Timing metrics differ between any two runs.
TIMING = {"steps_per_s", "tokens_per_s", "rollout_s"}
# Experiment module -> extra settings that give a nonzero gradient in a 2-step smoke run.
METHODS = {
    "grpo": [],
    "echo": [],
    "delta": [],
    "golong": [],
    "anti_sd": ["method.kwargs.gate=False"],
    "rubric_em": [],
    "poly_epo": [],
}
# float32, the same programs on the same mesh; the cross-process (gloo) reductions sum in another
# order. Measured (anti_sd smoke, 2 steps): metrics within 5e-7, parameters within 3.6e-5 (Adam
# divides by sqrt(v): a gradient element near zero amplifies a last-bit difference up to ~lr).
METRIC_ATOL, PARAM_ATOL = 1e-5, 1e-4


def _run(tmp_path, name: str, processes: int, extra: list[str], tag: str):
    run_dir = tmp_path / f"{name}-{tag}"
    command = [sys.executable, "-m", f"rljax.experiments.{name}", "--preset", "smoke"]
    command += ["--run-dir", str(run_dir)]
    for setting in [MESH, "train.keep_checkpoints=3", *extra]:
        command += ["--set", setting]
    codes = launch.launch(command, processes=processes, cpu_devices=8 // processes, timeout=900)
    assert codes == [0] * processes, f"{name} with {processes} process(es) exited {codes}"
    return run_dir


def _jsonl(path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line]


def _params(run_dir, step: int) -> dict:
    """The checkpoint's parameters as host arrays (whatever devices wrote them)."""
    path = run_dir / "checkpoints" / str(step) / "state"
    checkpointer = ocp.PyTreeCheckpointer()
    tree = checkpointer.metadata(path).item_metadata.tree
    args = jax.tree.map(lambda _: ocp.RestoreArgs(restore_type=np.ndarray), tree)
    state = checkpointer.restore(path, restore_args=args)
    flat = jax.tree_util.tree_flatten_with_path(state["params"])[0]
    return {jax.tree_util.keystr(key): np.asarray(value) for key, value in flat}


@pytest.mark.slow  # per method: one 2-process and one 1-process smoke run, ~2-3 min on 2 cores
@pytest.mark.parametrize("name", sorted(METHODS))
def test_two_processes_match_one(tmp_path, name):
    two = _run(tmp_path, name, 2, METHODS[name], "2x4")
    one = _run(tmp_path, name, 1, METHODS[name], "1x8")
    metrics_two, metrics_one = _jsonl(two / "metrics.jsonl"), _jsonl(one / "metrics.jsonl")
    assert [m["step"] for m in metrics_two] == [1, 2]
    for a, b in zip(metrics_two, metrics_one):
        assert set(a) == set(b)
        for key in sorted(set(a) - TIMING):
            np.testing.assert_allclose(a[key], b[key], atol=METRIC_ATOL, err_msg=f"{name} {key}")
    for a, b in zip(_jsonl(two / "eval.jsonl"), _jsonl(one / "eval.jsonl"), strict=True):
        assert a == pytest.approx(b, abs=METRIC_ATOL)
    final_two, final_one, start = _params(two, 2), _params(one, 2), _params(one, 1)
    assert set(final_two) == set(final_one)
    changed = max(float(np.abs(final_one[k] - start[k]).max()) for k in final_one)
    if name in ("anti_sd", "echo"):  # losses with a gradient whatever the smoke rewards
        assert changed > 0, f"{name}: the parameters did not change between steps 1 and 2"
    for key in final_one:
        np.testing.assert_allclose(final_two[key], final_one[key], atol=PARAM_ATOL, err_msg=key)


@pytest.mark.slow  # two processes start and stop at the config check: ~20 s
def test_a_process_with_another_config_is_refused(tmp_path, capfd):
    base = [sys.executable, "-c"]
    program = (
        "import os, sys; from rljax.experiments import grpo, cli; "
        "steps = '3' if os.environ['JAX_PROCESS_ID'] == '1' else '2'; "
        f"cli.main('grpo', grpo.PRESETS, ['--preset', 'smoke', '--run-dir', {str(tmp_path)!r}, "
        "'--set', f'train.steps={steps}'])"
    )
    codes = launch.launch(base + [program], processes=2, cpu_devices=4, timeout=300)
    assert codes == [1, 1]
    out = capfd.readouterr().out
    assert "resolved different configs" in out and "processes [1] differ from process 0" in out
    assert not (tmp_path / "metrics.jsonl").exists()
