"""The Anti-SD study: its arms are section 8's settings, the probe's u equals the trainer's own
Anti-SD inputs, and u is summed over the right words of each role."""

import re

import numpy as np
import pytest
from rljax.experiments.studies import anti_sd

from rljax import methods
from rljax.rollout import expert_trajectories
from rljax.train.loop import Trainer

SECTION_8 = {
    "grpo": ("grpo", {}),
    "sd": ("anti_sd", {"divergence": "rkl", "direction": "descent", "gate": False}),
    "anti_sd": ("anti_sd", {}),
    "rkl_ascent": ("anti_sd", {"divergence": "rkl"}),
    "anti_sd_no_gate": ("anti_sd", {"gate": False}),
    "anti_sd_mult": ("anti_sd", {"compose": "mult"}),
    "no_teacher": ("anti_sd", {"teacher": "none"}),
}


@pytest.mark.parametrize("smoke", [True, False])
def test_arms_are_section_8s_settings(smoke):
    assert set(anti_sd.STUDY.arms) == set(SECTION_8)
    for arm, (name, knobs) in SECTION_8.items():
        config = anti_sd.STUDY.run_config(arm, 0, smoke=smoke)
        config.validate()
        kwargs = dict(config.method.kwargs)
        assert config.method.name == name
        if name == "anti_sd":  # the paper's lambda_max; W, tau_down, clip left at the defaults
            assert kwargs == {"coef_max": 0.5, **knobs}
        else:
            assert kwargs == {}
        method = methods.make_method(name, **kwargs)
        needs_teacher = name == "anti_sd" and knobs.get("teacher") != "none"
        assert ("teacher" in method.needs) == needs_teacher
    task = anti_sd.STUDY.run_config("grpo", 0).task
    family = task.kwargs
    # Section 8: N_key 8-16, a budget of at least N/2 tries, every try plus the answer as turns.
    assert 8 <= family["num_keys"] <= 16 and family["max_tries"] >= family["num_keys"] / 2
    assert task.max_turns == family["max_tries"] + 1 and task.group_size == 8


def test_best_accuracy():
    assert anti_sd.best_accuracy(12, 8) == pytest.approx(0.75)  # 8/12 found + 4/12 * 1/4
    assert anti_sd.best_accuracy(8, 8) == 1.0


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """The Anti-SD arm's smoke trainer at its random initialisation (no warm start loaded)."""
    config = anti_sd.STUDY.run_config("anti_sd", 0, smoke=True)
    return Trainer(config, tmp_path_factory.mktemp("anti_sd") / "run")


def _expert(trainer, n, *, noise=0.4, seed=0, mixture=True):
    """Warm-start traces (student and teacher mode; `mixture=False`: student mode only) of the
    first `n` training tasks, one row per task."""
    family = trainer.family
    tasks = (
        family.warm_start_tasks(n) if mixture else [family.generate("train", i) for i in range(n)]
    )
    traj = expert_trajectories(
        trainer.family,
        tasks,
        trainer.tokenizer,
        np.random.default_rng(seed),
        noise,
        max_tokens=trainer.config.task.max_len,
    )
    return tasks, traj


def test_probe_u_equals_the_anti_sd_trainers_inputs(trainer):
    # 8 rows (the test mesh splits rows over 8 devices), each its own group.
    tasks, traj = _expert(trainer, 8, mixture=False)
    u, entropy = anti_sd.self_teacher(trainer, traj, tasks, 1)
    inputs = trainer.prepare_inputs(traj, tasks, np.ones(8, bool), group_size=1)[0]
    mask = np.asarray(traj.action_mask, bool)
    expected = np.asarray(inputs.teacher_logprobs) - np.asarray(inputs.old_logprobs)
    np.testing.assert_allclose(u[mask], expected[mask], atol=1e-5)
    assert np.all(u[~mask] == 0.0) and np.abs(u[mask]).max() > 0
    np.testing.assert_allclose(entropy[mask], np.asarray(inputs.teacher_entropy)[mask], atol=1e-5)


def test_token_type_u_sums_each_word_of_each_role(trainer):
    tasks, traj = _expert(trainer, 24, seed=1)
    tokens = np.asarray(traj.tokens)
    # u = 1 on every token: a word's u is its token count (a leading space token included).
    by_type = anti_sd.token_type_u(traj, tasks, np.ones(tokens.shape), trainer.tokenizer, 1)
    info = traj.info
    teacher = [t.meta["mode"] == "teacher" for t in tasks]
    assert len(by_type["wait"]) == sum(i["waits"] for i in info) > 0
    # The student traces always WAIT before a TRY; the teacher traces never do.
    assert len(by_type["direct_try"]) == sum(i["tries"] for i, t in zip(info, teacher) if t) > 0
    premature = sum(bool(i["premature"]) for i in info)
    assert len(by_type["answer_premature"]) == premature > 0
    assert len(by_type["answer_found"]) == len(info) - premature
    numbers = sum(i["tries"] for i in info) + len(info)  # one per TRY and per ANSWER
    assert len(by_type["key"]) + len(by_type["non_key"]) == numbers
    # The key's numbers, counted independently on each turn's decoded text.
    action = np.asarray(traj.action_mask, bool)
    keys = 0
    for b, task in enumerate(tasks):
        for turn in anti_sd._runs(action[b]):
            text = trainer.tokenizer.decode(tokens[b, turn], skip_special_tokens=True)
            keys += sum(int(a) == task.answer for a in re.findall(r"(?:TRY|ANSWER) (\d+)", text))
    assert len(by_type["key"]) == keys > 0 and len(by_type["non_key"]) > 0
    # 'W','A','IT' (or ' W','A','IT'); 'TR','Y'; 'A','N','S','W','E','R'; ' ' and one digit.
    assert set(by_type["wait"]) == {3.0}
    assert set(by_type["direct_try"]) == {2.0}
    assert set(by_type["answer_premature"]) | set(by_type["answer_found"]) == {6.0}
    assert set(by_type["key"]) | set(by_type["non_key"]) == {2.0}


@pytest.mark.slow  # ~20 s; test_reproduce's --smoke of every study runs this probe end to end
def test_probe_smoke(trainer):
    result = anti_sd.probe(trainer, smoke=True)
    scalars, curve = result["scalars"], result["curves"]["pass@k"]
    assert curve["x"] == list(range(1, 9))
    assert all(a <= b + 1e-12 for a, b in zip(curve["y"], curve["y"][1:]))  # pass@k rises with k
    assert scalars["pass@1"] == curve["y"][0] and scalars["pass@8"] == curve["y"][-1]
    for name in ("premature_answer_rate", "no_answer_rate"):
        assert 0.0 <= scalars[name] <= 1.0
    assert scalars["response_tokens"] > 0 and scalars["teacher_entropy_median"] > 0
    assert all(np.isfinite(v) for v in scalars.values())
