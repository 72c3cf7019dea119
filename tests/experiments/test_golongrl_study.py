"""The GoLongRL study's arms, task and probe: the arms differ only in the advantage estimator, RL
never samples the untrained capability while the warm start does, demonstrations and rollouts fit
the context, and the probe scores every capability and averages the run's logged diagnostics."""

import json

import numpy as np
import pytest
from rljax.experiments.studies import golongrl

from rljax import methods
from rljax.envs.longcontext import CAPABILITY_NAMES, NUM_TASKS
from rljax.rollout import expert_trajectories
from rljax.train.components import build_family, policy_tokenizer
from rljax.train.loop import Trainer


@pytest.mark.parametrize("smoke", [True, False])
def test_arms_differ_only_in_the_estimator(smoke):
    study = golongrl.STUDY
    configs = {arm: study.run_config(arm, 2, smoke=smoke) for arm in study.arms}
    got = {arm: (c.method.name, c.method.kwargs) for arm, c in configs.items()}
    assert got == {
        "grpo": ("golong_reference", {"estimator": "grpo"}),
        "drgrpo": ("golong_reference", {"estimator": "drgrpo"}),
        "task_mean": ("golong_reference", {"estimator": "task_mean"}),
        "tmn": ("golong_tmn", {}),
        "tmn_reweight": ("golong", {"alpha": 0.8, "gamma": 1.0}),
        "tmn_reweight_alpha0": ("golong", {"alpha": 0.0, "gamma": 1.0}),
        "tmn_reweight_alpha1": ("golong", {"alpha": 1.0, "gamma": 1.0}),
    }
    built = [methods.make_method(c.method.name, **c.method.kwargs) for c in configs.values()]
    # The same composition: dynamic sampling, token-mean; clip 0.2 / 0.28 and dual clip 3 are
    # every factory's defaults, which no arm overrides.
    assert {(m.mode, m.filter_groups) for m in built} == {("token-mean", True)}
    assert not any({"clip_low", "clip_high", "dual_clip"} & set(c.method.kwargs)
                   for c in configs.values())  # fmt: skip
    for c in configs.values():
        c.validate()


def test_rl_skips_the_untrained_capability_and_the_warm_start_has_all_nine():
    config = golongrl.config()
    family = build_family(config.task, policy_tokenizer(config.model))
    assert CAPABILITY_NAMES[golongrl.UNTRAINED] == "numerical_reasoning"
    rl = {family.generate("train", i).task_id for i in range(200)}
    heldout = {family.generate("heldout", i).task_id for i in range(200)}
    assert rl == heldout == set(range(NUM_TASKS)) - {golongrl.UNTRAINED}
    warm = family.warm_start_tasks(200)
    counts = np.bincount([t.task_id for t in warm], minlength=NUM_TASKS)
    assert counts.min() > 10  # uniform over all nine: about 22 each


def test_demonstrations_and_rollouts_fit_the_context():
    config = golongrl.config()
    tokenizer = policy_tokenizer(config.model)
    family = build_family(config.task, tokenizer)
    for tasks in (
        family.warm_start_tasks(150),
        [family.generate("heldout", i) for i in range(150)],
    ):
        traj = expert_trajectories(
            family, tasks, tokenizer, np.random.default_rng(0), 0.3, max_tokens=config.task.max_len
        )
        assert not [i for i in traj.info if i.get("stop") == "token_budget"]
        length = (np.asarray(traj.segment_ids) > 0).sum(1)
        prompt = length - (np.asarray(traj.action_mask) > 0).sum(1)
        # A sampled response may use every new token: the prompt must leave room for them.
        assert prompt.max() + config.task.max_new_tokens <= config.task.max_len


def test_run_means_average_the_logged_steps(tmp_path):
    rows = [
        {"step": 1, "tmn_task_cv": 0.2, "tmn_p_hat_mean": 0.5},
        {"step": 2, "update_skipped": 1.0},  # dynamic sampling kept no group: nothing logged
        {"step": 3, "tmn_task_cv": 0.5, "tmn_p_hat_mean": 0.25},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))

    class Run:
        run_dir = tmp_path

    assert golongrl._run_means(Run()) == {
        "mean_task_cv": 0.35,
        "mean_p_hat": 0.375,
        "first_step_task_cv": 0.2,
    }
    assert golongrl._run_means(type("WarmStart", (), {"run_dir": tmp_path / "sft"})()) == {}
    # A first step that kept no group logs no CV: there is no same-batch value to report.
    skipped = tmp_path / "skipped"
    skipped.mkdir()
    (skipped / "metrics.jsonl").write_text(
        "".join(json.dumps(r) + "\n" for r in [{"step": 1, "update_skipped": 1.0}, rows[2]])
    )
    assert golongrl._run_means(type("Skipped", (), {"run_dir": skipped})()) == {
        "mean_task_cv": 0.5,
        "mean_p_hat": 0.25,
    }


def test_probe_scores_each_capability(tmp_path):
    trainer = Trainer(golongrl.STUDY.run_config("grpo", 0, smoke=True), tmp_path / "run")
    result = golongrl.probe(trainer, smoke=True)["scalars"]
    names = {f"score_{n}" for n in CAPABILITY_NAMES}
    nll = "untrained_answer_nll_numerical_reasoning"
    assert set(result) == names | {"macro_trained", "untrained_numerical_reasoning", nll}
    scores = np.array([result[f"score_{n}"] for n in CAPABILITY_NAMES])
    assert np.all((scores >= 0) & (scores <= 1))
    trained = [j for j in range(NUM_TASKS) if j != golongrl.UNTRAINED]
    assert result["macro_trained"] == pytest.approx(scores[trained].mean())
    assert result["untrained_numerical_reasoning"] == scores[golongrl.UNTRAINED]


def test_answer_nll_equals_an_independent_forward(tmp_path):
    trainer = Trainer(golongrl.STUDY.run_config("grpo", 0, smoke=True), tmp_path / "run")
    capability = trainer.family.families[golongrl.UNTRAINED]
    tasks = [capability.generate("heldout", i) for i in range(8)]
    got = golongrl._answer_nll(trainer, tasks)
    # The same gold answers scored from the policy's full logits in float64 numpy (rows are
    # right-padded and attention is causal, so the unmasked forward gives the same positions).
    traj = expert_trajectories(
        trainer.family, tasks, trainer.tokenizer, np.random.default_rng(golongrl.PROBE_KEY), 0.0,
        max_tokens=trainer.config.task.max_len,
    )  # fmt: skip
    tokens = np.asarray(traj.tokens)
    logits = np.asarray(trainer.policy.logits(tokens), np.float64)[:, :-1]
    top = logits.max(-1, keepdims=True)
    logz = np.log(np.exp(logits - top).sum(-1)) + top[..., 0]
    lp = np.take_along_axis(logits, tokens[:, 1:, None], -1)[..., 0] - logz
    answer = np.asarray(traj.action_mask, bool)[:, 1:]
    assert answer.sum() > 8  # every task has a gold answer of several tokens
    assert got == pytest.approx(-lp[answer].mean(), rel=1e-4)
    assert got > 0.5  # an untrained policy does not know the answers
