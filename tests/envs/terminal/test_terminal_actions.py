"""Action parsing and format warnings (echo.md section 8.1)."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rljax.envs.terminal.actions import (
    NO_COMMANDS,
    NO_TOOL_CALL,
    ParsedAction,
    answer_value,
    cmd_blocks,
    parse_action,
)

MISSING = "Missing <think> block"
BEFORE = "Text detected before first XML tag"
AFTER = "Text detected after final XML tag"

CASES = [
    ("<think> look </think> <cmd> ls </cmd>", ParsedAction("ls", (), None)),
    ("<think>a</think>\n<cmd>grep k01 f00</cmd>\n", ParsedAction("grep k01 f00", (), None)),
    ("<cmd> ls </cmd>", ParsedAction("ls", (MISSING,), None)),
    (
        "<think>a</think><think>b</think><cmd>ls</cmd>",
        ParsedAction("ls", ("Found 2 <think> blocks, expected 1",), None),
    ),
    (
        "<think>a</think><cmd>ls</cmd><cmd>pwd</cmd>",
        ParsedAction("ls", ("Found 2 <cmd> blocks, expected 1",), None),
    ),
    ("<think> a <cmd> ls </cmd>", ParsedAction("ls", ("Unclosed <think> tag",), None)),
    ("<think>a</think> <cmd> ls", ParsedAction(None, ("Unclosed <cmd> tag",), NO_TOOL_CALL)),
    ("<think> </think> <cmd>ls</cmd>", ParsedAction("ls", ("Empty <think> block",), None)),
    ("<think>a</think> <cmd>  </cmd>", ParsedAction(None, ("Empty <cmd> block",), NO_COMMANDS)),
    (
        "<think>a</think><cmd> </cmd><cmd>pwd</cmd>",
        ParsedAction("pwd", ("Found 2 <cmd> blocks, expected 1", "Empty <cmd> block"), None),
    ),
    ("hi <think>a</think><cmd>ls</cmd>", ParsedAction("ls", (BEFORE,), None)),
    ("<think>a</think><cmd>ls</cmd> bye", ParsedAction("ls", (AFTER,), None)),
    ("<think>a</think>", ParsedAction(None, (), NO_TOOL_CALL)),
    ("just text", ParsedAction(None, (MISSING,), NO_TOOL_CALL)),
    ("", ParsedAction(None, (MISSING,), NO_TOOL_CALL)),
    ("x </think> <cmd>ls</cmd>", ParsedAction("ls", (MISSING, BEFORE), None)),
    (
        "pre <cmd></cmd> post",
        ParsedAction(None, (MISSING, "Empty <cmd> block", BEFORE, AFTER), NO_COMMANDS),
    ),
    # A block's content is opaque: the tag inside the think block is thought, not a command.
    (
        "<think> I will run <cmd>rm f00</cmd> later </think> <cmd> ls </cmd>",
        ParsedAction("ls", (), None),
    ),
    ("<cmd>answer ab12</cmd>", ParsedAction("answer ab12", (MISSING,), None)),
]


@pytest.mark.parametrize("text,expected", CASES, ids=[c[0] or "<empty>" for c in CASES])
def test_parse_action(text, expected):
    assert parse_action(text) == expected


def test_answer_value():
    assert answer_value("answer ab12") == "ab12"
    assert answer_value("answer   two words ") == "two words"
    assert answer_value("answer") == ""
    assert answer_value("answers x") is None
    assert answer_value("ls") is None


def test_cmd_blocks_skip_commands_inside_thoughts():
    text = (
        "<think> maybe <cmd>rm f00</cmd> </think> <cmd> ls </cmd>\n"
        "<think>b</think><cmd></cmd><cmd>answer x</cmd> <cmd> pwd"
    )
    assert cmd_blocks(text) == [" ls ", "", "answer x"]


def test_non_string_is_rejected():
    with pytest.raises(ValueError, match="text must be str"):
        parse_action(None)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.sampled_from(["<think>", "</think>", "<cmd>", "</cmd>", " ", "ls", "x", "\n", "<", ">"]),
        max_size=12,
    )
)
def test_any_text_parses_to_a_well_formed_action(pieces):
    parsed = parse_action("".join(pieces))
    assert (parsed.command is None) == (parsed.error is not None)
    assert parsed.error in (None, NO_TOOL_CALL, NO_COMMANDS)
    assert parsed.command is None or (parsed.command and parsed.command == parsed.command.strip())
    assert len(set(parsed.warnings)) == len(parsed.warnings)
