"""Terminal environments for ECHO (echo.md section 8.1): MiniShell, a real-shell sandbox, task families.

    family = FindValueFamily(seed=0)                    # or registry.make("terminal_find_value", seed=0)
    task = family.generate("train", 0)                  # "Q: value of k42 ?"
    with family.start(task) as episode:
        obs = episode.step("<think> k42 is in f07. </think> <cmd> grep k42 f07 </cmd>")
        ...                                             # obs.text, obs.warning, obs.done
        reward = episode.verdict().reward

Every family runs on the simulated `MiniShell` (default) or, with
`backend=functools.partial(Sandbox, timeout_s=10)`, in a real bash inside a bubblewrap sandbox.
The families of `tasks.FAMILIES` are registered in `rljax.envs.registry` by import path.
"""

from rljax.envs.terminal.actions import (
    NO_COMMANDS,
    NO_TOOL_CALL,
    ParsedAction,
    answer_value,
    cmd_blocks,
    parse_action,
)
from rljax.envs.terminal.backend import CommandResult, TerminalBackend
from rljax.envs.terminal.episode import TerminalEpisode
from rljax.envs.terminal.family import SYSTEM_PROMPT, TerminalFamily
from rljax.envs.terminal.render import command_output, render_observation, truncate_output
from rljax.envs.terminal.sandbox import Sandbox, SandboxUnavailable, sandbox_available
from rljax.envs.terminal.shell import MiniShell
from rljax.envs.terminal.tasks import (
    FAMILIES,
    AppendLineFamily,
    BackupFileFamily,
    CountFilesFamily,
    FindValueFamily,
    SumNumbersFamily,
    WriteValueFamily,
)
from rljax.envs.terminal.world import World, make_world

__all__ = [
    "FAMILIES",
    "NO_COMMANDS",
    "NO_TOOL_CALL",
    "SYSTEM_PROMPT",
    "AppendLineFamily",
    "BackupFileFamily",
    "CommandResult",
    "CountFilesFamily",
    "FindValueFamily",
    "MiniShell",
    "ParsedAction",
    "Sandbox",
    "SandboxUnavailable",
    "SumNumbersFamily",
    "TerminalBackend",
    "TerminalEpisode",
    "TerminalFamily",
    "World",
    "WriteValueFamily",
    "answer_value",
    "cmd_blocks",
    "command_output",
    "make_world",
    "parse_action",
    "render_observation",
    "sandbox_available",
    "truncate_output",
]
