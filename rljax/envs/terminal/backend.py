"""What a terminal backend is: a command runner plus read-only inspection of its file system.

Two backends implement `TerminalBackend`: `shell.MiniShell` (a simulated shell over an in-memory
tree, echo.md section 8.1) and `sandbox.Sandbox` (a real bash in an isolated directory). Episodes
and verifiers only use this interface, so every terminal task runs on either backend.
"""

from __future__ import annotations

import dataclasses
import posixpath
from typing import Callable, Mapping, Protocol, Sequence, runtime_checkable


@dataclasses.dataclass(frozen=True)
class CommandResult:
    """The outcome of one command.

    Attributes:
        stdout: standard output text (may end with a newline).
        stderr: standard error text (may end with a newline).
        exit_code: the shell exit status (0 = success; 128 + N for a process killed by signal N).
        fatal: the backend cannot continue (e.g. the sandbox exceeded its disk quota); the episode
            ends after this observation.
    """

    stdout: str
    stderr: str
    exit_code: int
    fatal: bool = False


@runtime_checkable
class TerminalBackend(Protocol):
    """A shell session over a file system that a verifier can inspect afterwards."""

    def run(self, command: str) -> CommandResult:
        """Runs one command line in the session's current directory."""

    def read_file(self, path: str) -> str | None:
        """Contents of the regular file at absolute `path`, or None if there is none."""

    def list_dir(self, path: str) -> list[str] | None:
        """Sorted entry names of the directory at absolute `path`, or None if there is none."""

    def close(self) -> None:
        """Releases the backend's resources (idempotent)."""


# (files, dirs, cwd) -> backend: how a task family builds a fresh backend for each episode.
BackendFactory = Callable[[Mapping[str, str], Sequence[str], str], TerminalBackend]


def check_absolute(name: str, path: str) -> str:
    """Returns `path` normalised (no `.`, `..` or doubled slashes); raises unless it is absolute.

    Args:
        name: the argument name, for the error message.
        path: a POSIX path.

    Returns:
        The normalised absolute path.
    """
    if not isinstance(path, str) or not path.startswith("/"):
        raise ValueError(f"{name} must be an absolute path starting with '/', got {path!r}")
    return "/" + posixpath.normpath(path).lstrip("/")
