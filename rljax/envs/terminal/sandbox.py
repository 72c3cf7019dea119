"""`Sandbox`: a real bash session in an isolated directory (a `TerminalBackend`), via bubblewrap.

Each command runs as `bash -c` inside a fresh bubblewrap (`bwrap`) container whose only writable
path is the sandbox's own directory, mounted at `workdir` (default /data); the working directory
carries over between commands (reported on a private pipe), shell variables do not. The directory
is created under `tempfile.gettempdir()`, which `run_as` must be able to traverse when the host
process is root. Commands run through `eval` in a small wrapper script, so bash's own messages
read "bash: line 4: ..." where an interactive shell would print "bash: ...".

Contained (each is tested in tests/envs/terminal/test_terminal_sandbox.py):
- file system: the container sees only the sandbox directory (read-write), a private /tmp
  (tmpfs of `disk_bytes`), a minimal /dev, its own /proc, and read-only system programs (/usr,
  the /bin and /lib links, /etc/alternatives, /etc/ld.so.cache). Host files such as /etc/passwd,
  /home, /root or /work do not exist inside, so `..`, absolute paths and symlinks cannot reach
  them; `read_file`/`list_dir` never follow symlinks and refuse paths outside `workdir`.
- network: a new network namespace with only a down loopback ("Network is unreachable").
- processes: new PID, IPC, UTS and user namespaces, no nested user namespaces, a new session
  (no terminal injection); every process dies with the command (PID-namespace teardown).
- privileges: when the host process is root, commands run as uid/gid `run_as` (65534, nobody).
- resources, as rlimits set by the wrapper before the command (hard limits, so the command cannot
  raise them): CPU seconds per process, address space per process (`memory_bytes`), file size
  (`file_bytes`), and processes (`max_processes`; on Linux >= 5.14 this counts the sandbox's own
  user namespace, on older kernels every process of the uid).
- wall clock: after `timeout_s` the whole process group is killed (exit 124 and a note).
- output: reading stops at `max_output_bytes`; the command is killed (exit 137 and a note).
- disk: after each command the directory is measured; beyond `disk_bytes` or `max_entries` the
  result is fatal (the episode ends with a note).

Not contained: the kernel's system-call surface (no seccomp filter), reads of the read-only
system directories, disk writes made within one command before the post-command check (bounded
by `file_bytes` per file), memory summed over processes (`memory_bytes` x `max_processes`), and
CPU shared with the host (no cgroup). Requires Linux with bubblewrap (`apt-get install
bubblewrap`) and user namespaces; `sandbox_available()` probes both.
"""

from __future__ import annotations

import functools
import math
import os
import posixpath
import selectors
import shlex
import shutil
import signal
import stat
import subprocess
import tempfile
import time
import weakref
from typing import Mapping, Sequence

from rljax.envs.terminal.backend import CommandResult, check_absolute

DEFAULT_READ_ONLY = ("/usr", "/etc/alternatives", "/etc/ld.so.cache")
_TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
_WRAPPER = """ulimit -t {cpu} -v {memory_kib} -f {file_kib} -u {processes} || exit 125
__cwd_fd=$3
cd -- "$1" 2>/dev/null || cd -- {workdir}
eval "$2" {{__cwd_fd}}>&-
__status=$?
pwd >&"$__cwd_fd"
exit $__status
"""


class SandboxUnavailable(RuntimeError):
    """bubblewrap is missing or cannot create its namespaces on this machine."""


class Sandbox:
    """A bash session confined to a temporary directory (see the module docstring).

    Args:
        files: absolute path (under `workdir`) -> text of every initial file.
        dirs: absolute paths (under `workdir`) of extra initial directories.
        cwd: the initial working directory (under `workdir`).
        workdir: where the sandbox directory appears inside the container.
        timeout_s: wall-clock limit per command (the paper's harness: 30 s).
        memory_bytes: address-space limit per process.
        file_bytes: size limit per written file.
        disk_bytes: limit on the directory's total size, and the size of the private /tmp.
        max_entries: limit on the number of files and directories in the sandbox directory.
        max_processes: limit on simultaneous processes.
        max_output_bytes: stdout + stderr bytes read per command before the command is killed.
        read_only_paths: host paths mounted read-only at the same place (missing ones skipped).
        run_as: uid = gid the commands run as when the host process is root.
    """

    def __init__(
        self,
        files: Mapping[str, str] | None = None,
        dirs: Sequence[str] = (),
        cwd: str = "/data",
        *,
        workdir: str = "/data",
        timeout_s: float = 30.0,
        memory_bytes: int = 1 << 30,
        file_bytes: int = 16 << 20,
        disk_bytes: int = 64 << 20,
        max_entries: int = 10_000,
        max_processes: int = 64,
        max_output_bytes: int = 1 << 20,
        read_only_paths: Sequence[str] = DEFAULT_READ_ONLY,
        run_as: int = 65534,
    ):
        self._workdir = check_absolute("workdir", workdir)
        mounts = (*read_only_paths, *_TOP_LEVEL_LINKS, "/proc", "/dev", "/tmp")
        if self._workdir == "/" or any(_nested(self._workdir, mount) for mount in mounts):
            raise ValueError(
                f"workdir must not be /, contain or lie inside one of {mounts}, got {workdir!r}"
            )
        if not isinstance(run_as, int) or run_as < 1:
            raise ValueError(f"run_as must be a positive (non-root) uid, got {run_as!r}")
        if not timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, got {timeout_s!r}")
        for name, value in (("memory_bytes", memory_bytes), ("file_bytes", file_bytes), ("disk_bytes", disk_bytes),
                            ("max_entries", max_entries), ("max_processes", max_processes),
                            ("max_output_bytes", max_output_bytes)):  # fmt: skip
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if not sandbox_available():
            raise SandboxUnavailable(
                "Sandbox needs bubblewrap with user namespaces: install it (apt-get install bubblewrap) "
                "and allow unprivileged user namespaces (sysctl kernel.unprivileged_userns_clone=1)"
            )
        self._timeout_s = float(timeout_s)
        self._disk_bytes, self._max_entries, self._max_output_bytes = (
            disk_bytes,
            max_entries,
            max_output_bytes,
        )
        self._uid = run_as if os.geteuid() == 0 else None
        self._dir = tempfile.mkdtemp(prefix="rljax-sandbox-")
        self._finalizer = weakref.finalize(self, _remove_tree, self._dir)
        for path in dirs:
            os.makedirs(self._host_path("dirs entry", path), exist_ok=True)
        for path, text in (files or {}).items():
            if not isinstance(text, str):
                raise ValueError(f"files[{path!r}] must be str, got {type(text).__name__}")
            host = self._host_path("files key", path)
            os.makedirs(os.path.dirname(host), exist_ok=True)
            with open(host, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        if self._uid is not None:
            for root, _, file_names in os.walk(self._dir):
                os.chown(root, self._uid, self._uid)
                for name in file_names:
                    os.chown(os.path.join(root, name), self._uid, self._uid)
        cwd = check_absolute("cwd", cwd)
        if self.list_dir(cwd) is None:
            raise ValueError(
                f"cwd {cwd!r} is not a directory of the sandbox (under workdir {self._workdir!r})"
            )
        self._cwd = cwd
        wrapper = _WRAPPER.format(
            cpu=math.ceil(self._timeout_s), memory_kib=memory_bytes // 1024, file_kib=max(1, file_bytes // 1024),
            processes=max_processes, workdir=shlex.quote(self._workdir),
        )  # fmt: skip
        self._argv = [*_bwrap_argv(read_only_paths, disk_bytes), "--bind", self._dir, self._workdir, "--chdir",
                      self._workdir, "--", "/bin/bash", "--noprofile", "--norc", "-c", wrapper, "bash"]  # fmt: skip

    @property
    def cwd(self) -> str:
        """The current working directory inside the container."""
        return self._cwd

    def run(self, command: str) -> CommandResult:
        """Runs one command line in bash inside the container.

        Args:
            command: any bash command line (may span several lines).

        Returns:
            stdout, stderr and exit status; a killed command (timeout, output limit) has a note
            on stderr and exit 124 / 137; a command bash cannot take (a NUL character, text that
            is not UTF-8) gives exit 2 and a note; `fatal` when the directory exceeds its quota.
        """
        if not isinstance(command, str):
            raise ValueError(f"command must be str, got {type(command).__name__}")
        if not self._finalizer.alive:
            raise RuntimeError("the sandbox is closed")
        if "\0" in command:
            return CommandResult("", "sandbox: the command contains a NUL character\n", 2)
        try:
            command.encode("utf-8")
        except UnicodeEncodeError:
            return CommandResult("", "sandbox: the command is not valid UTF-8\n", 2)
        cwd_read, cwd_write = os.pipe()
        try:
            process = subprocess.Popen(
                [*self._argv, self._cwd, command, str(cwd_write)],
                stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(cwd_write,),
                start_new_session=True, user=self._uid, group=self._uid,
                extra_groups=None if self._uid is None else [],
            )  # fmt: skip
        finally:
            os.close(cwd_write)
        os.set_blocking(cwd_read, False)  # bash has written (or not) before bwrap exits: never wait
        with os.fdopen(cwd_read, "rb") as cwd_pipe:
            stdout, stderr, note, status = self._collect(process)
            new_cwd = (cwd_pipe.read(4096) or b"").decode("utf-8", "replace").strip()
        if note is None and new_cwd.startswith("/") and "\n" not in new_cwd:
            self._cwd = new_cwd
        text_err = stderr.decode("utf-8", "replace")
        if note is not None:
            text_err += ("" if not text_err or text_err.endswith("\n") else "\n") + note + "\n"
        quota = self._quota_note()
        if quota is not None:
            text_err += quota + "\n"
        return CommandResult(
            stdout.decode("utf-8", "replace"), text_err, status, fatal=quota is not None
        )

    def read_file(self, path: str) -> str | None:
        """Text of the regular file at `path`, or None (missing, not regular, outside `workdir`,
        or reached through a symlink: symlinks are never followed)."""
        host = self._resolve(path)
        if host is None or not stat.S_ISREG(os.lstat(host).st_mode):
            return None
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
        with os.fdopen(fd, "rb") as f:
            return f.read().decode("utf-8", "replace")

    def list_dir(self, path: str) -> list[str] | None:
        """Sorted names in the directory at `path`, or None (see `read_file` for the rules)."""
        host = self._resolve(path)
        if host is None or not stat.S_ISDIR(os.lstat(host).st_mode):
            return None
        return sorted(os.listdir(host))

    def close(self) -> None:
        """Deletes the sandbox directory (idempotent; also done when the object is collected)."""
        self._finalizer()

    def _host_path(self, name: str, path: str) -> str:
        relative = posixpath.relpath(check_absolute(name, path), self._workdir)
        if relative == ".." or relative.startswith("../"):
            raise ValueError(f"{name} {path!r} is outside workdir {self._workdir!r}")
        return os.path.normpath(os.path.join(self._dir, relative))

    def _resolve(self, path: str) -> str | None:
        """Host path of `path` if it is inside `workdir` and no component is a symlink."""
        relative = posixpath.relpath(check_absolute("path", path), self._workdir)
        if relative == ".." or relative.startswith("../") or not self._finalizer.alive:
            return None
        host = self._dir
        for part in [] if relative == "." else relative.split("/"):
            host = os.path.join(host, part)
            try:
                mode = os.lstat(host).st_mode
            except OSError:
                return None
            if stat.S_ISLNK(mode):
                return None
        return host

    def _collect(self, process: subprocess.Popen) -> tuple[bytes, bytes, str | None, int]:
        """Reads stdout/stderr until EOF, the deadline or the output limit; returns the status."""
        buffers = {process.stdout: bytearray(), process.stderr: bytearray()}
        total, note = 0, None
        deadline = time.monotonic() + self._timeout_s
        with selectors.DefaultSelector() as selector:
            for stream in buffers:
                selector.register(stream, selectors.EVENT_READ)
            while selector.get_map() and note is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    note = f"sandbox: command timed out after {self._timeout_s:g} s and was killed"
                    break
                for key, _ in selector.select(remaining):
                    data = os.read(key.fd, 65536)
                    if not data:
                        selector.unregister(key.fileobj)
                        continue
                    keep = max(0, self._max_output_bytes - total)
                    buffers[key.fileobj] += data[:keep]
                    total += len(data)
                    if total > self._max_output_bytes:
                        note = f"sandbox: output exceeded {self._max_output_bytes} bytes; the command was killed"
        if note is not None:
            try:
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:  # it exited on its own meanwhile
                pass
        process.wait()
        process.stdout.close()
        process.stderr.close()
        if note is not None:
            status = 124 if "timed out" in note else 137
        else:
            status = process.returncode if process.returncode >= 0 else 128 - process.returncode
        return bytes(buffers[process.stdout]), bytes(buffers[process.stderr]), note, status

    def _quota_note(self) -> str | None:
        size, entries = 0, 0
        for root, dir_names, file_names in os.walk(self._dir):
            entries += len(dir_names) + len(file_names)
            size += sum(os.lstat(os.path.join(root, name)).st_size for name in file_names)
        if size > self._disk_bytes or entries > self._max_entries:
            return (
                f"sandbox: disk quota exceeded ({size} bytes in {entries} entries; limits {self._disk_bytes} "
                f"bytes, {self._max_entries} entries); the session is closed"
            )
        return None


@functools.lru_cache(maxsize=None)
def sandbox_available() -> bool:
    """Whether bubblewrap exists and can create the sandbox's namespaces here (probed once)."""
    if shutil.which("bwrap") is None:
        return False
    user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    try:
        probe = subprocess.run(
            [*_bwrap_argv(DEFAULT_READ_ONLY, 1 << 20), "--", "/bin/sh", "-c", "true"],
            stdin=subprocess.DEVNULL, capture_output=True, timeout=30, **user,
        )  # fmt: skip
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _bwrap_argv(read_only_paths: Sequence[str], tmp_bytes: int) -> list[str]:
    """bwrap options shared by every command: namespaces, environment and read-only mounts."""
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns", "--die-with-parent", "--new-session",
            "--hostname", "sandbox", "--clearenv", "--setenv", "PATH", "/usr/local/bin:/usr/bin:/bin",
            "--setenv", "LC_ALL", "C", "--setenv", "TERM", "dumb", "--setenv", "HOME", "/tmp"]  # fmt: skip
    for path in read_only_paths:
        if os.path.lexists(path):
            argv += ["--ro-bind", path, path]
    for path in _TOP_LEVEL_LINKS:
        if os.path.islink(path):
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    return argv + ["--proc", "/proc", "--dev", "/dev", "--size", str(tmp_bytes), "--tmpfs", "/tmp"]


def _nested(a: str, b: str) -> bool:
    """Whether absolute paths `a` and `b` are equal or one lies inside the other."""
    return a == b or a.startswith(b.rstrip("/") + "/") or b.startswith(a.rstrip("/") + "/")


def _remove_tree(path: str) -> None:
    """Deletes a sandbox directory, first making its subdirectories writable (never via symlinks)."""
    for root, dir_names, _ in os.walk(path):
        for name in dir_names:
            child = os.path.join(root, name)
            if not os.path.islink(child):
                os.chmod(child, 0o700)
    shutil.rmtree(path, ignore_errors=True)
