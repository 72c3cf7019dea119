"""The driver's reliability guarantees end to end (issue 12): damaged checkpoints, the run-directory
lock, start-up validation, and faults during training, each on one tiny run.

All runs share one small config (4 prompts x 2 samples, a 2-layer model, no evaluation, no SFT
unless a test needs it) and a persistent compilation cache, so a run after the first mostly reuses
compiled programs.
"""

import dataclasses
import functools
import json
import logging
import math
import os
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rljax.experiments.presets import SMOKE_MODEL

from rljax import methods
from rljax.envs import registry
from rljax.envs.arithmetic import ArithmeticFamily
from rljax.envs.reward import RewardFamily, RewardFunctionError
from rljax.train import checkpoint, faults, loop, rundir, sft
from rljax.train.config import (
    ConfigError,
    ExperimentConfig,
    MethodSection,
    SFTSection,
    TaskSection,
    TrainSection,
    apply_overrides,
)

CONFIG = ExperimentConfig(
    name="reliability",
    model=SMOKE_MODEL,
    method=MethodSection(name="grpo"),
    task=TaskSection(
        kwargs={"digits": 1, "num_operands": 2, "operators": "+"},
        prompts_per_step=4,
        group_size=2,
        max_new_tokens=4,
        max_len=32,
    ),
    train=TrainSection(
        steps=2, checkpoint_every=1, keep_checkpoints=4, mesh="auto", eval_prompts=0
    ),
    sft=SFTSection(steps=0),
)


_SFT = ("sft.steps=2", "sft.num_demos=4", "sft.batch_size=4")


def _config(*overrides):
    return apply_overrides(CONFIG, list(overrides))


def _partial_credit(task, response):
    """Length-dependent reward: groups vary, so the gradient is not zero."""
    return len(response) / 10


@pytest.fixture(scope="module", autouse=True)
def _compile_cache(request, tmp_path_factory):
    # Kept between sessions in pytest's cache directory when there is one (a cold first run
    # compiles for about a minute on 2 CPU cores; later runs and sessions reuse the programs).
    cache = getattr(request.config, "cache", None)
    directory = cache.mkdir("rljax_xla") if cache is not None else tmp_path_factory.mktemp("xla")
    previous = jax.config.jax_compilation_cache_dir
    jax.config.update("jax_compilation_cache_dir", str(directory))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    yield
    jax.config.update("jax_compilation_cache_dir", previous)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """A finished 2-step run (checkpoints 1 and 2); tests copy it before damaging it."""
    run_dir = tmp_path_factory.mktemp("finished") / "run"
    loop.train(CONFIG, run_dir)
    return run_dir


def _copy(finished, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(finished, run_dir)
    (run_dir / rundir.LOCK_FILE).unlink(missing_ok=True)
    return run_dir


def _restore(run_dir, step):
    """Restores and verifies checkpoint `step` of a finished run (raises if unreadable)."""
    trainer = loop.Trainer(CONFIG, run_dir)
    ckpt = trainer._open_checkpoints()
    try:
        return ckpt.restore_step(
            step, checkpoint.abstract_like(trainer.state), required_meta=("config", "data")
        )
    finally:
        ckpt.close()


def _data_files(step_dir):
    files = [p for p in (step_dir / "state").rglob("*") if p.is_file() and p.parent.name == "d"]
    assert files
    return files


def _truncate(step_dir):
    path = max(_data_files(step_dir), key=os.path.getsize)
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _delete(step_dir):
    max(_data_files(step_dir), key=os.path.getsize).unlink()


def _corrupt_metadata(step_dir):
    (step_dir / "state" / "_METADATA").write_text('{"tree_metadata": {"garbage')


def _drop_meta_key(step_dir):
    path = step_dir / "meta" / "metadata"
    meta = json.loads(path.read_text())
    del meta["data"]
    path.write_text(json.dumps(meta))


def _flip_bit(step_dir):
    path = max(_data_files(step_dir), key=os.path.getsize)
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize(
    "damage, reason",
    [
        (_truncate, ""),
        (_delete, ""),
        (_corrupt_metadata, ""),
        (_drop_meta_key, "lacks required key"),
        (_flip_bit, "checksum"),
    ],
)
def test_damaged_latest_checkpoint_is_set_aside_redone_and_saved(
    finished, tmp_path, damage, reason
):
    run_dir = _copy(finished, tmp_path)
    before = (run_dir / "metrics.jsonl").read_text()
    damage(run_dir / "checkpoints" / "2")
    result = loop.train(CONFIG, run_dir)
    # The old driver resumed from step 1, redid step 2 and skipped its save (directory 2 existed).
    aside = run_dir / "checkpoints" / checkpoint.UNREADABLE_DIR / "2"
    assert (aside / checkpoint.REASON_FILE).read_text().strip()
    assert reason in (aside / checkpoint.REASON_FILE).read_text()
    state, meta = _restore(run_dir, 2)
    assert int(state.step) == 2 and meta["config"]["name"] == CONFIG.name
    # The redone step is the same step: the logs match the undamaged run's.
    timing = {"steps_per_s", "tokens_per_s", "rollout_s"}
    strip = lambda text: [  # noqa: E731
        {k: v for k, v in json.loads(line).items() if k not in timing} for line in text.splitlines()
    ]
    assert strip((run_dir / "metrics.jsonl").read_text()) == strip(before)
    assert result.final_step == 2


def test_no_readable_checkpoint_stops_and_changes_nothing(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    _truncate(run_dir / "checkpoints" / "1")
    _drop_meta_key(run_dir / "checkpoints" / "2")
    logs = {name: (run_dir / name).read_text() for name in ("metrics.jsonl", "config.json")}
    with pytest.raises(checkpoint.NoReadableCheckpointError, match="start_fresh_if_unreadable"):
        loop.train(CONFIG, run_dir)
    assert {name: (run_dir / name).read_text() for name in logs} == logs
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["1", "2"]

    fresh = _config("train.start_fresh_if_unreadable=True")
    loop.train(fresh, run_dir)
    # Both moved aside, the earlier log renamed (not truncated), a new run from step 0.
    assert sorted(os.listdir(run_dir / "checkpoints" / checkpoint.UNREADABLE_DIR)) == ["1", "2"]
    assert (run_dir / "metrics.jsonl.1").read_text() == logs["metrics.jsonl"]
    assert [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").open())] == [1, 2]
    assert int(_restore(run_dir, 2)[0].step) == 2


def test_torn_metrics_line_is_dropped_on_resume(finished, tmp_path, caplog):
    run_dir = _copy(finished, tmp_path)
    with (run_dir / "metrics.jsonl").open("a") as f:
        f.write('{"step": 3, "rew')
    with caplog.at_level(logging.WARNING):
        loop.train(_config("train.steps=3"), run_dir)
    assert "torn last line" in caplog.text
    assert [r["step"] for r in map(json.loads, (run_dir / "metrics.jsonl").open())] == [1, 2, 3]


def test_second_process_is_refused_naming_the_holder(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    config_text = (run_dir / "config.json").read_text()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from rljax.train.rundir import RunLock; "
            f"RunLock({str(run_dir)!r}).acquire(); print('locked', flush=True); time.sleep(60)",
        ],
        stdout=subprocess.PIPE,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    try:
        assert holder.stdout.readline().strip() == b"locked"
        with pytest.raises(rundir.RunDirectoryLockedError, match=f'"pid": {holder.pid}'):
            loop.train(_config("train.steps=3"), run_dir)
    finally:
        holder.kill()
        holder.wait()
    assert (run_dir / "config.json").read_text() == config_text
    assert not (run_dir / "checkpoints" / "3").exists()


def test_incompatible_restart_keeps_config_json(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    config_text = (run_dir / "config.json").read_text()
    with pytest.raises(checkpoint.IncompatibleCheckpointError, match="train.seed"):
        loop.train(_config("train.seed=1"), run_dir)
    assert (run_dir / "config.json").read_text() == config_text


def test_fewer_steps_than_the_latest_checkpoint_are_refused(finished, tmp_path):
    run_dir = _copy(finished, tmp_path)
    config_text = (run_dir / "config.json").read_text()
    with pytest.raises(ValueError, match="train.steps=1 is below the latest checkpoint, step 2"):
        loop.train(_config("train.steps=1"), run_dir)
    assert sorted(os.listdir(run_dir / "checkpoints")) == ["1", "2"]
    assert (run_dir / "config.json").read_text() == config_text


@pytest.mark.parametrize(
    "override, message",
    [
        ("train.keep_checkpoints=0", "train.keep_checkpoints=0: must be an integer >= 1"),
        ("optim.learning_rate=1e999", "optim.learning_rate=inf: must be a finite number"),
        ("optim.learning_rate=float('nan')", "optim.learning_rate=nan: must be a finite number"),
        ("task.group_size=0", "task.group_size=0: must be an integer >= 1"),
        ("task.max_new_tokens=-3", "task.max_new_tokens=-3: must be an integer >= 1"),
        ("sft.batch_size=0", "sft.batch_size=0: must be an integer >= 1"),
    ],
)
def test_invalid_config_is_refused_before_anything_is_built(
    tmp_path, monkeypatch, override, message
):
    def never(*args, **kwargs):
        raise AssertionError("built the policy before validating the config")

    monkeypatch.setattr(loop, "build_policy", never)
    if "nan" in override:
        config = dataclasses.replace(
            CONFIG, optim=dataclasses.replace(CONFIG.optim, learning_rate=math.nan)
        )
    else:
        config = _config(override)
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace("[", r"\[")):
        loop.train(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_out_of_vocabulary_rollout_token_is_refused(tmp_path, monkeypatch):
    collect = loop.Trainer.collect

    def bad_token(self, key):
        traj, tasks, mask, metrics = collect(self, key)
        tokens = np.array(traj.tokens)
        tokens[1, 0] = self.vocab_size + 5
        return traj.replace(tokens=tokens), tasks, mask, metrics

    monkeypatch.setattr(loop.Trainer, "collect", bad_token)
    with pytest.raises(ValueError, match=r"rollout batch: token id \d+ at row 1, position 0"):
        loop.train(_config("train.steps=1"), tmp_path / "run")
    assert not (tmp_path / "run" / "checkpoints" / "1").exists()


def test_out_of_vocabulary_demonstration_token_is_refused(tmp_path, monkeypatch):
    demonstrations = sft.demonstrations

    def bad_token(*args):
        batches = demonstrations(*args)
        tokens = np.array(batches[0].tokens)
        tokens[0, 3] = -1
        return [batches[0].replace(tokens=tokens), *batches[1:]]

    monkeypatch.setattr(sft, "demonstrations", bad_token)
    config = _config("sft.steps=1", "sft.num_demos=4", "sft.batch_size=4", "train.steps=1")
    with pytest.raises(ValueError, match="SFT demonstrations: token id -1 at row 0, position 3"):
        loop.train(config, tmp_path / "run")


def test_demonstrations_cut_by_the_context_budget_are_refused(tmp_path):
    # A cut demonstration loses its end token: the warm start would learn responses that never
    # end (the poly_epo study's first attempt: max_len 32 < 34 tokens, every sample malformed).
    fits = _config("sft.steps=1", "sft.num_demos=4", "sft.batch_size=4")
    family = registry.make(fits.task.family, **fits.task.kwargs)
    tokenizer = loop.Trainer(fits, tmp_path / "fits").tokenizer
    (batch,) = sft.demonstrations(family, tokenizer, fits)
    longest = int(np.max(np.sum(np.asarray(batch.segment_ids) > 0, axis=1)))
    # One token short for the longest demonstration; every prompt still fits with room to spare.
    cut = _config(
        "sft.steps=1", "sft.num_demos=4", "sft.batch_size=4", f"task.max_len={longest - 1}"
    )
    with pytest.raises(
        ValueError, match=rf"[1-4] of 4 SFT .* do not fit task.max_len={longest - 1}"
    ):
        sft.demonstrations(family, tokenizer, cut)


def test_sft_cache_follows_the_checkpoint_rules(tmp_path, caplog):
    config = _config("sft.steps=2", "sft.num_demos=4", "sft.batch_size=4", "train.steps=1")
    with caplog.at_level(logging.INFO):
        loop.train(config, tmp_path / "a")
    assert "SFT warm start saved to" in caplog.text and "restored and verified" in caplog.text
    cache = tmp_path / "sft" / sft.fingerprint(config)
    _truncate(cache / "2")
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loop.train(config, tmp_path / "b")
    # The damaged entry is moved aside (not deleted), retrained and saved again, and it restores.
    assert (cache / checkpoint.UNREADABLE_DIR / "2" / checkpoint.REASON_FILE).exists()
    assert "SFT warm start saved to" in caplog.text
    caplog.clear()
    with caplog.at_level(logging.INFO):
        loop.train(config, tmp_path / "c")
    assert "SFT warm start loaded from" in caplog.text


def test_interrupted_warm_start_resumes_from_its_progress_checkpoint(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(sft, "PROGRESS_EVERY", 2)
    config = _config("sft.steps=5", "sft.num_demos=8", "sft.batch_size=4")
    make_update = sft.make_update_fn
    calls = []

    def counting(*args, crash_at=None, **kwargs):
        update = make_update(*args, **kwargs)

        def run(state, rest, batch):
            calls.append(1)
            if len(calls) == crash_at:
                raise KeyboardInterrupt("killed during SFT step")
            return update(state, rest, batch)

        return run

    def warm(root):
        trainer = loop.Trainer(config, root / "run")
        init = jax.tree.map(np.asarray, trainer.state.params)
        trainer.load_warm_start()
        return init, jax.tree.map(np.asarray, trainer.state.params)

    def equal(a, b):
        return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    monkeypatch.setattr(sft, "make_update_fn", counting)
    init, whole = warm(tmp_path / "whole")
    assert len(calls) == 5 and not equal(init, whole)
    cache = tmp_path / "whole" / "sft" / sft.fingerprint(config)
    assert not (cache / sft.PROGRESS_DIR).exists()  # removed once the warm start is saved
    # Killed in step 4: the step-2 progress checkpoint survives (step 4's was never written).
    calls.clear()
    monkeypatch.setattr(sft, "make_update_fn", functools.partial(counting, crash_at=4))
    with pytest.raises(KeyboardInterrupt):
        warm(tmp_path / "killed")
    partial = tmp_path / "killed" / "sft" / sft.fingerprint(config) / sft.PROGRESS_DIR
    assert sorted(p.name for p in partial.iterdir() if p.name.isdigit()) == ["2"]
    # The restart runs only steps 3-5 and ends exactly where the uninterrupted warm start did.
    calls.clear()
    monkeypatch.setattr(sft, "make_update_fn", counting)
    with caplog.at_level(logging.INFO):
        _, resumed = warm(tmp_path / "killed")
    assert "resuming from its step-2 progress checkpoint" in caplog.text
    assert len(calls) == 3 and equal(resumed, whole)
    nll = [(cache / "sft_metrics.jsonl"), partial.parent / "sft_metrics.jsonl"]
    assert nll[0].read_text() == nll[1].read_text() and len(nll[0].read_text().splitlines()) == 5
    assert not partial.exists()


def test_sft_seed_shares_one_warm_start_across_run_seeds(tmp_path, caplog):
    def warm(root, *overrides):
        trainer = loop.Trainer(
            _config(*_SFT, *overrides),
            root / "run",
        )
        init = jax.tree.map(np.asarray, trainer.state.params)
        trainer.load_warm_start()
        return init, jax.tree.map(np.asarray, trainer.state.params)

    def equal(a, b):
        return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))

    init0, own0 = warm(tmp_path / "own0", "train.seed=0")
    init1, own1 = warm(tmp_path / "own1", "train.seed=1")
    assert not equal(init0, init1) and not equal(own0, own1)  # the seeds do differ
    # Seed 1 with the warm start fixed to seed 0, trained in a fresh directory: seed 0's warm
    # start exactly (seed 0's initial parameters, demonstrations and order), not seed 1's.
    init1_shared, shared1 = warm(tmp_path / "shared", "train.seed=1", "sft.seed=0")
    assert equal(init1_shared, init1) and equal(shared1, own0)
    # One cache entry: seed 2 finds it instead of training, and `sft.seed` equal to `train.seed`
    # keeps the fingerprint of a config without it.
    seed2 = _config(*_SFT, "train.seed=2")
    shared = dataclasses.replace(seed2, sft=dataclasses.replace(seed2.sft, seed=0))
    assert sft.fingerprint(shared) == sft.fingerprint(_config(*_SFT, "train.seed=0"))
    assert sft.fingerprint(shared) == sft.fingerprint(_config(*_SFT, "sft.seed=0"))
    assert sft.fingerprint(shared) != sft.fingerprint(seed2)
    with caplog.at_level(logging.INFO):
        _, shared2 = warm(tmp_path / "shared", "train.seed=2", "sft.seed=0")
    assert "SFT warm start loaded from" in caplog.text and equal(shared2, own0)
    with pytest.raises(ConfigError, match=r"sft.seed=-1: must be an integer >= 0"):
        _config(*_SFT, "sft.seed=-1").validate()


def test_nonfinite_reward_group_is_masked_and_counted(tmp_path, monkeypatch, caplog):
    # The reward-function adapter returns a NaN reward as is (the driver masks its group) ...
    family = RewardFamily(ArithmeticFamily(digits=1), lambda task, response: math.nan)
    assert math.isnan(family.verify(family.generate("train", 0), "x").reward)
    with pytest.raises(RewardFunctionError, match="returned 'x' .*expected a real number"):
        RewardFamily(ArithmeticFamily(), lambda t, r: "x").verify(family.generate("train", 0), "")
    # ... and the driver masks the group out of the update. (An untrained model's rows all hit the
    # token budget, whose reward is 0, so the NaN is put into the collected batch directly.)
    collect = loop.Trainer.collect

    def nan_group(self, key):
        traj, tasks, mask, metrics = collect(self, key)
        rewards = np.array(traj.rewards)
        rewards[2:4] = np.nan  # group 1 of G = 2
        return traj.replace(rewards=rewards), tasks, mask, metrics

    monkeypatch.setattr(loop.Trainer, "collect", nan_group)
    with caplog.at_level(logging.WARNING):
        result = loop.train(_config("train.steps=1"), tmp_path / "run")
    assert "1 group(s) with a non-finite reward masked out" in caplog.text
    (record,) = result.metrics
    assert record["nonfinite_reward_groups"] == 1.0
    assert all(math.isfinite(v) for v in record.values())
    state, _ = _restore(tmp_path / "run", 1)
    assert all(bool(jnp.isfinite(x).all()) for x in jax.tree.leaves(state.params))


def test_raising_reward_function_stops_the_run_naming_the_task(tmp_path):
    def reward(task, response):
        raise KeyError("answer")

    with pytest.raises(RewardFunctionError, match=r"KeyError: 'answer' on task 'arithmetic/"):
        loop.train(_config("train.steps=1"), tmp_path / "run", reward_fn=reward)
    assert not (tmp_path / "run" / "checkpoints" / "1").exists()


def test_nonfinite_gradients_stop_the_run_keeping_the_last_good_checkpoint(tmp_path):
    base = methods.grpo()

    def nan_loss(logprobs, batch):
        value, metrics = base.loss(logprobs, batch)
        return value * jnp.nan, metrics

    # Every gradient is NaN: the guard skips updates 1 and 2; the second reaches
    # max_skipped_updates=2 and the run stops before step 2's save.
    config = _config("train.steps=4", "train.max_skipped_updates=2")
    with pytest.raises(faults.NonFiniteTrainingError, match="step 2: 2 consecutive updates"):
        loop.train(
            config,
            tmp_path / "run",
            method=dataclasses.replace(base, loss=nan_loss),
            reward_fn=_partial_credit,
        )
    assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["1"]


def test_nonfinite_parameter_stops_the_run(tmp_path):
    # A user optimiser whose update is infinite: gradients are finite (the guard lets it through),
    # the parameters are not. The driver wrapped it in the guard, whose state check_update reads.
    with pytest.raises(
        faults.NonFiniteTrainingError, match="step 1: a parameter became non-finite"
    ):
        loop.train(
            _config("train.steps=2"),
            tmp_path / "run",
            reward_fn=_partial_credit,
            optimizer=optax.scale(math.inf),
        )
    assert not (tmp_path / "run" / "checkpoints" / "1").exists()
