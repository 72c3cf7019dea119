"""`TerminalEpisode`: one multi-turn terminal session on any backend (an `Episode`).

Each `step` parses one action (`actions.parse_action`), runs its first command on the backend,
and returns the rendered observation (`render.render_observation`) with the format warnings in
`Observation.warning`, one per line. `answer V` ends the episode with an empty observation; so
does the turn limit (the observation of the last allowed turn has `done=True`) and a fatal backend
result (e.g. the sandbox's disk quota). A bare `answer` is a usage error, like any malformed
command. The verdict comes from the task's judge, which sees the backend's final file system and
the answer.
"""

from __future__ import annotations

from typing import Callable

from rljax.envs.base import Observation, Verdict
from rljax.envs.terminal import render as render_lib
from rljax.envs.terminal.actions import answer_value, parse_action
from rljax.envs.terminal.backend import CommandResult, TerminalBackend

# (backend after the episode, answer value or None) -> verdict.
Judge = Callable[[TerminalBackend, "str | None"], Verdict]


class TerminalEpisode:
    """A terminal session that plays one task turn by turn.

    Args:
        backend: a fresh backend holding the task's initial file system; the episode owns it.
        judge: scores the final state and answer.
        max_turns: the turn limit (assistant actions, the final answer included).
        render: observation rendering, "harness" or "compact" (`render.render_observation`).
        max_output_chars: truncation limit on command output (None: no limit).
    """

    def __init__(
        self,
        backend: TerminalBackend,
        judge: Judge,
        *,
        max_turns: int,
        render: str = "harness",
        max_output_chars: int | None = 50_000,
    ):
        if not isinstance(max_turns, int) or max_turns < 1:
            raise ValueError(f"max_turns must be a positive int, got {max_turns!r}")
        render_lib.check_render(render)
        render_lib.check_max_output_chars(max_output_chars)
        self._backend = backend
        self._judge = judge
        self._max_turns = max_turns
        self._render = render
        self._max_output_chars = max_output_chars
        self.turns = 0
        self.done = False
        self.answer: str | None = None
        self._tool_call_turns = 0
        self._warning_free_turns = 0

    def step(self, action: str) -> Observation:
        """Applies one action and returns its observation.

        Args:
            action: the text of one assistant turn.

        Returns:
            The observation: `text` is environment text (command echo, output, exit code, or the
            parser's message), `warning` the format warnings joined by newlines ("" if none),
            `done` whether the episode is over.
        """
        if self.done:
            raise RuntimeError(f"the episode is over after {self.turns} turns; start a new one")
        self.turns += 1
        parsed = parse_action(action)
        warning = "\n".join(parsed.warnings)
        self._tool_call_turns += parsed.command is not None
        self._warning_free_turns += not parsed.warnings
        value = None if parsed.command is None else answer_value(parsed.command)
        if value:
            self.answer, self.done = value, True
            return Observation("", warning, True)
        if parsed.command is None:
            text, fatal = parsed.error, False
        else:
            result = (
                CommandResult("", "answer: usage error\n", 2)
                if value == ""
                else self._backend.run(parsed.command)
            )
            text, fatal = (
                render_lib.render_observation(
                    parsed.command,
                    result,
                    render=self._render,
                    max_output_chars=self._max_output_chars,
                ),
                result.fatal,
            )
        self.done = fatal or self.turns >= self._max_turns
        return Observation(text, warning, self.done)

    def verdict(self) -> Verdict:
        """The judge's verdict on the state so far, with turn statistics in `info`.

        `info` adds "turns", "tool_call_turns" (turns with a parseable command) and
        "warning_free_turns" (turns without format warnings), the inputs of echo.md ECHO-9.
        """
        verdict = self._judge(self._backend, self.answer)
        stats = {
            "turns": self.turns,
            "tool_call_turns": self._tool_call_turns,
            "warning_free_turns": self._warning_free_turns,
        }
        return Verdict(verdict.reward, {**verdict.info, **stats})

    def close(self) -> None:
        """Releases the backend (a sandbox's directory); idempotent."""
        self._backend.close()

    def __enter__(self) -> TerminalEpisode:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()
