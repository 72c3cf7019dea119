"""A seccomp deny-list for the sandbox, as a classic BPF program built with `struct` (no libseccomp).

`deny_list_program()` returns the bytes bubblewrap loads with `--seccomp FD`: it checks the
architecture (x86_64 or aarch64; any other architecture, including 32-bit x86 system calls made
from a 64-bit process and the x32 ABI, kills the process), then answers each denied system call
with EPERM and allows everything else. `evaluate` runs a program on one (arch, nr) pair, so the
tests check the filter's logic on the host as well as inside the sandbox.
"""

from __future__ import annotations

import errno
import platform
import struct

# System call -> (x86_64 number, aarch64 number). Denied: debugging other processes, mounts and
# namespaces, kernel keyrings, eBPF, perf, kernel modules, kexec and reboot, swap, accounting,
# handle-based opens (a classic container escape), io_uring, userfaultfd and the kernel log.
DENIED = {
    "ptrace": (101, 117),
    "process_vm_readv": (310, 270),
    "process_vm_writev": (311, 271),
    "mount": (165, 40),
    "umount2": (166, 39),
    "pivot_root": (155, 41),
    "chroot": (161, 51),
    "open_tree": (428, 428),
    "move_mount": (429, 429),
    "fsopen": (430, 430),
    "fsconfig": (431, 431),
    "fsmount": (432, 432),
    "fspick": (433, 433),
    "mount_setattr": (442, 442),
    "unshare": (272, 97),
    "setns": (308, 268),
    "keyctl": (250, 219),
    "add_key": (248, 217),
    "request_key": (249, 218),
    "bpf": (321, 280),
    "perf_event_open": (298, 241),
    "init_module": (175, 105),
    "finit_module": (313, 273),
    "delete_module": (176, 106),
    "kexec_load": (246, 104),
    "kexec_file_load": (320, 294),
    "reboot": (169, 142),
    "swapon": (167, 224),
    "swapoff": (168, 225),
    "acct": (163, 89),
    "open_by_handle_at": (304, 265),
    "io_uring_setup": (425, 425),
    "io_uring_enter": (426, 426),
    "io_uring_register": (427, 427),
    "userfaultfd": (323, 282),
    "syslog": (103, 116),
}

AUDIT_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}
_X32_SYSCALL_BIT = 0x40000000

# Classic BPF opcodes and seccomp return values (linux/filter.h, linux/seccomp.h).
_LD_W_ABS, _JEQ_K, _JGE_K, _RET_K = 0x20, 0x15, 0x35, 0x06
RET_ALLOW, RET_KILL_PROCESS = 0x7FFF0000, 0x80000000
RET_ERRNO = 0x00050000
_NR_OFFSET, _ARCH_OFFSET = 0, 4  # struct seccomp_data: int nr; __u32 arch; ...


def machine_arch() -> str | None:
    """The host's architecture name if the filter supports it (x86_64, aarch64), else None."""
    machine = platform.machine().lower()
    machine = {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)
    return machine if machine in AUDIT_ARCH else None


def deny_list_program(arch: str, denied_errno: int = errno.EPERM) -> bytes:
    """The filter for `arch` ("x86_64" or "aarch64") as packed `struct sock_filter`s.

    Args:
        arch: the architecture whose system-call numbers to use.
        denied_errno: the error a denied call returns.

    Returns:
        8 bytes per instruction, native byte order, as bwrap's `--seccomp` expects.
    """
    if arch not in AUDIT_ARCH:
        raise ValueError(
            f"no seccomp filter for architecture {arch!r}; supported: {sorted(AUDIT_ARCH)}"
        )
    column = 0 if arch == "x86_64" else 1
    numbers = sorted({numbers[column] for numbers in DENIED.values()})
    # Layout: [ld arch, jeq arch, ld nr, (jge x32), jeq nr_i..., ret allow, ret errno, ret kill].
    body: list[tuple[int, int, int, int]] = [(_LD_W_ABS, 0, 0, _NR_OFFSET)]
    checks = ([(_JGE_K, _X32_SYSCALL_BIT)] if arch == "x86_64" else []) + [
        (_JEQ_K, n) for n in numbers
    ]
    for i, (code, k) in enumerate(checks):
        to_errno = len(checks) - i  # skip the remaining checks and `ret allow`
        body.append((code, to_errno if code == _JEQ_K else to_errno + 1, 0, k))
    tail = [
        (_RET_K, 0, 0, RET_ALLOW),
        (_RET_K, 0, 0, RET_ERRNO | denied_errno),
        (_RET_K, 0, 0, RET_KILL_PROCESS),
    ]
    to_kill = len(body) + 2  # from after the arch check: the body, allow, errno
    head = [(_LD_W_ABS, 0, 0, _ARCH_OFFSET), (_JEQ_K, 0, to_kill, AUDIT_ARCH[arch])]
    program = head + body + tail
    if any(jt > 255 or jf > 255 for _, jt, jf, _ in program):
        raise AssertionError("seccomp program too long for 8-bit jumps")
    return b"".join(struct.pack("=HBBI", *instruction) for instruction in program)


def evaluate(program: bytes, arch_value: int, nr: int) -> int:
    """Runs `program` (the subset of classic BPF the filter uses) on one system call.

    Args:
        program: bytes from `deny_list_program`.
        arch_value: the AUDIT_ARCH_* value of the call.
        nr: the system-call number.

    Returns:
        The seccomp action (e.g. `RET_ALLOW`, `RET_ERRNO | errno`, `RET_KILL_PROCESS`).
    """
    instructions = [struct.unpack_from("=HBBI", program, o) for o in range(0, len(program), 8)]
    data = {_NR_OFFSET: nr & 0xFFFFFFFF, _ARCH_OFFSET: arch_value}
    accumulator, pc = 0, 0
    while True:
        code, jt, jf, k = instructions[pc]
        if code == _LD_W_ABS:
            accumulator = data[k]
        elif code == _RET_K:
            return k
        elif code in (_JEQ_K, _JGE_K):
            taken = accumulator == k if code == _JEQ_K else accumulator >= k
            pc += jt if taken else jf
        else:
            raise ValueError(f"unsupported BPF opcode {code:#x}")
        pc += 1
