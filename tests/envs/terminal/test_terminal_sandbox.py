"""Sandbox: a real bash confined by bubblewrap. Each escape attempt must end in a clear observation."""

import errno
import functools
import os
import shutil
import signal
import time

import numpy as np
import pytest

from rljax.envs.base import Verdict
from rljax.envs.terminal import sandbox as sandbox_module
from rljax.envs.terminal import seccomp
from rljax.envs.terminal.backend import TerminalBackend
from rljax.envs.terminal.episode import TerminalEpisode
from rljax.envs.terminal.render import render_observation
from rljax.envs.terminal.sandbox import Sandbox, sandbox_available
from rljax.envs.terminal.shell import MiniShell
from rljax.envs.terminal.tasks import AppendLineFamily, FindValueFamily, WriteValueFamily

pytestmark = pytest.mark.skipif(
    not sandbox_available(), reason="bubblewrap with user namespaces is not available"
)

FILES = {"/data/f00": "k01=ab12\nk02=cd34\n", "/data/sub/inner": "x=1\n"}


@pytest.fixture
def box():
    sandbox = Sandbox(FILES, cwd="/data", timeout_s=3)
    yield sandbox
    sandbox.close()


def test_both_backends_implement_the_interface(box):
    assert isinstance(box, TerminalBackend) and isinstance(MiniShell(), TerminalBackend)


def test_runs_real_commands_and_keeps_the_working_directory(box):
    assert box.run("cat f00").stdout == FILES["/data/f00"]
    assert box.run("cd sub").exit_code == 0
    assert box.run("pwd").stdout == "/data/sub\n"
    assert box.run("cat inner | tr x y").stdout == "y=1\n"  # pipes work in a real shell
    assert box.run("cd /nope").stderr.endswith("cd: /nope: No such file or directory\n")
    assert box.cwd == "/data/sub"


def test_state_is_visible_to_the_verifier(box):
    box.run("mkdir out && echo hi > out/a")
    assert box.read_file("/data/out/a") == "hi\n"
    assert box.list_dir("/data") == ["f00", "out", "sub"]
    assert box.read_file("/data/out") is None and box.list_dir("/data/f00") is None


@pytest.mark.parametrize(
    "command",
    [
        "cat /etc/passwd",
        "cat ../etc/passwd",
        "cat ../../../../etc/passwd",
        "cd ..; cd ..; cat etc/passwd",
        "ls /root",
        "ls /home",
        "ls /work",
    ],
)
def test_host_files_are_not_visible(box, command):
    assert os.path.exists("/etc/passwd")  # it exists on the host ...
    result = box.run(command)  # ... but not inside
    assert result.exit_code != 0 and "No such file or directory" in result.stderr
    assert result.stdout == ""


def test_writes_outside_the_directory_do_not_reach_the_host(box, tmp_path):
    marker = f"rljax-sandbox-escape-{os.getpid()}"
    assert "Read-only file system" in box.run("echo x > /usr/evil").stderr
    box.run(f"echo x > /tmp/{marker}; echo x > ../{marker}; cd /; echo x > {marker}")
    assert not os.path.exists(f"/tmp/{marker}") and not os.path.exists(f"/{marker}")
    assert box.run(f"cat /tmp/{marker}").exit_code == 1  # /tmp is private to each command


def test_symlinks_pointing_out_are_contained(box):
    result = box.run("ln -s /etc/passwd link && cat link")
    assert "No such file or directory" in result.stderr
    box.run("ln -s /etc escape")
    assert box.read_file("/data/link") is None  # the verifier never follows symlinks ...
    assert box.read_file("/data/escape/passwd") is None  # ... not even in a path component
    assert box.list_dir("/data/escape") is None
    assert "Invalid cross-device link" in box.run("ln /usr/bin/env hardlink").stderr


def test_verifier_paths_outside_the_workdir_are_refused(box):
    assert box.read_file("/etc/passwd") is None
    assert box.read_file("/data/../etc/passwd") is None
    assert box.list_dir("/") is None


def test_network_is_unreachable(box):
    result = box.run("echo hi > /dev/tcp/1.1.1.1/80")
    assert result.exit_code == 1 and "Network is unreachable" in result.stderr


def test_sleeping_command_is_killed_at_the_timeout(box):
    start = time.monotonic()
    result = box.run("echo started; sleep 30")
    assert time.monotonic() - start < 10
    assert result.exit_code == 124 and result.stdout == "started\n"
    assert result.stderr == "sandbox: command timed out after 3 s and was killed\n"
    assert box.run("echo alive").stdout == "alive\n"  # the session goes on


def test_background_processes_die_with_the_command(box):
    start = time.monotonic()
    assert box.run("sleep 30 & echo spawned").stdout == "spawned\n"
    assert time.monotonic() - start < 3
    assert box.run("ps -e -o comm=").stdout.split().count("sleep") == 0


def test_huge_output_is_capped():
    sandbox = Sandbox(FILES, timeout_s=5, max_output_bytes=10_000)
    try:
        result = sandbox.run("yes")
        assert result.exit_code == 137 and len(result.stdout) == 10_000
        assert result.stderr == "sandbox: output exceeded 10000 bytes; the command was killed\n"
        text = render_observation("yes", result, max_output_chars=100)
        assert text.startswith("Command 'yes' failed. Output: y\ny\n")
        note = "sandbox: output exceeded 10000 bytes; the command was killed"
        total = (10_000 - 1) + 1 + len(note)  # stdout without its last newline, a newline, stderr
        assert f"[Output truncated: showing first 100 of {total} characters]" in text
    finally:
        sandbox.close()


def test_fork_bomb_is_contained():
    sandbox = Sandbox(FILES, timeout_s=3, max_processes=16)
    try:
        assert sandbox.run("ulimit -u").stdout == "16\n"
        start = time.monotonic()
        result = sandbox.run(":(){ :|:& };:; for i in $(seq 40); do sleep 5 & done; wait")
        assert time.monotonic() - start < 10
        assert "Resource temporarily unavailable" in result.stderr
        assert sandbox.run("echo alive").stdout == "alive\n"
    finally:
        sandbox.close()


def test_file_size_and_memory_limits():
    sandbox = Sandbox(FILES, timeout_s=5, file_bytes=1 << 20, memory_bytes=256 << 20)
    try:
        result = sandbox.run("head -c 3000000 /dev/zero > big")
        assert result.exit_code == 128 + 25  # SIGXFSZ
        assert len(sandbox.read_file("/data/big")) == 1 << 20
        if shutil.which("python3", path="/usr/bin:/bin"):
            result = sandbox.run("python3 -c 'bytearray(1 << 30)'")
            assert result.exit_code == 1 and "MemoryError" in result.stderr
    finally:
        sandbox.close()


@pytest.mark.parametrize("command,limits", [
    ("for i in 1 2 3; do head -c 600000 /dev/zero > f$i; done", {"disk_bytes": 1 << 20}),
    ("touch a{1..80}", {"max_entries": 50}),
])  # fmt: skip
def test_disk_quota_is_enforced_by_the_kernel(command, limits):
    sandbox = Sandbox(FILES, timeout_s=5, **limits)
    try:
        result = sandbox.run(command)
        assert result.exit_code == 1 and not result.fatal  # an ordinary failed command
        assert "No space left on device" in result.stderr
        assert sandbox.run("rm -f f2 f3 a*; echo ok > f4 && cat f4").stdout == "ok\n"
    finally:
        sandbox.close()


def test_quota_holds_under_paths_longer_than_path_max():
    # The old post-command walk could not measure files under paths longer than 4,096 bytes.
    sandbox = Sandbox(FILES, timeout_s=10, disk_bytes=1 << 20)
    try:
        name = "d" * 200
        result = sandbox.run(
            f"for i in $(seq 30); do mkdir {name} && cd {name} || exit 1; done; pwd | wc -c; "
            "for i in $(seq 12); do head -c 1000000 /dev/zero > f$i || exit 1; done"
        )
        assert int(result.stdout) > 6000  # the files lie under a path of 6,000 bytes
        assert result.exit_code == 1 and "No space left on device" in result.stderr
        assert not result.fatal and sandbox.run("echo alive").stdout == "alive\n"
    finally:
        sandbox.close()
    assert not os.path.exists(sandbox.host_dir)


def test_a_very_deep_tree_neither_crashes_the_sandbox_nor_its_close():
    # The old post-command walk recursed once per level: about 1,000 levels raised RecursionError.
    sandbox = Sandbox(FILES, timeout_s=20)
    hundred = "d/" * 100
    result = sandbox.run(
        f"for i in $(seq 11); do mkdir -p {hundred} && cd {hundred} || exit 1; done; echo deep"
    )
    assert result.exit_code == 0 and result.stdout == "deep\n"
    assert sandbox.list_dir("/data") == ["d", "f00", "sub"]
    sandbox.close()
    assert not os.path.exists(sandbox.host_dir)


def test_commands_over_128_kib_run(box):
    # The old backend passed the command in argv: over 128 KiB, PermissionError: 'bwrap'.
    result = box.run("echo " + "x" * 200_000 + " | wc -c")
    assert result.exit_code == 0 and result.stdout == "200001\n"


def test_over_long_commands_fail_with_a_note():
    sandbox = Sandbox(FILES, timeout_s=5, max_command_bytes=300_000)
    try:
        result = sandbox.run("echo " + "x" * 300_000)
        assert result.exit_code == 2 and not result.fatal and result.stdout == ""
        assert (
            result.stderr
            == "sandbox: the command is 300005 bytes long; the limit is 300000 bytes\n"
        )
        text = render_observation("echo xxx", result)
        assert "failed" in text and "the limit is 300000 bytes" in text
        assert sandbox.run("echo alive").stdout == "alive\n"
    finally:
        sandbox.close()


def test_environment_is_scrubbed_and_privileges_dropped(monkeypatch):
    monkeypatch.setenv("RLJAX_SECRET_TOKEN", "hunter2")
    fresh = Sandbox(FILES)
    try:
        env = fresh.run("env").stdout
        allowed = {"PATH", "LC_ALL", "TERM", "HOME", "PWD", "SHLVL", "_", "OLDPWD"}
        assert {line.split("=")[0] for line in env.split()} <= allowed
        # PID 1 inside was bwrap, started with the trainer's environment: /proc/1/environ leaked it.
        for command in ("env", "set", "cat /proc/*/environ", "tr '\\0' '\\n' < /proc/1/environ",
                        "cat /proc/1/environ", "grep -r hunter2 /proc/*/environ"):  # fmt: skip
            result = fresh.run(command)
            assert "hunter2" not in result.stdout + result.stderr, command
            assert "RLJAX_SECRET_TOKEN" not in result.stdout + result.stderr, command
        assert "PATH=" in fresh.run("cat /proc/1/environ").stdout  # readable, and scrubbed
        if os.geteuid() == 0:
            assert fresh.run("id -u").stdout == "65534\n"
        assert fresh.run("unshare -U true").exit_code != 0  # no nested user namespaces
    finally:
        fresh.close()


def test_a_session_killed_from_outside_ends_the_episode():
    judge = lambda backend, answer: Verdict(0.0, {"reason": "unused"})  # noqa: E731
    sandbox = Sandbox(FILES)
    with TerminalEpisode(sandbox, judge, max_turns=5) as episode:
        assert not episode.step("<think> look </think> <cmd> ls </cmd>").done
        os.kill(sandbox._state.process.pid, signal.SIGKILL)  # e.g. the OOM killer
        obs = episode.step("<think> again </think> <cmd> ls </cmd>")
        assert obs.done and "sandbox: the session has ended unexpectedly" in obs.text
    assert sandbox.read_file("/data/f00") is None


def test_commands_cannot_kill_the_session():
    sandbox = Sandbox(FILES, timeout_s=5)
    try:
        sandbox.run("kill -9 -1; kill -9 1; kill -9 $PPID")
        assert sandbox.run("echo alive").stdout == "alive\n"
    finally:
        sandbox.close()


def test_close_removes_the_directory_and_ends_the_session():
    sandbox = Sandbox(FILES)
    sandbox.run("mkdir d && chmod 000 d")
    host_dir = sandbox.host_dir
    session = sandbox._state.process
    sandbox.close()
    sandbox.close()
    assert not os.path.exists(host_dir) and session.poll() is not None
    assert sandbox.read_file("/data/f00") is None
    with pytest.raises(RuntimeError, match="the sandbox is closed"):
        sandbox.run("ls")


def test_constructor_validation():
    with pytest.raises(ValueError, match="outside workdir"):
        Sandbox({"/etc/x": "y"})
    for workdir in ("/usr/x", "/etc", "/tmp", "/"):
        with pytest.raises(ValueError, match="workdir must not be /, contain or lie inside"):
            Sandbox(workdir=workdir)
    with pytest.raises(ValueError, match="run_as must be a positive"):
        Sandbox(run_as=0)
    sandbox = Sandbox({"/my work/f": "x\n"}, workdir="/my work", cwd="/my work")
    assert sandbox.run("cat f; pwd").stdout == "x\n/my work\n"
    sandbox.close()
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        Sandbox(timeout_s=0)
    with pytest.raises(ValueError, match="cwd"):
        Sandbox(FILES, cwd="/data/f00")
    with pytest.raises(ValueError, match="total_memory_bytes"):
        Sandbox(FILES, disk_bytes=64 << 20, total_memory_bytes=100 << 20)
    with pytest.raises(ValueError, match="initial files do not fit the workspace"):
        Sandbox({"/data/big": "x" * 2_000_000}, disk_bytes=1 << 20)


@pytest.mark.parametrize(
    "command",
    [
        "cat f00",
        "cat nope",
        "grep k02 f00",
        "head -n 1 f00",
        "wc -l f00",
        "sort nope",
        "mkdir sub",
        "rm sub",
        "cp f00 sub",
        "mv nope x",
        "tail -n x f00",
    ],
)
def test_same_observations_as_the_minishell(box, command):
    mini = MiniShell(FILES, cwd="/data")
    assert render_observation(command, box.run(command)) == render_observation(
        command, mini.run(command)
    )


@pytest.mark.parametrize("family_cls", [FindValueFamily, WriteValueFamily, AppendLineFamily])
def test_task_families_run_on_the_sandbox(family_cls):
    family = family_cls(seed=0, backend=functools.partial(Sandbox, timeout_s=5))
    for index in range(2):
        task = family.generate("train", index)
        actions = family.expert_actions(task, np.random.default_rng(index), noise=1.0)
        with family.start(task) as episode:
            for action in actions:
                if episode.step(action).done:
                    break
            assert episode.verdict().reward == 1.0
        assert family.verify(task, "<cmd> answer wrong </cmd>").reward == 0.0


def test_commands_bash_cannot_take_give_an_error_result(box):
    assert box.run("echo a\0b").stderr == "sandbox: the command contains a NUL character\n"
    assert box.run("echo \ud800").exit_code == 2
    assert box.run("printf '\\xff\\xfe'").stdout == "\ufffd\ufffd"  # undecodable output is replaced


# --- system calls (seccomp) ---------------------------------------------------------------


@pytest.mark.parametrize("arch", sorted(seccomp.AUDIT_ARCH))
def test_seccomp_program_denies_the_list_and_allows_the_rest(arch):
    program = seccomp.deny_list_program(arch)
    column = 0 if arch == "x86_64" else 1
    denied = {numbers[column] for numbers in seccomp.DENIED.values()}
    audit = seccomp.AUDIT_ARCH[arch]
    for nr in range(460):
        expected = seccomp.RET_ERRNO | errno.EPERM if nr in denied else seccomp.RET_ALLOW
        assert seccomp.evaluate(program, audit, nr) == expected, nr
    for other in set(seccomp.AUDIT_ARCH.values()) - {audit} | {
        0x40000003
    }:  # aarch64 / x86_64 / i386
        assert seccomp.evaluate(program, other, 0) == seccomp.RET_KILL_PROCESS
    if arch == "x86_64":  # the x32 ABI reaches the same kernel code under other numbers
        assert seccomp.evaluate(program, audit, 0x40000000 | 101) == seccomp.RET_KILL_PROCESS


_PROBE = """
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
for name, nr in zip(sys.argv[1::2], sys.argv[2::2]):
    ctypes.set_errno(0)
    result = libc.syscall(int(nr), 0, 0, 0, 0, 0, 0)
    print(name, result, ctypes.get_errno())
"""


@functools.lru_cache(maxsize=None)
def _syscall_results() -> dict[str, tuple[int, int]]:
    """name -> (return value, errno) of each denied call made with all-zero arguments inside."""
    arch = seccomp.machine_arch()
    column = 0 if arch == "x86_64" else 1
    args = " ".join(f"{name} {numbers[column]}" for name, numbers in seccomp.DENIED.items())
    sandbox = Sandbox(FILES, timeout_s=20)
    try:
        result = sandbox.run(f"python3 -c '{_PROBE}' {args}")
    finally:
        sandbox.close()
    assert result.exit_code == 0, result
    rows = [line.split() for line in result.stdout.splitlines()]
    return {name: (int(value), int(err)) for name, value, err in rows}


@pytest.mark.skipif(
    seccomp.machine_arch() is None, reason="the filter supports x86_64 and aarch64 only"
)
@pytest.mark.skipif(
    not shutil.which("python3", path="/usr/bin:/bin"), reason="needs /usr/bin/python3"
)
@pytest.mark.parametrize("name", sorted(seccomp.DENIED))
def test_denied_syscalls_fail_with_eperm_inside(name):
    # Without the filter ptrace(TRACEME), unshare(0) and keyctl succeed, setns(0) gives EINVAL or
    # EBADF, mount(NULL) EFAULT, bpf EINVAL ...; the filter answers EPERM before the kernel looks.
    assert _syscall_results()[name] == (-1, errno.EPERM)


@pytest.mark.skipif(
    seccomp.machine_arch() is None, reason="the filter supports x86_64 and aarch64 only"
)
def test_every_command_runs_under_the_filter(box):
    status = box.run("grep Seccomp /proc/self/status").stdout
    assert "Seccomp:\t2" in status  # mode 2: a filter is installed
    assert box.run("echo ok | cat").stdout == "ok\n"  # ordinary programs are unaffected


# --- memory and CPU of the whole process tree (cgroup) --------------------------------------


def _tree_limited(**limits) -> Sandbox:
    sandbox = Sandbox(FILES, timeout_s=20, disk_bytes=8 << 20, **limits)
    if getattr(sandbox, "tree_limits", "").startswith("none"):
        sandbox.close()
        pytest.skip(f"no cgroup for the process tree here: {sandbox.tree_limits}")
    return sandbox


def test_memory_is_limited_across_processes():
    # Each process stays far below its own 1 GiB address-space limit; four together exceed the
    # 160 MiB of the tree. tail -c holds the last N bytes of its input until EOF.
    sandbox = _tree_limited(total_memory_bytes=160 << 20)
    try:
        hog = "(head -c 60000000 /dev/zero; sleep 2) | tail -c 60000000 | wc -c"
        assert sandbox.run(hog).stdout == "60000000\n"  # one alone fits
        result = sandbox.run(" & ".join([f"({hog})"] * 4) + " & wait")
        assert result.stdout.count("60000000") <= 2
        assert sandbox.run("echo alive").stdout == "alive\n"  # the session survives the OOM kills
    finally:
        sandbox.close()


def test_cpu_is_limited_across_processes():
    sandbox = _tree_limited(cpus=0.1)
    try:
        spin = "timeout 2 sh -c 'while :; do :; done'"
        result = sandbox.run(f"{spin} & {spin} & wait; times")
        children = result.stdout.splitlines()[-1].split()  # user and system time of the children
        used = sum(
            float(t.split("m")[0]) * 60 + float(t.split("m")[1].rstrip("s")) for t in children
        )
        assert used < 0.6  # two spinners for 2 s: 4 CPU-seconds unlimited, <= ~0.3 at 0.1 CPU
    finally:
        sandbox.close()


def test_cgroup_v2_layout(tmp_path, monkeypatch):
    # This machine may only have cgroup v1: check the v2 files on a stand-in directory.
    monkeypatch.setattr(sandbox_module, "_cgroup2_root", lambda: str(tmp_path))
    limits = sandbox_module._TreeLimits("rljax-sandbox-test")
    note = limits.create(256 << 20, 0.5, 32)
    assert note.startswith("cgroup v2 ")
    group = tmp_path / "rljax-sandbox-test"
    assert (tmp_path / "cgroup.subtree_control").read_text() == "+memory +cpu +pids"
    expected = {
        "memory.max": "268435456",
        "memory.swap.max": "0",
        "cpu.max": "50000 100000",
        "pids.max": "32",
    }
    assert {name: (group / name).read_text() for name in expected} == expected
    limits.attach(1234)
    assert (group / "cgroup.procs").read_text() == "1234"
    for child in group.iterdir():
        child.unlink()
    limits.release()
    assert not group.exists()
