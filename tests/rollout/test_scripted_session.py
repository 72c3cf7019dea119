"""Tests for `ScriptedSession`, the replaying decode session."""

import pytest

from rljax.data import load_tokenizer
from rljax.rollout import DecodeSessionProtocol, ScriptedSession
from rljax.sampling import Generation

END = 7  # <|end|>


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def ids(tok, text):
    return tok.encode(text, add_special_tokens=False)


def test_implements_the_protocol(tok):
    assert isinstance(ScriptedSession(tok, [["a"]], max_len=8), DecodeSessionProtocol)


def test_replays_actions_with_the_end_token(tok):
    session = ScriptedSession(tok, [["hello", "bye"], ["x"]], max_len=64)
    session.prefill([[1, 4], [1]])
    assert session.lengths == [2, 1]
    out = session.generate(max_new_tokens=[50, 50], stop_tokens=[{END}, {END}], active=[True, True])
    assert out[0] == Generation(
        ids(tok, "hello") + [END], [0.0] * (len(ids(tok, "hello")) + 1), True
    )
    assert out[1].tokens == ids(tok, "x") + [END] and out[1].stopped
    session.append([[6, 7, 5], []])
    out = session.generate(max_new_tokens=[50, 0], stop_tokens=[{END}, {END}], active=[True, False])
    assert out[0].tokens == ids(tok, "bye") + [END]
    assert out[1] == Generation([], [], False)
    assert session.contexts[0] == [1, 4] + ids(tok, "hello") + [END, 6, 7, 5] + ids(tok, "bye") + [
        END
    ]
    assert session.contexts[1] == [1] + ids(tok, "x") + [END]


def test_cuts_at_max_new_tokens_and_at_other_stop_tokens(tok):
    text = "abc <cmd> ls </cmd>"
    full = ids(tok, text) + [END]
    session = ScriptedSession(tok, [[text], [text], [text]], max_len=64)
    session.prefill([[1], [1], [1]])
    stop_early = {full[1]}
    out = session.generate(
        max_new_tokens=[2, len(full), len(full) - 1],
        stop_tokens=[{END}, stop_early, {END}],
        active=[True, True, True],
    )
    assert out[0] == Generation(full[:2], [0.0, 0.0], False)
    assert out[1] == Generation(full[:2], [0.0, 0.0], True)
    assert out[2] == Generation(full[:-1], [0.0] * (len(full) - 1), False)


def test_errors(tok):
    session = ScriptedSession(tok, [["a"]], max_len=4)
    with pytest.raises(ValueError, match="one per scripted row"):
        session.prefill([[1], [1]])
    with pytest.raises(ValueError, match="over max_len=4"):
        session.prefill([[1, 2, 3, 4, 5]])
    session.prefill([[1]])
    session.generate(max_new_tokens=[3], stop_tokens=[{END}], active=[True])
    with pytest.raises(ValueError, match="no scripted action left"):
        session.generate(max_new_tokens=[3], stop_tokens=[{END}], active=[True])
    with pytest.raises(ValueError, match="batch size 1"):
        session.generate(max_new_tokens=[3, 3], stop_tokens=[{END}], active=[True])
    with pytest.raises(ValueError, match="max_len must be"):
        ScriptedSession(tok, [["a"]], max_len=0)
