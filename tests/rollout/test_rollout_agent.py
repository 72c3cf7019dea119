"""Tests for `rollout`: masks token by token, batching and padding, turn limits, budgets."""

import numpy as np
import pytest
import tokenizers
import transformers
from keyhunt import KeyHuntFamily, masked_spans

from rljax.data import ChatFormat, load_tokenizer
from rljax.envs.arithmetic import ArithmeticFamily
from rljax.rollout import ScriptedSession, rollout
from rljax.rollout.batch import rollout_width
from rljax.sampling import Generation

OBS_F00 = "$ cat f00\nk00=ab12\n(exit=0)"
OBS_F01 = "$ cat f01\nk01=zz9q\n(exit=0)"
OBS_F09 = "$ cat f09\ncat: f09: No such file or directory\n(exit=1)"
NO_CALL = "No valid tool calls or done signal found."
WARN = "WARNINGS:\n- Missing <think> block\n\n"
ACTIONS = [
    ["<think> a </think> <cmd> cat f00 </cmd>", "<think> b </think> <cmd> answer ab12 </cmd>"],
    ["<cmd> cat f09 </cmd>", "<think> c </think> <cmd> answer nope </cmd>"],
    ["<think> d </think> <cmd> answer zz9q </cmd>"],
    ["ls", "<cmd> cat f01 </cmd>", "<think> e </think> <cmd> answer zz9q </cmd>"],
]
EXPECTED_TEXT = [
    "<|bos|><|user|>Q: value of k00 ?<|end|><|assistant|><think> a </think> <cmd> cat f00 </cmd><|end|>"
    f"<|observation|>{OBS_F00}<|end|><|assistant|><think> b </think> <cmd> answer ab12 </cmd><|end|>",
    "<|bos|><|user|>Q: value of k00 ?<|end|><|assistant|><cmd> cat f09 </cmd><|end|>"
    f"<|observation|>{WARN}{OBS_F09}<|end|><|assistant|><think> c </think> <cmd> answer nope </cmd><|end|>",
    "<|bos|><|user|>Q: value of k01 ?<|end|><|assistant|><think> d </think> <cmd> answer zz9q </cmd><|end|>",
    "<|bos|><|user|>Q: value of k01 ?<|end|><|assistant|>ls<|end|>"
    f"<|observation|>{WARN}{NO_CALL}<|end|><|assistant|><cmd> cat f01 </cmd><|end|>"
    f"<|observation|>{WARN}{OBS_F01}<|end|><|assistant|><think> e </think> <cmd> answer zz9q </cmd><|end|>",
]
EXPECTED_ENV = [[OBS_F00], [WARN + OBS_F09], [], [WARN + NO_CALL, WARN + OBS_F01]]
EXPECTED_WARN = [[], [WARN], [], [WARN, WARN]]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def run(tok, actions=ACTIONS, *, family=None, tasks=None, group_size=2, max_len=512, **kwargs):
    family = family or KeyHuntFamily()
    tasks = tasks or [family.generate("train", 0), family.generate("train", 1)]
    session = ScriptedSession(tok, actions, max_len=max_len)
    kwargs = {"max_tokens": max_len, "max_turns": 4, **kwargs}
    return rollout(session, family, tasks, tok, group_size=group_size, **kwargs), session, family


def test_masks_token_by_token(tok):
    traj, _, _ = run(tok)
    for b in range(4):
        n = traj.lengths[b]
        assert tok.decode(traj.tokens[b, :n], skip_special_tokens=False) == EXPECTED_TEXT[b]
        assert masked_spans(tok, traj.tokens[b], traj.action_mask[b]) == [
            a + "<|end|>" for a in ACTIONS[b]
        ]
        assert masked_spans(tok, traj.tokens[b], traj.env_mask[b]) == EXPECTED_ENV[b]
        assert masked_spans(tok, traj.tokens[b], traj.warning_mask[b]) == EXPECTED_WARN[b]
    np.testing.assert_array_equal(traj.rewards, [1.0, 0.0, 1.0, 1.0])
    np.testing.assert_array_equal(traj.num_turns, [2, 2, 1, 3])
    np.testing.assert_array_equal(traj.truncated, [False] * 4)
    np.testing.assert_array_equal(traj.group_ids, [0, 0, 1, 1])
    np.testing.assert_array_equal(traj.task_ids, [0, 0, 1, 1])
    assert [info["stop"] for info in traj.info] == ["done"] * 4
    assert [info["uid"] for info in traj.info] == ["keyhunt/train/0"] * 2 + ["keyhunt/train/1"] * 2
    assert traj.stage_rewards.shape == (4, 0)
    assert (traj.stage_ids == -1).all()


def test_chat_glue_is_in_no_mask_and_column_zero_is_never_masked(tok):
    traj, _, _ = run(tok)
    any_mask = traj.action_mask | traj.env_mask | traj.warning_mask
    glue = np.isin(
        traj.tokens, [1, 3, 4, 5, 6]
    )  # bos, system, user, assistant, observation headers
    assert not (any_mask & glue).any()
    end = (traj.tokens == 7) & (traj.segment_ids == 1)
    # <|end|> is an action token exactly once per assistant turn; the user's and observations' are glue.
    np.testing.assert_array_equal((end & traj.action_mask).sum(1), traj.num_turns)
    np.testing.assert_array_equal((end & ~any_mask).sum(1), [2, 2, 1, 3])
    assert not any_mask[:, 0].any()
    assert not (traj.warning_mask & ~traj.env_mask).any()
    assert not (traj.action_mask & traj.env_mask).any()


def test_padding_and_layout(tok):
    traj, session, _ = run(tok, pad_multiple=64)
    assert traj.tokens.shape[1] == rollout_width(traj.lengths.max(), 64) >= traj.lengths.max()
    for b in range(4):
        n = traj.lengths[b]
        assert traj.tokens[b, :n].tolist() == session.contexts[b]  # the session's own record
        np.testing.assert_array_equal(traj.positions[b, :n], np.arange(n))
        assert (traj.tokens[b, n:] == tok.pad_token_id).all()
        assert (traj.positions[b, n:] == 0).all()
        np.testing.assert_array_equal(traj.segment_ids[b], np.arange(traj.seq_len) < n)
        for mask in (traj.action_mask, traj.env_mask, traj.warning_mask):
            assert not mask[b, n:].any()
    assert traj.tokens.dtype == np.int32 and traj.action_mask.dtype == bool


def test_masks_survive_batching(tok):
    batch, _, _ = run(tok, pad_multiple=16)
    family = KeyHuntFamily()
    for b in range(4):
        task = family.generate("train", b // 2)
        alone, _, _ = run(
            tok, [ACTIONS[b]], family=family, tasks=[task], group_size=1, pad_multiple=16
        )
        n = alone.lengths[0]
        assert batch.lengths[b] == n
        for name in (
            "tokens",
            "positions",
            "action_mask",
            "env_mask",
            "warning_mask",
            "sampler_logprobs",
        ):
            np.testing.assert_array_equal(
                getattr(batch, name)[b, :n], getattr(alone, name)[0, :n], err_msg=name
            )


def test_per_row_turn_limits_keep_the_last_observation(tok):
    actions = [["<think> x </think> <cmd> cat f00 </cmd>"] * 3] * 3
    family = KeyHuntFamily()
    traj, _, _ = run(
        tok,
        actions,
        family=family,
        tasks=[family.generate("train", 0)],
        group_size=3,
        max_turns=[1, 2, 3],
    )
    np.testing.assert_array_equal(traj.num_turns, [1, 2, 3])
    np.testing.assert_array_equal(traj.truncated, [True] * 3)
    assert [info["stop"] for info in traj.info] == ["turn_limit"] * 3
    assert [len(episode.actions) for episode in family.episodes] == [1, 2, 3]
    for b in range(3):
        assert masked_spans(tok, traj.tokens[b], traj.env_mask[b]) == [OBS_F00] * (b + 1)
        text = tok.decode(traj.tokens[b, : traj.lengths[b]], skip_special_tokens=False)
        assert text.endswith(
            f"<|observation|>{OBS_F00}<|end|>"
        )  # no generation prompt after the last turn
    np.testing.assert_array_equal(traj.rewards, [0.0, 0.0, 0.0])  # verdict: no answer given


def test_episode_closing_itself_keeps_its_last_observation(tok):
    family = KeyHuntFamily(max_turns=2)
    actions = [["<cmd> cat f00 </cmd>", "<think> x </think> <cmd> cat f01 </cmd>", "never played"]]
    traj, _, _ = run(tok, actions, family=family, tasks=[family.generate("train", 0)], group_size=1)
    assert traj.info[0]["stop"] == "done" and not traj.truncated[0] and traj.num_turns[0] == 2
    assert masked_spans(tok, traj.tokens[0], traj.env_mask[0]) == [WARN + OBS_F00, OBS_F01]
    assert masked_spans(tok, traj.tokens[0], traj.warning_mask[0]) == [WARN]
    assert tok.decode(traj.tokens[0, : traj.lengths[0]]).endswith(
        f"<|observation|>{OBS_F01}<|end|>"
    )


def test_token_budget_truncation(tok):
    family = KeyHuntFamily()
    task = family.generate("train", 0)
    first = "<think> a </think> <cmd> cat f00 </cmd>"
    prompt_and_first = len(
        tok.encode("<|bos|><|user|>Q: value of k00 ?<|end|><|assistant|>" + first + "<|end|>")
    )
    obs = len(tok.encode(f"<|observation|>{OBS_F00}<|end|><|assistant|>"))
    answer = "<think> b </think> <cmd> answer ab12 </cmd>"
    budgets = [
        prompt_and_first - 3,  # the first action is cut: never sent to the episode
        prompt_and_first + obs - 1,  # the observation plus one generated token does not fit
        prompt_and_first + obs + 3,  # the second action is cut
    ]
    for budget, (expected_steps, expected_env) in zip(budgets, [(0, []), (1, []), (1, [OBS_F00])]):
        family.episodes.clear()
        session = ScriptedSession(tok, [[first, answer]], max_len=budget)
        traj = rollout(
            session, family, [task], tok, max_tokens=budget, max_turns=4, truncation_reward=-1.0
        )
        assert traj.lengths[0] <= budget
        assert bool(traj.truncated[0]) and traj.info[0]["stop"] == "token_budget"
        assert traj.rewards[0] == -1.0 and traj.info[0]["verifier_reward"] == 0.0
        assert len(family.episodes[0].actions) == expected_steps
        assert masked_spans(tok, traj.tokens[0], traj.env_mask[0]) == expected_env
    # With room to spare the same script succeeds.
    session = ScriptedSession(tok, [[first, answer]], max_len=budgets[2] + 20)
    traj = rollout(session, family, [task], tok, max_tokens=budgets[2] + 20, max_turns=4)
    assert traj.rewards[0] == 1.0 and not traj.truncated[0]


def test_max_new_tokens_cuts_a_turn(tok):
    traj, _, family = run(
        tok,
        [["<think> a long thought here </think> <cmd> cat f00 </cmd>"]],
        group_size=1,
        tasks=[KeyHuntFamily().generate("train", 0)],
        max_new_tokens=4,
    )
    assert traj.action_mask[0].sum() == 4
    assert traj.info[0]["stop"] == "token_budget" and traj.rewards[0] == 0.0


class LogprobSession(ScriptedSession):
    """Scripted replay that reports log-prob -0.01 * k for the k-th generated token (k = 1, 2, ...)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.count = 0

    def generate(self, **kwargs):
        out = []
        for gen in super().generate(**kwargs):
            lps = [-0.01 * (self.count + i + 1) for i in range(len(gen.tokens))]
            self.count += len(gen.tokens)
            out.append(Generation(gen.tokens, lps, gen.stopped))
        return out


def test_sampler_logprobs_align_with_generated_tokens(tok):
    family = KeyHuntFamily()
    session = LogprobSession(tok, ACTIONS[:2], max_len=512)
    traj = rollout(
        session,
        family,
        [family.generate("train", 0)],
        tok,
        max_tokens=512,
        group_size=2,
        max_turns=4,
    )
    # Generation order: turn 1 of rows 0 and 1, then turn 2 of rows 0 and 1.
    sizes = [[len(tok.encode(a)) + 1 for a in row] for row in ACTIONS[:2]]
    counter, expected = 0, [[], []]
    for turn in range(2):
        for b in range(2):
            expected[b] += [-0.01 * (counter + i + 1) for i in range(sizes[b][turn])]
            counter += sizes[b][turn]
    for b in range(2):
        np.testing.assert_allclose(
            traj.sampler_logprobs[b][traj.action_mask[b]], expected[b], rtol=1e-6
        )
        assert (traj.sampler_logprobs[b][~traj.action_mask[b]] == 0).all()


def test_stage_rewards_come_from_the_verdict(tok):
    traj, _, _ = run(tok, family=KeyHuntFamily(with_stages=True))
    expected = [[len(a) / 10, 0.5, 0.25, r] for a, r in zip(ACTIONS, [1.0, 0.0, 1.0, 1.0])]
    np.testing.assert_allclose(traj.stage_rewards, expected, rtol=1e-6)
    assert traj.stage_rewards.dtype == np.float32


def test_single_turn_family_uses_verify(tok):
    family = ArithmeticFamily(digits=2, num_operands=2, operators="+")
    task = family.generate("train", 3)
    a, b = (int(x) for x in task.prompt.removeprefix("Compute ").removesuffix(".").split("+"))
    responses = [f"<answer>{a + b}</answer>", f"<answer>{a + b + 1}</answer>", "no tags"]
    traj, _, _ = run(
        tok, [[r] for r in responses], family=family, tasks=[task], group_size=3, max_turns=1
    )
    np.testing.assert_array_equal(traj.rewards, [1.0, 0.0, 0.0])
    np.testing.assert_array_equal(traj.num_turns, [1, 1, 1])
    for row, response in enumerate(responses):
        assert masked_spans(tok, traj.tokens[row], traj.action_mask[row]) == [response + "<|end|>"]
        assert not traj.env_mask[row].any()


def test_foreign_tokenizer_and_format(tok):
    base = tokenizers.Tokenizer(tokenizers.models.BPE())
    base.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    base.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=320,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base.train_from_iterator(
        ["cat the file and answer", "<think> x </think>"] * 20, trainer=trainer
    )
    other = transformers.PreTrainedTokenizerFast(
        tokenizer_object=base, pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )
    fmt = ChatFormat(
        bos="",
        end="<|im_end|>",
        separator="\n",
        headers={
            "system": "<|im_start|>system\n",
            "user": "<|im_start|>user\n",
            "assistant": "<|im_start|>assistant\n",
            "observation": "<|im_start|>tool\n",
        },
    )
    family = KeyHuntFamily()
    session = ScriptedSession(other, [ACTIONS[1]], max_len=512, fmt=fmt)
    traj = rollout(
        session, family, [family.generate("train", 0)], other, max_tokens=512, max_turns=4, fmt=fmt
    )
    n = traj.lengths[0]
    assert other.decode(traj.tokens[0, :n], skip_special_tokens=False) == (
        "<|im_start|>user\nQ: value of k00 ?<|im_end|>\n<|im_start|>assistant\n<cmd> cat f09 </cmd><|im_end|>"
        f"\n<|im_start|>tool\n{WARN}{OBS_F09}<|im_end|>\n<|im_start|>assistant\n"
        "<think> c </think> <cmd> answer nope </cmd><|im_end|>"
    )
    assert masked_spans(other, traj.tokens[0], traj.action_mask[0]) == [
        a + "<|im_end|>" for a in ACTIONS[1]
    ]
    assert masked_spans(other, traj.tokens[0], traj.env_mask[0]) == [WARN + OBS_F09]
    assert masked_spans(other, traj.tokens[0], traj.warning_mask[0]) == [WARN]
    assert not traj.action_mask[0, 0]


class DroppingSession(ScriptedSession):
    """A broken session that ignores appended observations."""

    def append(self, chunks):
        if self.lengths:
            return
        super().append(chunks)


def test_session_disagreeing_with_the_record_raises(tok):
    family = KeyHuntFamily()
    with pytest.raises(RuntimeError, match="session row 0 holds"):
        rollout(
            DroppingSession(tok, [ACTIONS[0]], max_len=512),
            family,
            [family.generate("train", 0)],
            tok,
            max_tokens=512,
            max_turns=4,
        )


def test_bad_arguments_raise(tok):
    family = KeyHuntFamily()
    task = family.generate("train", 0)
    session = ScriptedSession(tok, [ACTIONS[0]], max_len=512)
    with pytest.raises(ValueError, match="max_turns"):
        rollout(session, family, [task], tok, max_tokens=512, max_turns=[1, 2])
    with pytest.raises(ValueError, match="leave room"):
        rollout(session, family, [task], tok, max_tokens=5)
    with pytest.raises(ValueError, match="group_size"):
        rollout(session, family, [task], tok, max_tokens=512, group_size=0)
    with pytest.raises(ValueError, match="tasks"):
        rollout(session, family, [], tok, max_tokens=512)


@pytest.mark.parametrize(
    "length, multiple, width",
    [
        (1, 64, 16),
        (16, 64, 16),
        (17, 64, 32),
        (24, 64, 32),
        (33, 64, 64),
        (65, 64, 128),
        (130, 64, 192),
        (300, 64, 320),
        (24, 16, 32),
        (20, 8, 24),
    ],
)
def test_rollout_width_is_the_smaller_of_power_of_two_and_multiple(length, multiple, width):
    assert rollout_width(length, multiple) == width
