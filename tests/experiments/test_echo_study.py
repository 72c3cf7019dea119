"""The ECHO study's probe and arms: observation scores equal an independent forward pass, the
first response is read from the first turn, unseen worlds have other layouts, the quarter arms
share one warm start of a quarter of the demonstrations."""

import dataclasses
import re

import jax
import numpy as np
import pytest
from rljax.experiments.studies import echo

from rljax.rollout import expert_trajectories
from rljax.train.loop import Trainer
from rljax.train.sft import fingerprint


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """A smoke-config trainer at its random initialisation (no warm start loaded)."""
    config = echo.STUDY.run_config("echo_0.05", 0, smoke=True)
    return Trainer(config, tmp_path_factory.mktemp("echo") / "run")


def _expert(trainer, n, *, noise=0.3, seed=0):
    tasks = [trainer.family.generate("heldout", i) for i in range(n)]
    traj = expert_trajectories(
        trainer.family,
        tasks,
        trainer.tokenizer,
        np.random.default_rng(seed),
        noise,
        max_tokens=trainer.config.task.max_len,
    )
    return tasks, traj


def test_reads_key_file_hand_cases():
    ok = dict(key="k07", file="f03")
    assert echo.reads_key_file("grep k07 f03", **ok)
    assert echo.reads_key_file("cat f03", **ok)
    assert echo.reads_key_file("cat /data/f03", **ok)
    assert not echo.reads_key_file("cat f04", **ok)  # another file
    assert not echo.reads_key_file("grep k08 f03", **ok)  # the right file, another key
    assert not echo.reads_key_file("gerp k07 f03", **ok)  # misspelt
    assert not echo.reads_key_file("cat f03 f04", **ok)
    assert not echo.reads_key_file("answer ab12", **ok)
    assert not echo.reads_key_file(None, **ok)


def test_first_command_is_the_first_turns(trainer):
    tasks, traj = _expert(trainer, 6, noise=0.5, seed=3)
    rng = np.random.default_rng(3)  # the expert's draws again, task by task
    for row, task in enumerate(tasks):
        actions = trainer.family.expert_actions(task, rng, 0.5)
        expected = re.search(r"<cmd> (.*?) </cmd>", actions[0]).group(1)
        assert echo.first_command(traj, row, trainer.tokenizer) == expected


def test_observation_scores_equal_an_independent_forward(trainer):
    tasks, traj = _expert(trainer, 8)  # 8 rows: the test mesh splits rows over 8 devices
    got = echo.observation_scores(trainer, traj)
    env = np.asarray(traj.env_mask, bool) & ~np.asarray(traj.warning_mask, bool)
    assert got["tokens"] == env.sum() > 0
    # CE at the training temperature from the trainer's own no-grad pass (kernels.token_stats).
    batch = jax.tree.map(np.asarray, trainer.prepare_inputs(traj, tasks, np.ones(8, bool),
                                                            group_size=1)[2])  # fmt: skip
    assert got["ce"] == pytest.approx(-(batch.logprobs * env).sum() / env.sum(), rel=1e-4)
    # CE at 1 and argmax accuracy from the full logits of the unmasked forward (rows are
    # right-padded and attention is causal), in float64 numpy.
    logits = np.asarray(trainer.policy.logits(np.asarray(traj.tokens)), np.float64)[:, :-1]
    top = logits.max(-1, keepdims=True)
    logz = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    targets = np.asarray(traj.tokens)[:, 1:]
    lp = np.take_along_axis(logits, targets[..., None], -1)[..., 0] - logz
    sel = env[:, 1:]
    nll, hits = -lp[sel], (logits.argmax(-1) == targets)[sel]
    assert got["ce_t1"] == pytest.approx(np.mean(nll), rel=1e-4)
    assert got["acc"] == pytest.approx(np.mean(hits))


def test_unseen_worlds_have_other_layouts(trainer):
    (other,) = echo.unseen_families(trainer, (1001,))
    assert other.world_id != trainer.family.world_id
    assert other.world.key_file != trainer.family.world.key_file
    assert (other.render, other.values) == (trainer.family.render, trainer.family.values)
    with pytest.raises(ValueError, match="training world's seed 0"):
        echo.unseen_families(trainer, (0, 1001))


@pytest.mark.parametrize("smoke", [True, False])
def test_arms(smoke):
    study = echo.STUDY
    configs = {arm: study.run_config(arm, 1, smoke=smoke) for arm in study.arms}
    coefs = {arm: c.method.kwargs["coef"] for arm, c in configs.items()}
    assert coefs == {"grpo": 0.0, "echo_0.05": 0.05, "echo_0.2": 0.2, "echo_1.0": 1.0,
                     "echo_0.01": 0.01, "echo_0.001": 0.001, "env_only": 0.05, "grpo_quarter": 0.0, "echo_quarter": 0.05}  # fmt: skip
    assert {c.method.name for c in configs.values()} == {"echo"}
    only = {arm for arm, c in configs.items() if c.method.kwargs.get("env_only")}
    assert only == {"env_only"}
    base = configs["grpo"].sft
    for arm in study.sft_arms:  # a quarter of the demonstrations, nothing else changed
        assert configs[arm].sft == dataclasses.replace(base, num_demos=base.num_demos // 4)
    prints = {arm: fingerprint(c) for arm, c in configs.items()}
    assert prints["grpo_quarter"] == prints["echo_quarter"] != prints["grpo"]
    assert len({prints[a] for a in study.arms if a not in study.sft_arms}) == 1
    # Held-out success needs the terminal: every task redraws the values (issue 16).
    assert configs["grpo"].task.kwargs["values"] == "task"
