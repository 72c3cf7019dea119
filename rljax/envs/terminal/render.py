"""Observation text of one executed command (echo.md section 8.1).

Two renderings of a `CommandResult` for the command CMD, where OUTPUT is stdout and stderr with
their trailing newlines removed, joined by one newline (an empty stream is left out):

    "harness" (the paper's harness):
        exit 0:  Command 'CMD' executed successfully. Output: OUTPUT\\n\\n(exit_code=0)
        exit N:  Command 'CMD' failed. Output: OUTPUT\\n\\n(exit_code=N)
    "compact" (for character-level models, where the wrapper text would dominate the CE):
        $ CMD\\nOUTPUT\\n(exit=N)           (the OUTPUT line is absent when OUTPUT is empty)

OUTPUT longer than `max_output_chars` keeps its first `max_output_chars` characters and gains
`\\n[Output truncated: showing first M of L characters]`. Format warnings are not part of the
text: episodes return them in `Observation.warning`, one per line, and the chat renderer
(`rljax.data.chat.format_warnings`) turns them into the `WARNINGS:\\n- W1\\n- W2\\n\\n` prefix.
"""

from __future__ import annotations

from rljax.envs.terminal.backend import CommandResult

RENDERS = ("harness", "compact")


def command_output(result: CommandResult) -> str:
    """stdout and stderr without trailing newlines, joined by a newline (empty streams skipped).

    Args:
        result: a command's result.

    Returns:
        The OUTPUT text of the module docstring.
    """
    return "\n".join(
        part for part in (result.stdout.rstrip("\n"), result.stderr.rstrip("\n")) if part
    )


def truncate_output(output: str, max_output_chars: int | None) -> str:
    """Keeps the start of `output` and appends the spec's note when it is too long.

    Args:
        output: command output text.
        max_output_chars: the limit M (None: no limit).

    Returns:
        `output` if len(output) <= M, else output[:M] + "\\n[Output truncated: showing first M of
        L characters]" with L = len(output).
    """
    check_max_output_chars(max_output_chars)
    if max_output_chars is None or len(output) <= max_output_chars:
        return output
    note = f"[Output truncated: showing first {max_output_chars} of {len(output)} characters]"
    return f"{output[:max_output_chars]}\n{note}"


def render_observation(
    command: str,
    result: CommandResult,
    *,
    render: str = "harness",
    max_output_chars: int | None = 50_000,
) -> str:
    """Renders the observation text of one executed command (echo.md section 8.1).

    Args:
        command: the command as the policy wrote it (stripped `<cmd>` content).
        result: what the backend returned.
        render: "harness" (default, the paper's format) or "compact".
        max_output_chars: truncation limit on OUTPUT (the paper's harness: 50,000; None: none).

    Returns:
        The observation text; every character of it is environment text (env tokens).
    """
    check_render(render)
    output = truncate_output(command_output(result), max_output_chars)
    if render == "compact":
        return "\n".join(
            [f"$ {command}", *([output] if output else []), f"(exit={result.exit_code})"]
        )
    status = "executed successfully" if result.exit_code == 0 else "failed"
    return f"Command '{command}' {status}. Output: {output}\n\n(exit_code={result.exit_code})"


def check_render(render: str) -> None:
    """Validates a render option.

    Args:
        render: must be one of `RENDERS`, else ValueError.
    """
    if render not in RENDERS:
        raise ValueError(f"render must be one of {RENDERS}, got {render!r}")


def check_max_output_chars(max_output_chars: int | None) -> None:
    """Validates an output limit.

    Args:
        max_output_chars: must be None or a positive int, else ValueError.
    """
    if max_output_chars is not None and (
        not isinstance(max_output_chars, int) or max_output_chars < 1
    ):
        raise ValueError(
            f"max_output_chars must be a positive int or None, got {max_output_chars!r}"
        )
