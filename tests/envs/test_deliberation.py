"""Hidden-key search (anti_sd.md section 8); its teacher context is tested in tests/rollout."""

import collections
import hashlib

import numpy as np
import pytest

from rljax.data import load_tokenizer
from rljax.envs import registry
from rljax.envs.base import MultiTurnFamily
from rljax.envs.deliberation import KeySearchFamily
from rljax.rollout import expert_trajectories


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def play(family, task, actions):
    episode = family.start(task)
    observations = []
    for action in actions:
        observations.append(episode.step(action))
        if observations[-1].done:
            break
    return episode, observations


# ---- the task


def test_registered_and_generated_deterministically():
    family = registry.make("keysearch", num_keys=12, seed=3)
    assert isinstance(family, MultiTurnFamily) and family == KeySearchFamily(num_keys=12, seed=3)
    assert (family.max_tries, family.max_turns) == (12, 13)
    task = family.generate("train", 5)
    assert task == family.generate("train", 5) and task.uid == "keysearch/train/5"
    assert task.prompt == f"LOCK {task.meta['lock']:04d} KEYS 0-11 TRIES 12"
    digest = hashlib.sha256(f"keysearch/3/{task.meta['lock']}".encode()).digest()
    assert task.answer == int.from_bytes(digest[:8], "big") % 12  # the documented hidden key


def test_splits_are_disjoint_and_keys_spread():
    family = KeySearchFamily()
    locks = {
        split: {family.generate(split, i).meta["lock"] for i in range(300)}
        for split in ("train", "heldout")
    }
    assert not locks["train"] & locks["heldout"]
    keys = collections.Counter(family.generate("train", i).answer for i in range(800))
    assert sorted(keys) == list(range(8)) and max(keys.values()) < 150  # 100 expected each


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(num_keys=1), "num_keys must be an int in"),
        (dict(num_keys=8, max_tries=3), r"max_tries must be an int in \[4, 8\]"),
        (dict(num_keys=8, max_tries=9), r"max_tries must be an int in \[4, 8\]"),
        (dict(max_turns=1), "max_turns must be an int >= 2"),
        (dict(lock_digits=1), "lock_digits must be an int in"),
        (dict(heldout_fraction=1.0), "heldout_fraction must be in"),
    ],
)
def test_bad_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        KeySearchFamily(**kwargs)


def test_try_feedback_and_answer():
    family = KeySearchFamily()
    task = family.generate("train", 0)
    key, wrong = task.answer, (task.answer + 1) % 8
    episode, obs = play(
        family, task, [f"WAIT TRY {wrong}", f"WAIT WAIT TRY {key}", f"ANSWER {key}"]
    )
    assert [(o.text, o.warning, o.done) for o in obs] == [
        ("NO", "", False),
        ("YES", "", False),
        ("", "", True),
    ]
    verdict = episode.verdict()
    assert verdict.reward == 1.0 and verdict.info == {
        "reason": "correct",
        "tries": 2,
        "waits": 3,
        "turns": 3,
        "premature": False,
    }
    episode, _ = play(family, task, [f"ANSWER {wrong}"])
    verdict = episode.verdict()
    assert (
        verdict.reward == 0.0
        and verdict.info["premature"]
        and verdict.info["reason"].startswith("wrong")
    )
    episode, _ = play(family, task, [f"ANSWER {key}"])
    assert episode.verdict().reward == 1.0 and episode.verdict().info["premature"]  # a lucky guess


@pytest.mark.parametrize(
    "action, message",
    [
        ("", "malformed action ''"),
        ("TRY", "malformed action 'TRY'"),
        ("WAIT", "malformed action 'WAIT'"),
        ("GUESS 3", "malformed action 'GUESS 3'"),
        ("TRY 3 WAIT", "malformed action 'TRY 3 WAIT'"),
        ("WAIT TRY 3 TRY 4", "malformed action 'WAIT TRY 3 TRY 4'"),
        ("TRY 8", "key '8' is not in 0..7"),
        ("ANSWER x", "key 'x' is not in 0..7"),
    ],
)
def test_malformed_actions_get_a_clear_warning_and_change_nothing(action, message):
    family = KeySearchFamily()
    episode, [obs] = play(family, family.generate("train", 0), [action])
    assert obs.text == "" and message in obs.warning and "expected `WAIT ... TRY a`" in obs.warning
    assert not obs.done and (episode.tries, episode.answer) == (0, None)


def test_try_budget_and_turn_limit():
    family = KeySearchFamily(num_keys=8, max_tries=4, max_turns=6)
    task = family.generate("train", 1)
    wrong = [k for k in range(8) if k != task.answer]
    episode, obs = play(family, task, [f"TRY {k}" for k in wrong[:6]])
    assert [o.text for o in obs] == ["NO"] * 4 + ["", ""]
    assert (
        obs[4].warning == "try budget spent (4 tries): ANSWER now"
        and obs[-1].done
        and not obs[-2].done
    )
    verdict = episode.verdict()
    assert verdict.reward == 0.0 and verdict.info["reason"].startswith("no answer")
    with pytest.raises(RuntimeError, match="the episode is over"):
        episode.step("ANSWER 0")


# ---- scripted experts


def test_noiseless_student_expert_searches_systematically_and_solves():
    family = KeySearchFamily(num_keys=12)
    for i in range(100):
        task = family.generate("heldout", i)
        actions = family.expert_actions(task, np.random.default_rng(i), 0.0)
        assert (
            all(a.startswith("WAIT TRY ") for a in actions[:-1])
            and actions[-1] == f"ANSWER {task.answer}"
        )
        tried = [int(a.split()[-1]) for a in actions[:-1]]
        assert tried[-1] == task.answer and np.all(
            np.diff(tried) % 12 == 1
        )  # consecutive keys, cyclic
        assert family.verify(task, family.expert(task, np.random.default_rng(i), 0.0)).reward == 1.0


def test_noisy_student_expert_answers_early_at_the_noise_rate():
    # With probability q the trace answers before finding the key, after m ~ U{0..pos} tries, guessing
    # among the N - m untried keys (pos ~ U{0..N-1}, the key's place in the search order):
    # E[reward] = 1 - q + q * mean_pos mean_{m <= pos} 1 / (N - m).
    n, q = 8, 0.4
    early_success = np.mean([np.mean([1 / (n - m) for m in range(pos + 1)]) for pos in range(n)])
    family = KeySearchFamily(num_keys=n)
    rng = np.random.default_rng(0)
    verdicts = [
        play(family, task, family.expert_actions(task, rng, q))[0].verdict()
        for task in (family.generate("train", i) for i in range(2000))
    ]
    assert np.mean([v.info["premature"] for v in verdicts]) == pytest.approx(q, abs=0.035)
    assert np.mean([v.reward for v in verdicts]) == pytest.approx(
        1 - q + q * early_success, abs=0.035
    )


def test_teacher_mode_expert_goes_straight_to_the_key():
    family = KeySearchFamily()
    task = family.generate("train", 2)
    teacher = family.teacher_task(task, correct=True)
    key = task.answer
    assert teacher.prompt == f"{task.prompt}\nSOL TRY {key} YES ANSWER {key}\nCORRECT"
    assert teacher.uid == "keysearch/train/2/teacher" and teacher.answer == key
    assert family.expert_actions(teacher, np.random.default_rng(0), 0.0) == [
        f"TRY {key}",
        f"ANSWER {key}",
    ]
    noisy = family.expert_actions(teacher, np.random.default_rng(0), 1.0)
    assert (
        len(noisy) == 3
        and noisy[0] != f"TRY {key}"
        and noisy[1:] == [f"TRY {key}", f"ANSWER {key}"]
    )
    assert family.verify(teacher, "\n".join(noisy)).reward == 1.0


def test_warm_start_mixture_plays_through_the_rollout(tokenizer):
    family = KeySearchFamily()
    tasks = family.warm_start_tasks(40, teacher_fraction=0.5)
    modes = [t.meta["mode"] for t in tasks]
    assert 10 <= modes.count("teacher") <= 30 and tasks == family.warm_start_tasks(
        40, teacher_fraction=0.5
    )
    traj = expert_trajectories(family, tasks, tokenizer, np.random.default_rng(0), 0.0)
    assert traj.rewards.tolist() == [1.0] * 40
    for b, mode in enumerate(modes):
        text = tokenizer.decode(traj.tokens[b][traj.action_mask[b]].tolist())
        assert ("WAIT" in text) == (mode == "student" and traj.num_turns[b] > 1)
        assert ("SOL" in tokenizer.decode(traj.tokens[b].tolist())) == (mode == "teacher")
