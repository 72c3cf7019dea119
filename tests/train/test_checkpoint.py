"""Checkpointer: round trip, keep-last-N, damaged steps moved aside, checksums, the verified cache."""

import logging
import os
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


def _random_state(seed):
    # Incompressible values, so a flipped bit in the stored (zstd-compressed) data changes a value.
    rng = np.random.default_rng(seed)
    return {"w": jnp.asarray(rng.standard_normal(4096), jnp.float32)}


def _save_steps(directory, steps, state_fn=_state, meta_fn=lambda s: {"c": s}):
    ckpt = checkpoint.Checkpointer(directory, max_to_keep=len(steps), every=1, async_save=False)
    for step in steps:
        assert ckpt.save(step, state_fn(step), meta_fn(step))
    ckpt.close()


def _data_files(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files, "no Orbax data files found"
    return files


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


def test_keep_zero_checkpoints_is_refused(tmp_path):
    with pytest.raises(ValueError, match="max_to_keep must be >= 1.*got 0"):
        checkpoint.Checkpointer(tmp_path, max_to_keep=0)


def _damage_remove_state(step_dir):
    shutil.rmtree(step_dir / "state")


def _damage_delete_data_file(step_dir):
    max(_data_files(step_dir), key=os.path.getsize).unlink()


def _damage_truncate_data_file(step_dir):
    path = max(_data_files(step_dir), key=os.path.getsize)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _damage_corrupt_metadata(step_dir):
    (step_dir / "state" / "_METADATA").write_text('{"tree_metadata": {"garbage')


@pytest.mark.parametrize(
    "damage",
    [
        _damage_remove_state,
        _damage_delete_data_file,
        _damage_truncate_data_file,
        _damage_corrupt_metadata,
    ],
)
def test_damaged_latest_is_moved_aside_and_saved_again(tmp_path, damage):
    _save_steps(tmp_path, (1, 2), state_fn=_random_state)
    damage(tmp_path / "2")
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3, every=1, async_save=False)
    abstract = checkpoint.abstract_like(_random_state(0))
    step, state, meta = ckpt.restore_latest(abstract)
    assert step == 1 and meta == {"c": 1}
    np.testing.assert_array_equal(state["w"], _random_state(1)["w"])
    # Moved aside with its reason, not deleted; the redone step 2 is saved again and restores.
    assert ckpt.steps() == [1]
    aside = tmp_path / checkpoint.UNREADABLE_DIR / "2"
    assert aside.is_dir() and (aside / checkpoint.REASON_FILE).read_text().strip()
    assert ckpt.save(2, _random_state(2), {"c": 2})
    step, state, _ = ckpt.restore_latest(abstract)
    assert step == 2
    np.testing.assert_array_equal(state["w"], _random_state(2)["w"])
    ckpt.close()


def test_flipped_bit_fails_the_checksum(tmp_path):
    _save_steps(tmp_path, (1, 2), state_fn=_random_state)
    path = max(_data_files(tmp_path / "2"), key=os.path.getsize)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3)
    abstract = checkpoint.abstract_like(_random_state(0))
    # Orbax itself reads the damaged step without complaint; only the checksum catches it.
    raw = ckpt._manager.restore(
        2, args=checkpoint.ocp.args.Composite(state=checkpoint.ocp.args.StandardRestore(abstract))
    )["state"]
    assert not np.array_equal(np.asarray(raw["w"]), np.asarray(_random_state(2)["w"]))
    with pytest.raises(checkpoint.UnreadableCheckpointError, match=r"\['w'\] does not match"):
        ckpt.restore_step(2, abstract)
    step, state, _ = ckpt.restore_latest(abstract)
    assert step == 1
    np.testing.assert_array_equal(state["w"], _random_state(1)["w"])
    reason = (tmp_path / checkpoint.UNREADABLE_DIR / "2" / checkpoint.REASON_FILE).read_text()
    assert "checksum" in reason
    ckpt.close()


def test_missing_meta_key_counts_as_unreadable(tmp_path):
    metas = {1: {"config": {}, "data": {"cursor": 1}}, 2: {"config": {}}}  # 2 lacks "data"
    _save_steps(tmp_path, (1, 2), meta_fn=metas.get)
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3)
    step, _, meta = ckpt.restore_latest(
        checkpoint.abstract_like(_state(0)), required_meta=("config", "data")
    )
    assert step == 1 and meta["data"] == {"cursor": 1}
    reason = (tmp_path / checkpoint.UNREADABLE_DIR / "2" / checkpoint.REASON_FILE).read_text()
    assert "['data']" in reason
    ckpt.close()


def test_none_readable_stops_and_changes_nothing(tmp_path):
    _save_steps(tmp_path, (1, 2))
    _damage_remove_state(tmp_path / "1")
    _damage_corrupt_metadata(tmp_path / "2")
    ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3)
    abstract = checkpoint.abstract_like(_state(0))
    with pytest.raises(
        checkpoint.NoReadableCheckpointError, match="start_fresh_if_unreadable"
    ) as e:
        ckpt.restore_latest(abstract)
    assert "step 2:" in str(e.value) and "step 1:" in str(e.value)
    assert ckpt.steps() == [1, 2] and not (tmp_path / checkpoint.UNREADABLE_DIR).exists()
    # The explicit override moves them all aside and starts fresh.
    assert ckpt.restore_latest(abstract, start_fresh=True) is None
    assert ckpt.steps() == []
    assert sorted(p.name for p in (tmp_path / checkpoint.UNREADABLE_DIR).iterdir()) == ["1", "2"]
    ckpt.close()


def test_set_aside_twice_keeps_both(tmp_path):
    for _ in range(2):
        _save_steps(tmp_path, (1, 2))
        _damage_remove_state(tmp_path / "2")
        ckpt = checkpoint.Checkpointer(tmp_path, max_to_keep=3)
        assert ckpt.restore_latest(checkpoint.abstract_like(_state(0)))[0] == 1
        ckpt.close()
        shutil.rmtree(tmp_path / "1")
    names = sorted(p.name for p in (tmp_path / checkpoint.UNREADABLE_DIR).iterdir())
    assert names == ["2", "2.2"]


def test_incompatible_config_raises_and_is_not_moved(tmp_path):
    ckpt = checkpoint.Checkpointer(tmp_path, every=1, async_save=False)
    ckpt.save(1, _state(1), {"config": {"model": {"preset": "tiny"}}})
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="model.preset"):
        ckpt.restore_latest(
            checkpoint.abstract_like(_state(0)),
            check_meta=lambda m: checkpoint.check_compatible(
                m["config"], {"model": {"preset": "qwen3_0_6b"}}, ("model.preset",)
            ),
        )
    assert ckpt.steps() == [1]
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


def test_checksum_is_independent_crc32():
    import zlib

    x = np.arange(6, dtype=np.float32).reshape(2, 3)
    assert checkpoint.array_checksum(x) == {
        "crc32": zlib.crc32(x.tobytes()),
        "dtype": "float32",
        "shape": [2, 3],
    }
    host, sums = checkpoint.host_copy({"a": jnp.asarray(x), "b": [jnp.zeros((), jnp.int32)]})
    assert isinstance(host["a"], np.ndarray) and set(sums) == {"['a']", "['b'][0]"}


class _Builds:
    def __init__(self, value):
        self.value, self.calls = value, 0

    def __call__(self):
        self.calls += 1
        return self.value, {"built": self.calls}


def test_cache_builds_once_then_loads(tmp_path, caplog):
    build = _Builds(_state(5))
    abstract = checkpoint.abstract_like(_state(0))
    with caplog.at_level(logging.INFO, logger="rljax.train.checkpoint"):
        checkpoint.cached(tmp_path / "c", abstract, build, step=7, what="warm start")
        assert "warm start saved to" in caplog.text
        value = checkpoint.cached(tmp_path / "c", abstract, build, step=7, what="warm start")
    assert build.calls == 1 and "warm start loaded from" in caplog.text
    np.testing.assert_array_equal(value["params"]["w"], np.full((3, 2), 5.0, np.float32))


def test_damaged_cache_is_moved_aside_and_rebuilt(tmp_path):
    build = _Builds(_random_state(5))
    abstract = checkpoint.abstract_like(_random_state(0))
    checkpoint.cached(tmp_path, abstract, build, step=7, what="warm start")
    _damage_truncate_data_file(tmp_path / "7")
    checkpoint.cached(tmp_path, abstract, build, step=7, what="warm start")
    assert build.calls == 2 and (tmp_path / checkpoint.UNREADABLE_DIR / "7").is_dir()
    # The rebuilt entry restores: a third call loads it.
    checkpoint.cached(tmp_path, abstract, build, step=7, what="warm start")
    assert build.calls == 2


def test_cache_does_not_say_saved_when_the_save_does_not_restore(tmp_path, caplog, monkeypatch):
    def broken_verify(*args, **kwargs):
        raise checkpoint.UnreadableCheckpointError("arrays unreadable: disk full")

    monkeypatch.setattr(checkpoint.Checkpointer, "restore_step", broken_verify)
    abstract = checkpoint.abstract_like(_state(0))
    with caplog.at_level(logging.INFO, logger="rljax.train.checkpoint"):
        with pytest.raises(checkpoint.UnreadableCheckpointError, match="disk full"):
            checkpoint.cached(tmp_path, abstract, _Builds(_state(5)), step=7, what="warm start")
    assert "saved" not in caplog.text
