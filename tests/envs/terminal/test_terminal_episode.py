"""TerminalEpisode: turn mechanics, observations, warnings, limits, never crashing on model text."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rljax.data.chat import format_warnings
from rljax.envs.base import Episode, Observation, Verdict
from rljax.envs.terminal.actions import NO_COMMANDS, NO_TOOL_CALL
from rljax.envs.terminal.episode import TerminalEpisode
from rljax.envs.terminal.shell import MiniShell

FILES = {"/data/f00": "k01=ab12\nk02=cd34\n"}


def judge(backend, answer):
    return Verdict(float(answer == "ab12"), {"reason": f"answer={answer!r}"})


def make(max_turns=3, **kwargs):
    return TerminalEpisode(MiniShell(FILES, cwd="/data"), judge, max_turns=max_turns, **kwargs)


def test_is_an_episode():
    assert isinstance(make(), Episode)


def test_command_then_answer():
    episode = make()
    obs = episode.step("<think> k01 is in f00. </think> <cmd> grep k01 f00 </cmd>")
    text = "Command 'grep k01 f00' executed successfully. Output: k01=ab12\n\n(exit_code=0)"
    assert obs == Observation(text, "", False)
    assert episode.step("<think> got it </think> <cmd> answer ab12 </cmd>") == Observation(
        "", "", True
    )
    verdict = episode.verdict()
    assert verdict.reward == 1.0
    assert verdict.info == {
        "reason": "answer='ab12'",
        "turns": 2,
        "tool_call_turns": 2,
        "warning_free_turns": 2,
    }


def test_warnings_go_to_the_warning_field_one_per_line():
    obs = make().step("<cmd> cat f00 </cmd> trailing")
    assert obs.warning == "Missing <think> block\nText detected after final XML tag"
    assert (
        obs.text
        == "Command 'cat f00' executed successfully. Output: k01=ab12\nk02=cd34\n\n(exit_code=0)"
    )
    # The chat renderer turns the field into the spec's prefix.
    assert format_warnings(obs.warning) == (
        "WARNINGS:\n- Missing <think> block\n- Text detected after final XML tag\n\n"
    )


def test_unparsable_and_empty_actions():
    episode = make()
    assert episode.step("I think I should list files") == Observation(
        NO_TOOL_CALL, "Missing <think> block", False
    )
    assert episode.step("<think> x </think> <cmd> </cmd>") == Observation(
        NO_COMMANDS, "Empty <cmd> block", False
    )
    info = episode.verdict().info
    assert (info["tool_call_turns"], info["warning_free_turns"]) == (0, 0)


def test_bare_answer_is_a_usage_error():
    obs = make().step("<think> x </think> <cmd> answer </cmd>")
    assert obs == Observation(
        "Command 'answer' failed. Output: answer: usage error\n\n(exit_code=2)", "", False
    )


def test_turn_limit_ends_the_episode():
    episode = make(max_turns=2)
    assert not episode.step("<think> a </think> <cmd> ls </cmd>").done
    last = episode.step("<think> a </think> <cmd> pwd </cmd>")
    assert last.done and last.text.startswith("Command 'pwd' executed successfully")
    assert episode.verdict().reward == 0.0  # no answer given
    with pytest.raises(RuntimeError, match="episode is over after 2 turns"):
        episode.step("<think> a </think> <cmd> answer ab12 </cmd>")


def test_compact_render_and_truncation():
    episode = make(render="compact", max_output_chars=5)
    obs = episode.step("<think> a </think> <cmd> cat f00 </cmd>")
    assert (
        obs.text
        == "$ cat f00\nk01=a\n[Output truncated: showing first 5 of 17 characters]\n(exit=0)"
    )


def test_unknown_command_observation():
    obs = make().step("<think> a </think> <cmd> gerp k01 f00 </cmd>")
    assert (
        obs.text
        == "Command 'gerp k01 f00' failed. Output: bash: gerp: command not found\n\n(exit_code=127)"
    )


def test_bad_options():
    with pytest.raises(ValueError, match="max_turns must be a positive int"):
        make(max_turns=0)
    with pytest.raises(ValueError, match="render must be one of"):
        make(render="fancy")


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.sampled_from(
            [
                "<cmd>",
                "</cmd>",
                "<think>",
                "</think>",
                " ",
                "\n",
                "cat",
                "ls",
                "mv",
                "rm",
                "cp",
                "answer",
                "f00",
                "../",
                "/",
                "'",
                '"',
                ">",
                ">>",
                "|",
                ";",
                "-n",
                "x",
                "*",
            ]
        ),
        max_size=16,
    ).map("".join)
)
def test_any_action_gives_a_well_formed_observation(action):
    episode = make(max_turns=1)
    obs = episode.step(action)
    assert isinstance(obs.text, str) and isinstance(obs.warning, str) and obs.done
    assert episode.verdict().reward in (0.0, 1.0)
