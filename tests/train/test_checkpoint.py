"""Checkpointer: save/restore round trip, keep-last-N, skipping unreadable steps, config checks."""

import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rljax.train import checkpoint


def _state(x):
    return {
        "params": {"w": jnp.full((3, 2), x, jnp.float32)},
        "step": jnp.asarray(int(x), jnp.int32),
        "key": jax.random.key_data(jax.random.key(int(x))),
    }


def test_round_trip_and_keep_last(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=2, every=1)
    for step in (1, 2, 3):
        assert ckpt.save(step, _state(step), {"data": {"cursor": step}})
    ckpt.wait()
    assert ckpt.steps() == [2, 3]
    step, state, meta = ckpt.restore_latest(checkpoint.abstract_like(_state(0)))
    assert step == 3 and meta == {"data": {"cursor": 3}}
    np.testing.assert_array_equal(state["params"]["w"], np.full((3, 2), 3.0, np.float32))
    np.testing.assert_array_equal(state["key"], jax.random.key_data(jax.random.key(3)))
    ckpt.close()


def test_not_due_is_not_saved(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, every=5)
    assert not ckpt.save(3, _state(3), {})
    assert ckpt.save(3, _state(3), {}, force=True)
    ckpt.close()


def test_unreadable_latest_falls_back(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3, every=1, async_save=False)
    ckpt.save(1, _state(1), {"c": 1})
    ckpt.save(2, _state(2), {"c": 2})
    ckpt.close()
    # Truncate step 2: remove its array data, as a crash of the file system mid-write would.
    shutil.rmtree(tmp_path / "2" / "state")
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3, every=1)
    step, state, meta = ckpt.restore_latest(checkpoint.abstract_like(_state(0)))
    assert step == 1 and meta == {"c": 1}
    np.testing.assert_array_equal(state["params"]["w"], np.ones((3, 2), np.float32))
    ckpt.close()


def test_incompatible_config_raises(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, every=1, async_save=False)
    ckpt.save(1, _state(1), {"config": {"model": {"preset": "tiny"}}})
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model.preset"):
        ckpt.restore_latest(
            checkpoint.abstract_like(_state(0)),
            check_meta=lambda m: checkpoint.check_compatible(
                m["config"], {"model": {"preset": "qwen3_0_6b"}}, ("model.preset",)
            ),
        )
    ckpt.close()


def test_empty_directory_restores_nothing(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path)
    assert ckpt.restore_latest(checkpoint.abstract_like(_state(0))) is None
    ckpt.close()


def test_relative_directory_is_resolved(tmp_path, monkeypatch):
    # `python -m rljax.experiments.grpo` defaults to the relative run directory runs/<name>.
    monkeypatch.chdir(tmp_path)
    ckpt = checkpoint.Checkpointer("runs/x/checkpoints", every=1, async_save=False)
    assert ckpt.save(1, _state(1), {"c": 1})
    ckpt.close()
    assert (tmp_path / "runs" / "x" / "checkpoints" / "1").is_dir()
