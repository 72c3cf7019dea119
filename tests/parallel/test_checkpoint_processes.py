"""Checkpoints restore whatever the number of processes that saved them.

A checkpoint's checksums name every array of the state: a CRC-32 for each array its saving process
held whole, None for one sharded across processes. A run with another process count therefore
reads it: it verifies each array that both it and the saving run hold whole. (Before, arrays
sharded across processes were left out of the checksums, so a 1-process run refused a 2-process
run's checkpoint, "no checksum stored", and a 2-process run a 1-process one, "checksums name arrays
the restored state lacks"; the SFT warm-start cache was then moved aside and retrained, which is
why the 2-process and 1-process GRPO runs of `test_multiprocess_run.py` once started from
different warm starts.)
"""

import json
import pathlib
import re
import sys

import jax.numpy as jnp
import numpy as np
import pytest
from rljax.experiments import launch

from rljax.train import checkpoint

HERE = pathlib.Path(__file__).resolve().parent


def _tree():
    return {"w": jnp.arange(6, dtype=jnp.float32).reshape(2, 3), "b": [jnp.ones((), jnp.int32)]}


def test_checksums_name_every_array():
    _, sums = checkpoint.host_copy(_tree())
    assert set(sums) == {"['w']", "['b'][0]"}
    assert all(entry is not None for entry in sums.values())
    checkpoint.verify_checksums(_tree(), sums)


def test_an_array_saved_across_processes_is_not_verified_and_the_rest_is():
    _, sums = checkpoint.host_copy(_tree())
    # What a multi-process save stores for an array sharded across its processes.
    sums["['w']"] = None
    changed = _tree()
    changed["w"] = changed["w"] + 1.0
    checkpoint.verify_checksums(changed, sums)
    changed["b"][0] = jnp.zeros((), jnp.int32)
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"\['b'\]\[0\] does not match"):
        checkpoint.verify_checksums(changed, sums)


def test_missing_and_unknown_names_still_make_a_checkpoint_unreadable():
    _, sums = checkpoint.host_copy(_tree())
    del sums["['w']"]
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"no checksum stored.*\['w'\]"):
        checkpoint.verify_checksums(_tree(), sums)
    _, sums = checkpoint.host_copy(_tree())
    sums["['gone']"] = None
    with pytest.raises(checkpoint.UnreadableCheckpointError, match="lacks"):
        checkpoint.verify_checksums(_tree(), sums)


def _worker(mode: str, directory, processes: int) -> list[int]:
    command = [sys.executable, str(HERE / "checkpoint_worker.py"), mode, str(directory)]
    return launch.launch(command, processes=processes, cpu_devices=8 // processes, timeout=300)


@pytest.mark.slow  # four short launches of 1 or 2 JAX processes: ~1 min on 2 shared cores
@pytest.mark.parametrize("saved_by, restored_by", [(2, 1), (1, 2)])
def test_a_checkpoint_restores_with_another_process_count(tmp_path, capfd, saved_by, restored_by):
    directory = tmp_path / "checkpoints"
    assert _worker("save", directory, saved_by) == [0] * saved_by
    sums = json.loads((directory / "1" / "checksums" / "metadata").read_text())
    spanning = {name for name, entry in sums.items() if entry is None}
    # Every array on the mesh spans both processes' devices when two processes saved it (replicated
    # ones too: no process can address all of their copies), none when one process did.
    assert spanning == (set(sums) if saved_by == 2 else set()), sums
    assert set(sums) == {"['w']", "['b']", "['step']"}
    capfd.readouterr()
    assert _worker("restore", directory, restored_by) == [0] * restored_by
    out = capfd.readouterr().out
    lines = [json.loads(m) for m in re.findall(r"^\[0\] (\{.*\})$", out, flags=re.MULTILINE)]
    assert len(lines) == 1, out[-3000:]
    restored = lines[0]
    assert restored["processes"] == restored_by and restored["saved_by"] == saved_by
    np.testing.assert_array_equal(restored["w"], np.arange(24, dtype=np.float32).reshape(8, 3))
    assert restored["b"] == [0.5, -1.0, 2.0] and restored["step"] == 7
    assert not (directory / checkpoint.UNREADABLE_DIR).exists()
