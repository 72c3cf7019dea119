"""Exact resume: a run SIGKILLed mid-way and restarted ends bitwise equal to an uninterrupted run.

The run must change its parameters at every step, or equal final parameters prove nothing: an
untrained smoke policy hits the token budget on every row (reward 0, so a GRPO gradient of 0).
Anti-SD without its entropy gate subtracts the JSD between the policy with and without the
privileged teacher context from every token's advantage, which is nonzero whatever the rewards;
the test asserts a nonzero gradient and a parameter change at every step.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import orbax.checkpoint as ocp
import pytest

STEPS = 6
# Wall-clock measurements legitimately differ between runs; everything else must be identical.
TIMING_KEYS = {"steps_per_s", "tokens_per_s", "rollout_s"}


def _command(run_dir):
    return [
        sys.executable,
        "-m",
        "rljax.experiments.anti_sd",
        "--preset",
        "smoke",
        "--run-dir",
        str(run_dir),
        "--set",
        f"train.steps={STEPS}",
        "--set",
        "method.kwargs.gate=False",
        "--set",
        f"train.keep_checkpoints={STEPS}",
        "--set",
        "train.checkpoint_every=1",
        "--set",
        "train.eval_every=2",
    ]


def _env(cache_dir):
    env = dict(os.environ)
    # Share compiled executables between the three processes (the runs stay independent).
    env.update(
        JAX_COMPILATION_CACHE_DIR=str(cache_dir),
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
        JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
        JAX_PLATFORMS="cpu",
    )
    return env


def _records(path):
    rows = [json.loads(line) for line in path.read_text().splitlines() if line]
    return [{k: v for k, v in row.items() if k not in TIMING_KEYS} for row in rows]


def _params(run_dir, step=STEPS):
    with ocp.CheckpointManager(run_dir / "checkpoints", item_names=("state", "meta")) as manager:
        restored = manager.restore(step, args=ocp.args.Composite(state=ocp.args.StandardRestore()))
    return ocp.tree.to_flat_dict(restored["state"]["params"])


def _max_change(a, b):
    return max(float(np.max(np.abs(np.asarray(a[k]) - np.asarray(b[k])))) for k in a)


@pytest.mark.slow
def test_sigkill_and_resume_is_bitwise_exact(tmp_path):
    cache = tmp_path / "xla_cache"
    whole, killed = tmp_path / "a" / "run", tmp_path / "b" / "run"
    subprocess.run(_command(whole), env=_env(cache), check=True, capture_output=True, timeout=900)
    # The parameters change at every step (else the bitwise comparison below would be vacuous).
    records = _records(whole / "metrics.jsonl")
    assert [r["step"] for r in records] == list(range(1, STEPS + 1))
    assert all(r["grad_norm"] > 0 and r["skipped_updates"] == 0 for r in records), records
    saved = [_params(whole, step) for step in range(1, STEPS + 1)]
    changes = [_max_change(a, b) for a, b in zip(saved, saved[1:])]
    assert all(change > 0 for change in changes), changes

    proc = subprocess.Popen(
        _command(killed), env=_env(cache), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.time() + 900
    metrics = killed / "metrics.jsonl"
    # Kill as soon as step 2 is logged: its checkpoint may or may not be complete by then, so the
    # restart resumes from step 1 or 2 (or an earlier one), whichever is the latest complete.
    while not (metrics.exists() and len(metrics.read_text().splitlines()) >= 2):
        assert proc.poll() is None, "the run ended before it could be killed"
        assert time.time() < deadline
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (killed / "checkpoints" / str(STEPS)).exists(), "killed too late to test resume"

    subprocess.run(_command(killed), env=_env(cache), check=True, capture_output=True, timeout=900)

    assert _records(killed / "metrics.jsonl") == _records(whole / "metrics.jsonl")
    assert _records(killed / "eval.jsonl") == _records(whole / "eval.jsonl")
    flat_a, flat_b = _params(whole), _params(killed)
    assert flat_a.keys() == flat_b.keys()
    for key in flat_a:
        np.testing.assert_array_equal(
            np.asarray(flat_a[key]), np.asarray(flat_b[key]), err_msg=str(key)
        )
