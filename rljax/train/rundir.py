"""The run directory: one writer at a time, config written after the checks, logs made resumable.

`RunLock` is an exclusive `fcntl.flock` on `<run dir>/run.lock`; the kernel releases it when the
holding process dies (SIGKILL included), so a stale lock never needs cleaning. A second process
that tries to take it is refused at once with the holder's pid, host and command. The lock is
advisory and per host: processes on two machines sharing a network file system exclude each other
only where that file system supports `flock` (NFSv4 on Linux does).
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import socket
import sys
import time
from typing import Sequence

import jax
from etils import epath

from rljax.train.metrics import repair_jsonl

log = logging.getLogger(__name__)

LOCK_FILE = "run.lock"
CONFIG_FILE = "config.json"
LOG_FILES = ("metrics.jsonl", "eval.jsonl")


class RunDirectoryLockedError(RuntimeError):
    """Another live process holds the run directory."""


class RunLock:
    """An exclusive lock on a directory, held from `acquire` (or `with`) until `release` or exit.

    Only process 0 of a multi-controller job takes it (the others share its run directory).

    Args:
        directory: the run (or cache) directory; created if missing.
        wait: block until the holder releases the lock instead of refusing (a shared cache, whose
            readers only wait for a writer to finish).
    """

    def __init__(self, directory: str | os.PathLike, *, wait: bool = False):
        self.directory = epath.Path(directory)
        self.wait = wait
        self.path = self.directory / LOCK_FILE
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Takes the lock or raises RunDirectoryLockedError naming the holder."""
        if jax.process_index() != 0:
            return self
        self.directory.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 4096).decode(errors="replace").strip() or "a process starting up"
            if self.wait:
                log.info("%s is in use by %s: waiting for it", self.directory, holder)
                fcntl.flock(fd, fcntl.LOCK_EX)
                return self._hold(fd)
            os.close(fd)
            raise RunDirectoryLockedError(
                f"{self.directory} is in use by {holder}; only one process may write a run "
                "directory. Wait for it to finish, stop it, or choose another directory (the lock "
                "is released as soon as the holder exits, even if it is killed)."
            ) from None
        return self._hold(fd)

    def _hold(self, fd: int) -> "RunLock":
        holder = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "since": time.strftime("%Y-%m-%d %H:%M:%S"),
            "command": " ".join(sys.argv),
        }
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        """Releases the lock (the file stays: deleting a lock file races with the next taker)."""
        if self._fd is not None:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def check_steps(steps: int, checkpoint_steps: Sequence[int]) -> None:
    """Refuses `train.steps` below the latest checkpoint (the run would relabel or delete states).

    Args:
        steps: the run's `train.steps`.
        checkpoint_steps: the step directories present (`Checkpointer.steps()`).
    """
    if checkpoint_steps and steps < max(checkpoint_steps):
        raise ValueError(
            f"train.steps={steps} is below the latest checkpoint, step {max(checkpoint_steps)}: "
            f"the run has already gone further. Use train.steps >= {max(checkpoint_steps)} to "
            "continue it, or a fresh run directory."
        )


def write_config(run_dir: str | os.PathLike, text: str) -> None:
    """Writes `config.json` atomically; call only after the checkpoint compatibility check."""
    path = epath.Path(run_dir) / CONFIG_FILE
    tmp = path.parent / (CONFIG_FILE + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def prepare_logs(
    run_dir: str | os.PathLike, *, resume_step: int, names: Sequence[str] = LOG_FILES
) -> None:
    """Makes the JSONL logs of `run_dir` safe to append to before a (re)start.

    A torn last line (a kill mid-write) is dropped with a warning. On a start from step 0, an
    existing non-empty log belongs to an earlier attempt: it is renamed to `<name>.<n>`, never
    truncated away.

    Args:
        run_dir: the run directory.
        resume_step: the step the run continues from (0 = from scratch).
        names: the log files to prepare.
    """
    for name in names:
        path = epath.Path(run_dir) / name
        if not path.exists():
            continue
        repair_jsonl(path)
        if resume_step == 0 and path.read_text().strip():
            n = 1
            while (path.parent / f"{name}.{n}").exists():
                n += 1
            os.replace(path, path.parent / f"{name}.{n}")
            log.warning("starting from step 0: the earlier %s was moved to %s.%d", name, name, n)
