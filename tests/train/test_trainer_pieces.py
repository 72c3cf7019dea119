"""Host-side trainer pieces: held-out scoring, DAPO dynamic sampling with static shapes, configs."""

import dataclasses
import types

import numpy as np
import pytest

from rljax.rollout.types import Trajectories
from rljax.train import config as config_lib
from rljax.train.collect import concat_trajectories, filter_groups
from rljax.train.heldout import final_answers, score_samples


def test_final_answers_reads_the_terminal_answer_command():
    # maj@k votes on final answers; a terminal episode answers with `<cmd> answer V </cmd>`, and
    # two episodes that looked the value up differently but answer alike must vote together.
    class Chars:
        def decode(self, ids, skip_special_tokens=True):
            return "".join(map(chr, ids))

    texts = [
        "<think> a </think> <cmd> grep k01 f00 </cmd><think> b </think> <cmd> answer ab12 </cmd>",
        "<think> c </think> <cmd> cat f00 </cmd><think> d </think> <cmd> answer ab12 </cmd>",
        "<think> 3+4 </think><answer>7</answer>",
        "no answer",
    ]
    width = max(map(len, texts))
    tokens = np.array([[ord(c) for c in t.ljust(width)] for t in texts])
    mask = np.array([[i < len(t) for i in range(width)] for t in texts])
    traj = types.SimpleNamespace(tokens=tokens, action_mask=mask)
    assert final_answers(traj, Chars()) == ["ab12", "ab12", "7", "no answer"]


def test_score_samples_hand_worked():
    # Two prompts, n = 4 samples each. Prompt 0: 1 correct -> pass@1 = 1/4, pass@2 = 1 - C(3,2)/C(4,2)
    # = 1 - 3/6 = 0.5, pass@4 = 1; majority answer "7" (x2) is wrong -> maj@4 = 0.
    # Prompt 1: 3 correct -> pass@1 = 3/4, pass@2 = 1, pass@4 = 1; majority "5" correct -> maj@4 = 1.
    rewards = np.array([1, 0, 0, 0, 1, 1, 0, 1], np.float32)
    answers = ["3", "7", "7", "", "5", "5", "9", "5"]
    metrics = score_samples(rewards, answers, 4)
    assert metrics["pass@1"] == pytest.approx((0.25 + 0.75) / 2)
    assert metrics["pass@2"] == pytest.approx((0.5 + 1.0) / 2)
    assert metrics["pass@4"] == pytest.approx(1.0)
    assert metrics["maj@4"] == pytest.approx(0.5)


def _traj(rewards, seq_len, group_size):
    b = len(rewards)
    zeros = np.zeros((b, seq_len), np.int32)
    return Trajectories(
        tokens=np.arange(b * seq_len, dtype=np.int32).reshape(b, seq_len) + 1,
        positions=zeros,
        segment_ids=np.ones((b, seq_len), np.int32),
        action_mask=np.ones((b, seq_len), np.int32),
        env_mask=zeros,
        warning_mask=zeros,
        stage_ids=zeros - 1,
        sampler_logprobs=np.zeros((b, seq_len), np.float32),
        rewards=np.asarray(rewards, np.float32),
        group_ids=np.repeat(np.arange(b // group_size), group_size).astype(np.int32),
        task_ids=np.zeros(b, np.int32),
        lengths=np.full(b, seq_len, np.int32),
        num_turns=np.ones(b, np.int32),
        truncated=np.zeros(b, bool),
        stage_rewards=np.zeros((b, 0), np.float32),
        info=tuple({"row": i} for i in range(b)),
    )


def test_dynamic_sampling_keeps_varied_groups_and_masks_filler():
    # grpo.md E7: [[1,1,1,1],[1,0,0,0],[0,0,0,0]] keeps only the middle group. Two rounds of
    # 3 prompts keep 2 groups < P = 3, so one dropped group fills the batch, masked out.
    rounds = [
        _traj([1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], 64, 4),
        _traj([0, 1, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0], 128, 4),
    ]
    tasks = [["a", "b", "c"], ["d", "e", "f"]]
    batch, kept_tasks, group_mask, metrics = filter_groups(
        lambda r: (rounds[r], tasks[r]), num_prompts=3, group_size=4, max_rounds=2, pad_id=0
    )
    assert kept_tasks == ["b", "d", "a"]
    np.testing.assert_array_equal(group_mask, [True, True, False])
    assert batch.tokens.shape == (12, 128)
    np.testing.assert_array_equal(batch.rewards, [1, 0, 0, 0, 0, 1, 0, 0, 1, 1, 1, 1])
    np.testing.assert_array_equal(batch.group_ids, np.repeat([0, 1, 2], 4))
    assert batch.action_mask[:8, :64].all() and not batch.action_mask[8:].any()
    assert not batch.action_mask[:4, 64:].any()  # padding of the shorter round
    assert [i["row"] for i in batch.info] == [4, 5, 6, 7, 0, 1, 2, 3, 0, 1, 2, 3]
    assert metrics == {
        "groups_kept": 2.0,
        "sampling_rounds": 2.0,
        "reward_generated": pytest.approx(10 / 24),
    }  # (4+1) + (1+4) of 24


def test_concat_pads_tokens_and_stage_ids():
    batch = concat_trajectories([_traj([1, 0], 64, 2), _traj([0, 1], 128, 2)], pad_id=0)
    assert batch.tokens.shape == (4, 128)
    assert (batch.tokens[:2, 64:] == 0).all() and (batch.stage_ids[:2, 64:] == -1).all()


def test_overrides_parse_types_and_reject_unknown_fields():
    cfg = config_lib.apply_overrides(
        config_lib.ExperimentConfig(),
        [
            "optim.learning_rate=1",
            "model.hf_path=None",
            "task.kwargs={'digits': 1}",
            "model.overrides.num_layers=2",
        ],
    )
    assert cfg.optim.learning_rate == 1.0 and isinstance(cfg.optim.learning_rate, float)
    assert cfg.model.hf_path is None
    assert cfg.task.kwargs == {"digits": 1} and cfg.model.overrides == {"num_layers": 2}
    with pytest.raises(ValueError, match="has no field 'learning_rat'"):
        config_lib.apply_overrides(cfg, ["optim.learning_rat=1"])
    with pytest.raises(ValueError, match="is a section"):
        config_lib.apply_overrides(cfg, ["optim=3"])
    round_trip = config_lib.ExperimentConfig.from_dict(cfg.to_dict())
    assert dataclasses.asdict(round_trip) == cfg.to_dict()
