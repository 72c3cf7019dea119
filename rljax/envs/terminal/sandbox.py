"""`Sandbox`: a real bash session in an isolated workspace (a `TerminalBackend`), via bubblewrap.

Design. Each episode starts one long-lived *session* process: `unshare` gives it a private user
and mount namespace, in which it mounts the workspace, a tmpfs limited in bytes (`disk_bytes`)
and in files and directories (`max_entries`) by the kernel, then runs a small bash loop (the
supervisor) that starts one fresh bubblewrap (`bwrap`) container per command, with the workspace
bound at `workdir` (default /data). The commands never see the supervisor (another PID namespace)
or the host directory that holds the episode's control files; the verifier reads the workspace
through `/proc/<session pid>/root`, never following symlinks. The working directory carries over
between commands (reported on a private file of the session), shell variables do not. Commands run
through `eval` in a small wrapper script, so bash's own messages read "bash: line 6: ..." where an
interactive shell would print "bash: ...". Commands reach bash through a file, not argv, so their
length is limited only by `max_command_bytes`.

Contained (each is tested in tests/envs/terminal/test_terminal_sandbox.py):
- environment: the session and every bwrap start from a fixed minimal environment (PATH, LC_ALL),
  so no variable of the trainer is visible inside, not even in /proc/1/environ.
- file system: a container sees only the workspace (read-write), a private /tmp (tmpfs of
  `disk_bytes`, new for each command), a minimal /dev, its own /proc, and read-only system
  programs (/usr, the /bin and /lib links, /etc/alternatives, /etc/ld.so.cache). Host files such
  as /etc/passwd, /home, /root or /work do not exist inside; `read_file`/`list_dir` never follow
  symlinks and refuse paths outside `workdir`.
- disk: the workspace is a tmpfs of `disk_bytes` with `max_entries` inodes; a write beyond either
  fails with ENOSPC ("No space left on device") as an ordinary failed command. Nothing is walked.
- network: a new network namespace with only a down loopback ("Network is unreachable").
- processes: new PID, IPC, UTS and user namespaces per command, no nested user namespaces, a new
  session (no terminal injection); every process dies with its command (PID-namespace teardown).
- system calls: a seccomp filter (`seccomp.py`) answers EPERM to ptrace and process_vm_*, mount
  and the new mount API, pivot_root, chroot, unshare, setns, keyctl/add_key/request_key, bpf,
  perf_event_open, module loading, kexec, reboot, swapon/off, acct, open_by_handle_at, io_uring,
  userfaultfd and syslog; other architectures' calls (i386, x32) kill the process.
- privileges: when the host process is root, commands run as uid/gid `run_as` (65534, nobody).
- resources, per process, as hard rlimits set by the wrapper: CPU seconds, address space
  (`memory_bytes`), file size (`file_bytes`), processes (`max_processes`).
- resources, for the whole episode's process tree, with a cgroup (v2, else v1) when the host
  process may create one (root): memory including the workspace's pages (`total_memory_bytes`,
  no swap; the OOM killer picks a command process first), CPU bandwidth (`cpus`), processes
  (`max_processes`). `Sandbox.tree_limits` says which cgroup is in force, or why none is.
- wall clock: after `timeout_s` the command's container is killed (exit 124 and a note).
- output: reading stops at `max_output_bytes`; the command is killed (exit 137 and a note).

Not contained: the remaining system-call surface (a deny-list, not an allow-list), reads of the
read-only system directories, and, without a cgroup (non-root host without a delegated cgroup),
memory summed over processes (`memory_bytes` x `max_processes`) and CPU shared with the host.
Requires Linux with bubblewrap (`apt-get install bubblewrap`), util-linux (`unshare`, `mount`) and
unprivileged user namespaces (on Ubuntu >= 23.10, AppArmor's restriction of them must allow
`unshare`); `sandbox_available()` probes them.
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

from rljax.envs.terminal import seccomp
from rljax.envs.terminal.backend import CommandResult, check_absolute

DEFAULT_READ_ONLY = ("/usr", "/etc/alternatives", "/etc/ld.so.cache")
_TOP_LEVEL_LINKS = ("/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# The only environment the session, bwrap and the supervisor ever see (never the trainer's).
_SESSION_ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C"}
# Inside the container: fd 3 = the session's cwd file, fd 4 = the command file.
_WRAPPER = """ulimit -t {cpu} -v {memory_kib} -f {file_kib} -u {processes} || exit 125
{{ echo 1000 >/proc/self/oom_score_adj; }} 2>/dev/null
IFS= read -r -d '' __command <&4
exec 4<&-
cd -- "$1" 2>/dev/null || cd -- {workdir}
eval "$__command" 3>&-
__status=$?
pwd >&3
exit $__status
"""
# The session's loop (runs as root of its own user namespace, sees the host's file system):
# $1 = control directory, $2 = status fd, $3/$4 = workspace bytes/inodes, then the bwrap argv.
# Each stdin line is a working directory: run the command in $1/cmd there, report on the status fd.
_SUPERVISOR = """dir=$1 passed=$2
exec {status}>&"$passed" {passed}>&-
mount -t tmpfs -o "size=$3,nr_inodes=$4,mode=0755" rljax-workspace "$dir/data" || exit 97
mount -t tmpfs -o size=65536,nr_inodes=8,mode=0700 rljax-session "$dir/run" || exit 97
cp -R "$dir/init/." "$dir/data/" || exit 98
shift 4
exec {err}>&2 2>/dev/null  # the supervisor's own messages (job reports) never reach the output
printf 'ready\\n' >&"$status"
while IFS= read -r cwd; do
    : >"$dir/run/cwd"
    "$@" "$cwd" 3>"$dir/run/cwd" 4<"$dir/cmd" 5<"$dir/seccomp.bpf" </dev/null 2>&"$err" {status}>&- {err}>&- &
    printf 'pid %d\\n' "$!" >&"$status"
    wait "$!"
    printf 'done %d\\n' "$?" >&"$status"
done
"""
_GRACE_S = 10.0  # how long a killed command's container may take to be reported gone


class SandboxUnavailable(RuntimeError):
    """bubblewrap or unshare is missing, or cannot create the namespaces on this machine."""


class Sandbox:
    """A bash session confined to a size-limited workspace (see the module docstring).

    Args:
        files: absolute path (under `workdir`) -> text of every initial file.
        dirs: absolute paths (under `workdir`) of extra initial directories.
        cwd: the initial working directory (under `workdir`).
        workdir: where the workspace appears inside the container.
        timeout_s: wall-clock limit per command (the paper's harness: 30 s).
        memory_bytes: address-space limit per process.
        file_bytes: size limit per written file.
        disk_bytes: size of the workspace tmpfs, and of each command's private /tmp.
        max_entries: limit on the number of files and directories in the workspace.
        max_processes: limit on simultaneous processes (per uid and, with a cgroup, per episode).
        max_output_bytes: stdout + stderr bytes read per command before the command is killed.
        max_command_bytes: longest command accepted (UTF-8 bytes); longer ones fail with a note.
        total_memory_bytes: memory of the episode's whole process tree, workspace and /tmp pages
            included (cgroup); at least 2 x `disk_bytes` + 32 MiB.
        cpus: CPU bandwidth of the episode's process tree, in CPUs (cgroup).
        read_only_paths: host paths mounted read-only at the same place (missing ones skipped).
        run_as: uid = gid the session and commands run as when the host process is root.
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
        max_command_bytes: int = 1 << 20,
        total_memory_bytes: int = 2 << 30,
        cpus: float = 1.0,
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
        if not (isinstance(cpus, (int, float)) and 0.01 <= cpus <= 1024):
            raise ValueError(f"cpus must be a number in [0.01, 1024], got {cpus!r}")
        for name, value in (("memory_bytes", memory_bytes), ("file_bytes", file_bytes), ("disk_bytes", disk_bytes),
                            ("max_entries", max_entries), ("max_processes", max_processes),
                            ("max_output_bytes", max_output_bytes), ("max_command_bytes", max_command_bytes),
                            ("total_memory_bytes", total_memory_bytes)):  # fmt: skip
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"{name} must be a positive int, got {value!r}")
        if total_memory_bytes < 2 * disk_bytes + (32 << 20):
            raise ValueError(
                f"total_memory_bytes ({total_memory_bytes}) must be at least 2 x disk_bytes + 32 MiB "
                f"({2 * disk_bytes + (32 << 20)}): the workspace and /tmp pages count against it"
            )
        if not sandbox_available():
            raise SandboxUnavailable(
                "Sandbox needs bubblewrap, util-linux and user namespaces: install them (apt-get install "
                "bubblewrap util-linux) and allow unprivileged user namespaces "
                "(sysctl kernel.unprivileged_userns_clone=1)"
            )
        self._timeout_s = float(timeout_s)
        self._max_output_bytes, self._max_command_bytes = max_output_bytes, max_command_bytes
        self._uid = run_as if os.geteuid() == 0 else None
        self._state = _Session(tempfile.mkdtemp(prefix="rljax-sandbox-"))
        self._finalizer = weakref.finalize(self, self._state.release)
        try:
            self._start(files or {}, dirs, cwd, memory_bytes, file_bytes, disk_bytes, max_entries,
                        max_processes, total_memory_bytes, cpus, read_only_paths)  # fmt: skip
        except BaseException:
            self._finalizer()
            raise

    def _start(self, files, dirs, cwd, memory_bytes, file_bytes, disk_bytes, max_entries,
               max_processes, total_memory_bytes, cpus, read_only_paths) -> None:  # fmt: skip
        state = self._state
        for name in ("data", "run", "init"):
            os.mkdir(os.path.join(state.dir, name))
        staging = os.path.join(state.dir, "init")
        for path in dirs:
            os.makedirs(self._host_path("dirs entry", path, staging), exist_ok=True)
        for path, text in files.items():
            if not isinstance(text, str):
                raise ValueError(f"files[{path!r}] must be str, got {type(text).__name__}")
            host = self._host_path("files key", path, staging)
            os.makedirs(os.path.dirname(host), exist_ok=True)
            with open(host, "w", encoding="utf-8", newline="") as f:
                f.write(text)
        arch = seccomp.machine_arch()
        with open(os.path.join(state.dir, "seccomp.bpf"), "wb") as f:
            f.write(seccomp.deny_list_program(arch) if arch else b"")
        with open(os.path.join(state.dir, "cmd"), "wb"):
            pass
        if self._uid is not None:  # the session runs as `run_as`: it must read all of this
            for root, dir_names, file_names in os.walk(state.dir):
                for name in ["", *dir_names, *file_names]:
                    os.chown(os.path.join(root, name), self._uid, self._uid, follow_symlinks=False)
        wrapper = _WRAPPER.format(
            cpu=math.ceil(self._timeout_s), memory_kib=memory_bytes // 1024, file_kib=max(1, file_bytes // 1024),
            processes=max_processes, workdir=shlex.quote(self._workdir),
        )  # fmt: skip
        ids = ("--uid", str(self._uid), "--gid", str(self._uid)) if self._uid is not None else (
            "--uid", str(os.getuid()), "--gid", str(os.getgid()))  # fmt: skip
        inner = [*_bwrap_argv(read_only_paths, disk_bytes), *ids, *(["--seccomp", "5"] if arch else []),
                 "--bind", os.path.join(state.dir, "data"), self._workdir, "--chdir", self._workdir,
                 "--", "/bin/bash", "--noprofile", "--norc", "-c", wrapper, "bash"]  # fmt: skip
        self.tree_limits = state.limits.create(total_memory_bytes, cpus, max_processes)
        status_read, status_write = os.pipe()
        try:
            state.process = subprocess.Popen(
                [*_SESSION_ARGV, _SUPERVISOR, "rljax-sandbox", state.dir, str(status_write), str(disk_bytes),
                 str(max_entries + 1), *inner],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, pass_fds=(status_write,),
                start_new_session=True, env=_SESSION_ENV, user=self._uid, group=self._uid,
                extra_groups=None if self._uid is None else [],
            )  # fmt: skip
        finally:
            os.close(status_write)
        state.status = status_read
        state.limits.attach(state.process.pid)
        state.root = f"/proc/{state.process.pid}/root{state.dir}/data"
        self._status_buffer = bytearray()
        if self._read_status(time.monotonic() + 30) != "ready":
            code = state.process.wait()
            err = _read_available(state.process.stderr.fileno()).decode("utf-8", "replace").strip()
            if code == 98:
                raise ValueError(
                    f"the initial files do not fit the workspace (disk_bytes, max_entries): {err}"
                )
            raise SandboxUnavailable(f"the sandbox session did not start (exit {code}): {err}")
        _remove_tree(staging)
        cwd = check_absolute("cwd", cwd)
        if self.list_dir(cwd) is None:
            raise ValueError(
                f"cwd {cwd!r} is not a directory of the sandbox (under workdir {self._workdir!r})"
            )
        self._cwd = cwd

    @property
    def host_dir(self) -> str:
        """The host directory of this session's control files (removed by `close`)."""
        return self._state.dir

    @property
    def cwd(self) -> str:
        """The current working directory inside the container."""
        return self._cwd

    def run(self, command: str) -> CommandResult:
        """Runs one command line in bash inside a fresh container.

        Args:
            command: any bash command line (may span several lines).

        Returns:
            stdout, stderr and exit status; a killed command (timeout, output limit) has a note
            on stderr and exit 124 / 137; a command that cannot run (a NUL character, text that
            is not UTF-8, longer than `max_command_bytes`) gives exit 2 and a note; `fatal` when
            the session itself has ended (it was killed from outside), with a note.
        """
        if not isinstance(command, str):
            raise ValueError(f"command must be str, got {type(command).__name__}")
        if not self._finalizer.alive:
            raise RuntimeError("the sandbox is closed")
        if "\0" in command:
            return CommandResult("", "sandbox: the command contains a NUL character\n", 2)
        try:
            data = command.encode("utf-8")
        except UnicodeEncodeError:
            return CommandResult("", "sandbox: the command is not valid UTF-8\n", 2)
        if len(data) > self._max_command_bytes:
            return CommandResult(
                "", f"sandbox: the command is {len(data)} bytes long; the limit is "
                f"{self._max_command_bytes} bytes\n", 2,
            )  # fmt: skip
        state = self._state
        if state.process.poll() is not None:
            return self._ended()
        try:
            for stream in (state.process.stdout, state.process.stderr):
                _read_available(stream.fileno())  # leftovers of a killed command
            with open(os.path.join(state.dir, "cmd"), "wb") as f:
                f.write(data)
            state.process.stdin.write(self._cwd.encode("utf-8") + b"\n")
            state.process.stdin.flush()
        except BrokenPipeError:  # the session died between the check and the write
            return self._ended()
        except OSError as e:
            return CommandResult("", f"sandbox: the command could not be started: {e}\n", 2)
        outcome = self._collect()
        if outcome is None:
            return self._ended()
        stdout, stderr, note, status = outcome
        if note is None:
            new_cwd = self._read_cwd()
            if new_cwd.startswith("/") and "\n" not in new_cwd:
                self._cwd = new_cwd
        text_err = stderr.decode("utf-8", "replace")
        if note is not None:
            text_err += ("" if not text_err or text_err.endswith("\n") else "\n") + note + "\n"
        return CommandResult(stdout.decode("utf-8", "replace"), text_err, status)

    def read_file(self, path: str) -> str | None:
        """Text of the regular file at `path`, or None (missing, not regular, outside `workdir`,
        or reached through a symlink: symlinks are never followed)."""
        host = self._resolve(path)
        if host is None:
            return None
        try:
            if not stat.S_ISREG(os.lstat(host).st_mode):
                return None
            fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW)
            with os.fdopen(fd, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return None

    def list_dir(self, path: str) -> list[str] | None:
        """Sorted names in the directory at `path`, or None (see `read_file` for the rules)."""
        host = self._resolve(path)
        if host is None:
            return None
        try:
            if not stat.S_ISDIR(os.lstat(host).st_mode):
                return None
            return sorted(os.listdir(host))
        except OSError:
            return None

    def close(self) -> None:
        """Ends the session and deletes its host directory and cgroup (idempotent, never raises;
        also done when the object is collected)."""
        self._finalizer()

    def _ended(self) -> CommandResult:
        return CommandResult("", "sandbox: the session has ended unexpectedly; no more commands\n",
                             137, fatal=True)  # fmt: skip

    def _host_path(self, name: str, path: str, base: str) -> str:
        relative = posixpath.relpath(check_absolute(name, path), self._workdir)
        if relative == ".." or relative.startswith("../"):
            raise ValueError(f"{name} {path!r} is outside workdir {self._workdir!r}")
        return os.path.normpath(os.path.join(base, relative))

    def _resolve(self, path: str) -> str | None:
        """Host path of `path` if it is inside `workdir` and no component is a symlink."""
        relative = posixpath.relpath(check_absolute("path", path), self._workdir)
        state = self._state
        if relative == ".." or relative.startswith("../") or not self._finalizer.alive:
            return None
        if state.process is None or state.process.poll() is not None:
            return None
        host = state.root
        for part in [] if relative == "." else relative.split("/"):
            host = os.path.join(host, part)
            try:
                mode = os.lstat(host).st_mode
            except OSError:
                return None
            if stat.S_ISLNK(mode):
                return None
        return host

    def _read_cwd(self) -> str:
        path = f"/proc/{self._state.process.pid}/root{self._state.dir}/run/cwd"
        try:
            with open(path, "rb") as f:
                return f.read(4096).decode("utf-8", "replace").strip()
        except OSError:
            return ""

    def _read_status(self, deadline: float) -> str | None:
        """The next line on the status pipe, or None at EOF or the deadline."""
        fd = self._state.status
        while b"\n" not in self._status_buffer:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return None
            with selectors.DefaultSelector() as selector:
                selector.register(fd, selectors.EVENT_READ)
                if not selector.select(remaining):
                    continue
            data = os.read(fd, 4096)
            if not data:
                return None
            self._status_buffer += data
        line, _, rest = bytes(self._status_buffer).partition(b"\n")
        self._status_buffer = bytearray(rest)
        return line.decode("ascii", "replace")

    def _collect(self) -> tuple[bytes, bytes, str | None, int] | None:
        """Reads stdout/stderr until the command is reported done, the deadline or the output
        limit; None when the session has ended."""
        process, status_fd = self._state.process, self._state.status
        buffers = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
        total, note, pid, done = 0, None, None, None
        deadline = time.monotonic() + self._timeout_s
        with selectors.DefaultSelector() as selector:
            for fd in (*buffers, status_fd):
                selector.register(fd, selectors.EVENT_READ)
            while done is None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    if (
                        note is not None or pid is None
                    ):  # the kill did not end it: the session is stuck
                        self.close()
                        return None
                    note = f"sandbox: command timed out after {self._timeout_s:g} s and was killed"
                    _kill(pid)
                    deadline = time.monotonic() + _GRACE_S
                    continue
                for key, _ in selector.select(remaining):
                    data = os.read(key.fd, 65536)
                    if key.fd == status_fd:
                        if not data:
                            return None
                        self._status_buffer += data
                        while b"\n" in self._status_buffer:
                            line, _, rest = bytes(self._status_buffer).partition(b"\n")
                            self._status_buffer = bytearray(rest)
                            kind, _, value = line.decode("ascii", "replace").partition(" ")
                            if kind == "pid":
                                pid = _pidfd(int(value))
                            elif kind == "done":
                                done = int(value)
                        continue
                    if not data:
                        return None
                    keep = max(0, self._max_output_bytes - total)
                    buffers[key.fd] += data[:keep]
                    total += len(data)
                    if total > self._max_output_bytes and note is None:
                        note = f"sandbox: output exceeded {self._max_output_bytes} bytes; the command was killed"
                        if pid is not None:
                            _kill(pid)
                        deadline = time.monotonic() + _GRACE_S
        _close_pidfd(pid)
        for fd in buffers:  # everything the command wrote is in the pipes by now
            rest = _read_available(fd)
            keep = max(0, self._max_output_bytes - total)
            buffers[fd] += rest[:keep]
            total += len(rest)
        if note is not None:
            status = 124 if "timed out" in note else 137
        else:
            status = done
        return (
            bytes(buffers[process.stdout.fileno()]),
            bytes(buffers[process.stderr.fileno()]),
            note,
            status,
        )


class _Session:
    """What an episode holds on the host (released by `Sandbox.close` or the garbage collector)."""

    def __init__(self, directory: str):
        self.dir = directory
        self.process: subprocess.Popen | None = None
        self.status: int | None = None
        self.root = ""
        self.limits = _TreeLimits(os.path.basename(directory))

    def release(self) -> None:
        """Kills the session, then removes the cgroup and the host directory; never raises."""
        try:
            if self.process is not None:
                try:
                    os.killpg(self.process.pid, signal.SIGKILL)
                except OSError:
                    pass
                try:
                    self.process.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    pass
                for stream in (self.process.stdin, self.process.stdout, self.process.stderr):
                    try:
                        stream.close()
                    except OSError:
                        pass
            if self.status is not None:
                os.close(self.status)
                self.status = None
        except Exception:  # noqa: BLE001 - close must never raise
            pass
        self.limits.release()
        _remove_tree(self.dir)


class _TreeLimits:
    """A cgroup (v2, else v1) bounding the memory, CPU and processes of one episode's tree."""

    def __init__(self, name: str):
        self.name = name
        self.paths: list[str] = []

    def create(self, memory_bytes: int, cpus: float, processes: int) -> str:
        """Creates the cgroup; returns a description of what is enforced (or why nothing is)."""
        period = 100_000
        quota = max(1000, int(cpus * period))
        v2_root = _cgroup2_root()
        reasons = []
        if v2_root is not None:
            settings = {"memory.max": memory_bytes, "memory.swap.max": 0, "cpu.max": f"{quota} {period}",
                        "pids.max": processes}  # fmt: skip
            try:
                with open(os.path.join(v2_root, "cgroup.subtree_control"), "w") as f:
                    f.write("+memory +cpu +pids")
            except OSError:
                pass  # already enabled, or not allowed: the writes below tell
            if self._make([(v2_root, settings)], optional={"memory.swap.max"}, reasons=reasons):
                return f"cgroup v2 {self.paths[0]}: memory {memory_bytes} B, cpu {cpus:g}, pids {processes}"
        v1 = _cgroup1_roots()
        if {"memory", "cpu", "pids"} <= v1.keys():
            groups = [
                (v1["memory"], {"memory.limit_in_bytes": memory_bytes, "memory.memsw.limit_in_bytes": memory_bytes}),
                (v1["cpu"], {"cpu.cfs_period_us": period, "cpu.cfs_quota_us": quota}),
                (v1["pids"], {"pids.max": processes}),
            ]  # fmt: skip
            if self._make(groups, optional={"memory.memsw.limit_in_bytes"}, reasons=reasons):
                return f"cgroup v1 {', '.join(self.paths)}: memory {memory_bytes} B, cpu {cpus:g}, pids {processes}"
        else:
            reasons.append("no cgroup v1 memory, cpu and pids hierarchies")
        return "none: " + "; ".join(
            reasons or ["no cgroup v2 with memory, cpu and pids controllers"]
        )

    def _make(self, groups, optional, reasons) -> bool:
        try:
            for root, settings in groups:
                path = os.path.join(root, self.name)
                os.mkdir(path)
                self.paths.append(path)
                for key, value in settings.items():
                    try:
                        with open(os.path.join(path, key), "w") as f:
                            f.write(str(value))
                    except OSError:
                        if key not in optional:
                            raise
            return True
        except OSError as e:
            reasons.append(f"cannot create a cgroup ({e})")
            self.release()
            return False

    def attach(self, pid: int) -> None:
        for path in self.paths:
            with open(os.path.join(path, "cgroup.procs"), "w") as f:
                f.write(str(pid))

    def release(self) -> None:
        for path in self.paths:
            for _ in range(50):
                try:
                    os.rmdir(path)
                    break
                except FileNotFoundError:
                    break
                except OSError:  # EBUSY while the killed processes exit
                    time.sleep(0.02)
        self.paths = []


def _cgroup2_root() -> str | None:
    """The mounted cgroup v2 hierarchy if it offers memory, cpu and pids, else None."""
    for root in ("/sys/fs/cgroup", "/sys/fs/cgroup/unified"):
        try:
            with open(os.path.join(root, "cgroup.controllers")) as f:
                if {"memory", "cpu", "pids"} <= set(f.read().split()):
                    return root
        except OSError:
            continue
    return None


def _cgroup1_roots() -> dict[str, str]:
    """Controller -> mount point of the cgroup v1 hierarchies (from /proc/self/mounts)."""
    roots: dict[str, str] = {}
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 4 and fields[2] == "cgroup":
                    for option in fields[3].split(","):
                        if option in ("memory", "cpu", "pids"):
                            roots.setdefault(option, fields[1])
    except OSError:
        pass
    return roots


def _pidfd(pid: int):
    """A pidfd for `pid` (so a later kill cannot hit a reused pid), or the pid itself."""
    try:
        return ("fd", os.pidfd_open(pid))
    except (AttributeError, OSError):
        return ("pid", pid)


def _kill(handle) -> None:
    kind, value = handle
    try:
        if kind == "fd":
            signal.pidfd_send_signal(value, signal.SIGKILL)
        else:
            os.kill(value, signal.SIGKILL)
    except OSError:
        pass


def _close_pidfd(handle) -> None:
    if handle is not None and handle[0] == "fd":
        os.close(handle[1])


def _read_available(fd: int) -> bytes:
    """Whatever is in the pipe now, without blocking."""
    chunks = []
    blocking = os.get_blocking(fd)
    os.set_blocking(fd, False)
    try:
        while True:
            try:
                data = os.read(fd, 65536)
            except BlockingIOError:
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.set_blocking(fd, blocking)
    return b"".join(chunks)


_SESSION_ARGV = ["unshare", "--user", "--map-root-user", "--mount", "--propagation", "private", "--",
                 "/bin/bash", "--noprofile", "--norc", "-c"]  # fmt: skip


@functools.lru_cache(maxsize=None)
def sandbox_available() -> bool:
    """Whether bubblewrap and unshare exist and can create the sandbox's namespaces here (once)."""
    if shutil.which("bwrap") is None or shutil.which("unshare") is None:
        return False
    user = {"user": 65534, "group": 65534, "extra_groups": []} if os.geteuid() == 0 else {}
    directory = tempfile.mkdtemp(prefix="rljax-sandbox-probe-")
    try:
        os.mkdir(os.path.join(directory, "data"))
        if user:
            for name in ("", "data"):
                os.chown(os.path.join(directory, name), 65534, 65534)
        ids = ["--uid", "65534", "--gid", "65534"] if user else []
        script = (f'mount -t tmpfs -o size=1m,nr_inodes=16 rljax-probe "$1/data" && exec '
                  f"{shlex.join(_bwrap_argv(DEFAULT_READ_ONLY, 1 << 20) + ids)} "
                  '--bind "$1/data" /data -- /bin/sh -c true')  # fmt: skip
        probe = subprocess.run(
            [*_SESSION_ARGV, script, "probe", directory], stdin=subprocess.DEVNULL, capture_output=True,
            timeout=30, env=_SESSION_ENV, **user,
        )  # fmt: skip
        return probe.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False
    finally:
        _remove_tree(directory)


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
    """Deletes a host directory, first making its subdirectories writable (never via symlinks);
    never raises (the workspace itself lives in the session's tmpfs, gone with the session)."""
    try:
        for root, dir_names, _ in os.walk(path):
            for name in dir_names:
                child = os.path.join(root, name)
                if not os.path.islink(child):
                    os.chmod(child, 0o700)
    except (OSError, RecursionError):
        pass
    shutil.rmtree(path, ignore_errors=True)
