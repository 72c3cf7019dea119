"""The Anti-SD teacher context as token arrays (anti_sd.md ASD-7), on hidden-key search."""

import collections

import numpy as np
import pytest

from rljax.data import load_tokenizer
from rljax.data.chat import render_prompt
from rljax.envs.deliberation import KeySearchFamily
from rljax.rollout import rollout
from rljax.rollout.session import ScriptedSession
from rljax.rollout.teacher import REFERENCE, build_teacher_batch, response_text, solution_rows


@pytest.fixture(scope="module")
def tokenizer():
    return load_tokenizer()


def teacher_batch(family, traj, tasks, tokenizer, *, group_size):
    return build_teacher_batch(
        traj, tasks, tokenizer, family.teacher_context, group_size=group_size, seed=family.seed
    )


def test_solution_rows_by_hand():
    rewards = np.array([1, 0, 1, 0, 0, 0, 0, 1, 0], np.float32)
    rows = solution_rows(rewards, 3, np.random.default_rng(0))
    assert rows[0] == 2 and rows[2] == 0  # another correct peer, never itself
    assert rows[1] in (0, 2)
    assert rows[3:6].tolist() == [REFERENCE] * 3  # no correct rollout: the reference
    assert rows[6:].tolist() == [7, 7, 7]  # a lone correct rollout sees itself
    draws = collections.Counter(
        int(solution_rows(rewards, 3, np.random.default_rng(s))[1]) for s in range(200)
    )
    assert set(draws) == {0, 2} and min(draws.values()) > 60  # uniform over the two peers
    with pytest.raises(ValueError, match="multiple of group_size=4"):
        solution_rows(rewards, 4, np.random.default_rng(0))


@pytest.fixture(scope="module")
def teacher_setup(tokenizer):
    family = KeySearchFamily()
    tasks = [family.generate("train", i) for i in range(3)]
    k0, k1, k2 = (t.answer for t in tasks)
    w = [(k + 1) % 8 for k in (k0, k1, k2)]
    v = [(k + 2) % 8 for k in (k0, k1, k2)]
    actions = [
        [
            "TRY",
            f"WAIT TRY {w[0]}",
            f"WAIT TRY {k0}",
            f"ANSWER {k0}",
        ],  # correct (one malformed turn)
        [f"ANSWER {w[0]}"],  # wrong
        [f"WAIT WAIT TRY {v[0]}", f"TRY {k0}", f"ANSWER {k0}"],  # correct
        [f"ANSWER {w[1]}"],
        [f"WAIT TRY {w[1]}", f"ANSWER {w[1]}"],
        [f"ANSWER {v[1]}"],  # all wrong
        [f"ANSWER {w[2]}"],
        [f"WAIT TRY {w[2]}", f"TRY {k2}", f"ANSWER {k2}"],
        [f"ANSWER {v[2]}"],  # one right
    ]
    session = ScriptedSession(tokenizer, actions, max_len=512)
    traj = rollout(
        session,
        family,
        tasks,
        tokenizer,
        max_tokens=512,
        group_size=3,
        max_turns=[len(a) for a in actions],
    )
    assert traj.rewards.tolist() == [1, 0, 1, 0, 0, 0, 0, 1, 0]
    traces = {
        0: f"TRY {w[0]} NO TRY {k0} YES ANSWER {k0}",
        2: f"TRY {v[0]} NO TRY {k0} YES ANSWER {k0}",
        7: f"TRY {w[2]} NO TRY {k2} YES ANSWER {k2}",
        "ref1": f"TRY {k1} YES ANSWER {k1}",
    }
    return family, tasks, traj, traces, teacher_batch(family, traj, tasks, tokenizer, group_size=3)


def test_response_text_strips_glue_and_warnings(tokenizer, teacher_setup):
    family, _, traj, traces, _ = teacher_setup
    text = response_text(
        tokenizer, traj.tokens[0], traj.action_mask[0], traj.env_mask[0], traj.warning_mask[0]
    )
    assert "WARNING" not in text and "malformed" not in text and text.startswith("TRY WAIT TRY")
    assert family.solution_text(text) == traces[0]  # WAITs and the malformed "TRY" stripped


def test_teacher_prompts_use_a_correct_peer_else_the_reference(tokenizer, teacher_setup):
    _, tasks, traj, traces, batch = teacher_setup

    def teacher_prompt(b):
        start = int(batch["teacher_index"][b][batch["teacher_index"][b] >= 0][0])
        return tokenizer.decode(batch["teacher_tokens"][b, :start].tolist())

    def expected(p, trace, feedback):
        return f"<|bos|><|user|>{tasks[p].prompt}\nSOL {trace}\n{feedback}<|end|><|assistant|>"

    assert teacher_prompt(0) == expected(0, traces[2], "CORRECT")
    assert teacher_prompt(2) == expected(0, traces[0], "CORRECT")
    assert teacher_prompt(1) in (
        expected(0, traces[0], "INCORRECT"),
        expected(0, traces[2], "INCORRECT"),
    )
    for b in (3, 4, 5):
        assert teacher_prompt(b) == expected(1, traces["ref1"], "INCORRECT")
    assert teacher_prompt(7) == expected(2, traces[7], "CORRECT")
    assert teacher_prompt(6) == teacher_prompt(8) == expected(2, traces[7], "INCORRECT")


def test_teacher_sequences_align_with_the_student(tokenizer, teacher_setup):
    _, tasks, traj, _, batch = teacher_setup
    tokens, index = batch["teacher_tokens"], batch["teacher_index"]
    assert index.shape == traj.tokens.shape and tokens.shape[1] % 64 == 0
    assert all(batch[k].dtype == np.int32 for k in batch)
    for b in range(traj.batch_size):
        prompt_len = len(render_prompt(tokenizer, tasks[b // 3].prompt))
        length = int(traj.lengths[b])
        mapped = index[b] >= 0
        assert mapped.tolist() == [prompt_len <= t < length for t in range(traj.seq_len)]
        np.testing.assert_array_equal(
            tokens[b, index[b][mapped]], traj.tokens[b][mapped]
        )  # the invariant
        start = index[b, prompt_len]
        np.testing.assert_array_equal(index[b][mapped], start + np.arange(length - prompt_len))
        real = int(batch["teacher_segment_ids"][b].sum())
        assert real == start + length - prompt_len and index[b].max() == real - 1
        np.testing.assert_array_equal(batch["teacher_positions"][b, :real], np.arange(real))
        assert (
            not batch["teacher_positions"][b, real:].any()
            and not batch["teacher_segment_ids"][b, real:].any()
        )
        assert (tokens[b, real:] == tokenizer.pad_token_id).all()


def test_teacher_batch_is_deterministic_and_checks_its_tasks(tokenizer, teacher_setup):
    family, tasks, traj, _, batch = teacher_setup
    again = teacher_batch(family, traj, tasks, tokenizer, group_size=3)
    assert all(np.array_equal(batch[k], again[k]) for k in batch)
    with pytest.raises(ValueError, match=r"3 tasks x group_size=2 != 9 trajectory rows"):
        teacher_batch(family, traj, tasks, tokenizer, group_size=2)
    with pytest.raises(ValueError, match="row 0 does not start with the rendered prompt"):
        teacher_batch(family, traj, tasks[::-1], tokenizer, group_size=3)
