"""Tests for stage segmentation of generated tokens (rubric_em.md REM-1 and section 8.1)."""

import numpy as np
import pytest
from keyhunt import KeyHuntFamily, masked_spans

from rljax.data import Turn, load_tokenizer, render_conversation, role_masks
from rljax.envs.stages import MINI_RESEARCH_STAGES, PAPER_STAGES, StageScheme
from rljax.rollout import ScriptedSession, rollout, stage_ids

MINI_ACTIONS = [
    "<plan> <rubric> [NEED E01 founded] </rubric> <rplan> [SEARCH E01 founded] </rplan> </plan> "
    "<call> search E01 founded </call>",
    "<state> [MISSING E01 founded] CONT </state> <call> open 123 </call>",
    "<state> [HAVE E01 founded] DONE </state> <review> [MAP E01 founded 123] </review>",
    "<answer> [FACT E01 founded V3 CITE 123] </answer>",
]
TOOL_OUTPUTS = [
    "<tool_output> [DOC 123] [SRC journal] [ENT E01] [ATTR founded] </tool_output>",
    "<tool_output> <answer> [VAL V3] </tool_output>",
    "ok",
]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def conversation(tok, actions, observations):
    turns = [Turn("user", "<query> LOOKUP E01 founded </query>")]
    for i, action in enumerate(actions):
        turns.append(Turn("assistant", action))
        if i < len(observations):
            turns.append(Turn("observation", observations[i]))
    rendered = render_conversation(tok, turns)
    return rendered.tokens, role_masks(rendered.roles)[0]


def stage_texts(tok, tokens, ids):
    return [masked_spans(tok, tokens, ids == k) for k in range(4)]


@pytest.mark.parametrize("batched", [False, True])
def test_mini_research_segmentation(tok, batched):
    tokens, action = conversation(tok, MINI_ACTIONS, TOOL_OUTPUTS)
    if batched:
        ids = stage_ids(tok, tokens[None], action[None], MINI_RESEARCH_STAGES)[0]
    else:
        ids = stage_ids(tok, tokens, action, MINI_RESEARCH_STAGES)
    assert stage_texts(tok, tokens, ids) == [
        [
            "<plan> <rubric> [NEED E01 founded] </rubric> <rplan> [SEARCH E01 founded] </rplan> </plan>"
        ],
        # Research: the first call, and the next turn (the tool output's "<answer>" is env text, ignored).
        [
            " <call> search E01 founded </call><|end|>",
            "<state> [MISSING E01 founded] CONT </state> <call> open 123 </call><|end|>",
        ],
        # Review: from the last <state> (the one ending DONE) through the review.
        [
            "<state> [HAVE E01 founded] DONE </state> <review> [MAP E01 founded 123] </review><|end|>"
        ],
        ["<answer> [FACT E01 founded V3 CITE 123] </answer><|end|>"],
    ]
    assert (ids[~action] == -1).all()


def test_paper_scaffold_segmentation(tok):
    text = (
        "<think> a </think> <structured_plan> p </structured_plan> <call_tool name=search> q </call_tool> "
        "<think> b </think> <state_evaluation> s </state_evaluation> <think> c </think> <review> r </review> "
        "<answer> x </answer>"
    )
    tokens, action = conversation(tok, [text], [])
    assert stage_texts(tok, tokens, stage_ids(tok, tokens, action, PAPER_STAGES)) == [
        ["<think> a </think> <structured_plan> p </structured_plan>"],
        [
            " <call_tool name=search> q </call_tool> <think> b </think> <state_evaluation> s </state_evaluation>"
        ],
        [" <think> c </think> <review> r </review>"],
        [" <answer> x </answer><|end|>"],
    ]


def test_truncated_response_research_runs_to_the_end(tok):
    tokens, action = conversation(
        tok, ["<plan> p </plan> <call> search E01 city </call> <state> DONE"], []
    )
    assert stage_texts(tok, tokens, stage_ids(tok, tokens, action, MINI_RESEARCH_STAGES)) == [
        ["<plan> p </plan>"],
        [" <call> search E01 city </call> <state> DONE<|end|>"],
        [],
        [],
    ]


def test_without_plan_end_the_plan_runs_to_the_review(tok):
    tokens, action = conversation(tok, ["<plan> p <review> r </review> <answer> a </answer>"], [])
    scheme = StageScheme(plan_end="</plan>", review_start="<review>", answer_start="<answer>")
    assert stage_texts(tok, tokens, stage_ids(tok, tokens, action, scheme)) == [
        ["<plan> p"],
        [],
        [" <review> r </review>"],
        [" <answer> a </answer><|end|>"],
    ]


def test_multibyte_text_keeps_boundaries(tok):
    tokens, action = conversation(
        tok, ["<plan> é🙂中 </plan>é <review> ü </review> <answer> 🙂 </answer>"], []
    )
    scheme = StageScheme(plan_end="</plan>", review_start="<review>", answer_start="<answer>")
    assert stage_texts(tok, tokens, stage_ids(tok, tokens, action, scheme)) == [
        ["<plan> é🙂中 </plan>"],
        ["é"],
        [" <review> ü </review>"],
        [" <answer> 🙂 </answer><|end|>"],
    ]


def test_stage_ids_in_a_rollout(tok):
    family = KeyHuntFamily()
    session = ScriptedSession(tok, [MINI_ACTIONS[:1], MINI_ACTIONS], max_len=1024)
    traj = rollout(
        session,
        family,
        [family.generate("train", 0)],
        tok,
        group_size=2,
        max_tokens=1024,
        max_turns=[1, 4],
        stage_scheme=MINI_RESEARCH_STAGES,
    )
    assert traj.stage_ids.dtype == np.int32
    assert (traj.stage_ids[~traj.action_mask] == -1).all()
    np.testing.assert_array_equal((traj.stage_ids >= 0).sum(1), traj.action_mask.sum(1))
    first = stage_texts(tok, traj.tokens[0], traj.stage_ids[0])
    assert first[0] == [MINI_ACTIONS[0].split(" <call>")[0]] and first[2:] == [[], []]
    assert masked_spans(tok, traj.tokens[1], traj.stage_ids[1] == 3) == [
        "<answer> [FACT E01 founded V3 CITE 123] </answer><|end|>"
    ]


def test_shape_mismatch_raises(tok):
    with pytest.raises(ValueError, match="share a shape"):
        stage_ids(tok, np.zeros(3, np.int32), np.zeros(4, bool), MINI_RESEARCH_STAGES)
    with pytest.raises(ValueError, match=r"\(2, 2, 2\)"):
        stage_ids(
            tok, np.zeros((2, 2, 2), np.int32), np.zeros((2, 2, 2), bool), MINI_RESEARCH_STAGES
        )
