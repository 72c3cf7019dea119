"""Observation text (echo.md section 8.1): harness and compact formats, truncation."""

import pytest

from rljax.envs.terminal.backend import CommandResult
from rljax.envs.terminal.render import command_output, render_observation, truncate_output


def test_harness_success():
    text = render_observation("grep k01 f00", CommandResult("k01=ab12\n", "", 0))
    assert text == "Command 'grep k01 f00' executed successfully. Output: k01=ab12\n\n(exit_code=0)"


def test_harness_failure_joins_stdout_and_stderr():
    text = render_observation("wc -l d", CommandResult("0 d\n", "wc: d: Is a directory\n", 1))
    assert text == "Command 'wc -l d' failed. Output: 0 d\nwc: d: Is a directory\n\n(exit_code=1)"


def test_harness_failure_with_stderr_only_and_empty_output():
    text = render_observation(
        "cat nope", CommandResult("", "cat: nope: No such file or directory\n", 1)
    )
    assert (
        text
        == "Command 'cat nope' failed. Output: cat: nope: No such file or directory\n\n(exit_code=1)"
    )
    assert render_observation("grep k9 f00", CommandResult("", "", 1)) == (
        "Command 'grep k9 f00' failed. Output: \n\n(exit_code=1)"
    )
    assert render_observation("cd /", CommandResult("", "", 0)) == (
        "Command 'cd /' executed successfully. Output: \n\n(exit_code=0)"
    )


def test_compact():
    text = render_observation("cat f00", CommandResult("a=1\nb=2\n", "", 0), render="compact")
    assert text == "$ cat f00\na=1\nb=2\n(exit=0)"
    assert render_observation(
        "foo", CommandResult("", "bash: foo: command not found\n", 127), render="compact"
    ) == ("$ foo\nbash: foo: command not found\n(exit=127)")
    assert (
        render_observation("cd /", CommandResult("", "", 0), render="compact") == "$ cd /\n(exit=0)"
    )


def test_truncation_keeps_the_start_and_appends_the_note():
    assert (
        truncate_output("abcdefghij", 4)
        == "abcd\n[Output truncated: showing first 4 of 10 characters]"
    )
    assert truncate_output("abcd", 4) == "abcd"
    assert truncate_output("abcd" * 100, None) == "abcd" * 100
    text = render_observation("cat big", CommandResult("x" * 30 + "\n", "", 0), max_output_chars=8)
    assert text == (
        "Command 'cat big' executed successfully. Output: xxxxxxxx\n"
        "[Output truncated: showing first 8 of 30 characters]\n\n(exit_code=0)"
    )


def test_command_output_strips_only_trailing_newlines():
    assert command_output(CommandResult("  a\n\n", "b\n", 2)) == "  a\nb"
    assert command_output(CommandResult("", "", 0)) == ""


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"render": "json"}, "render must be one of"),
        ({"max_output_chars": 0}, "max_output_chars must be"),
    ],
)
def test_bad_options(kwargs, match):
    with pytest.raises(ValueError, match=match):
        render_observation("ls", CommandResult("", "", 0), **kwargs)
