"""Local multi-process launcher: runs one command as N JAX processes on this machine.

    python -m rljax.experiments.launch --processes 2 -- \\
        python -m rljax.experiments.grpo --preset smoke --run-dir runs/grpo-2proc

Each process gets `JAX_COORDINATOR_ADDRESS` (localhost and a free port), `JAX_NUM_PROCESSES`,
`JAX_PROCESS_ID` and, with `--cpu-devices D`, D fake CPU devices (`XLA_FLAGS`,
`JAX_PLATFORMS=cpu`; collectives between the processes go through gloo). The processes' output is
forwarded line by line, prefixed with `[i]`. When one process fails, the others are stopped (they
would otherwise wait forever inside a collective). This is what the multi-process tests use; on a
real pod or cluster the scheduler starts the processes instead (README: "Running on a TPU pod or
GPU cluster").
"""

from __future__ import annotations

import argparse
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from rljax.parallel import distributed

# After one process fails, how long the others get to fail on their own before they are stopped.
GRACE_S = 10.0


def free_port() -> int:
    """A TCP port that is free on localhost now (for the coordination service)."""
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def process_env(
    rank: int, processes: int, coordinator: str, cpu_devices: int | None, base: dict | None = None
) -> dict[str, str]:
    """The environment of process `rank`: the JAX coordination variables (and fake CPU devices)."""
    env = dict(os.environ if base is None else base)
    env[distributed.ENV_COORDINATOR] = coordinator
    env[distributed.ENV_NUM_PROCESSES] = str(processes)
    env[distributed.ENV_PROCESS_ID] = str(rank)
    if cpu_devices is not None:
        env["JAX_PLATFORMS"] = "cpu"
        env["XLA_FLAGS"] = f"--xla_force_host_platform_device_count={cpu_devices}"
    return env


def _forward(stream, prefix: str, sink) -> None:
    for line in iter(stream.readline, ""):
        sink.write(f"{prefix}{line}")
        sink.flush()
    stream.close()


def launch(
    command: Sequence[str],
    *,
    processes: int,
    cpu_devices: int | None = None,
    env: dict | None = None,
    timeout: float | None = None,
) -> list[int]:
    """Runs `command` as `processes` JAX processes and waits for all of them.

    Args:
        command: the program and its arguments (the same for every process).
        processes: how many processes (>= 1).
        cpu_devices: fake CPU devices per process (None: the platform's own devices).
        env: base environment (default: this process's).
        timeout: seconds before every process still running is killed (None: no limit).

    Returns:
        The exit code of every process, in process order (-9 for one that was killed).
    """
    if processes < 1:
        raise ValueError(f"--processes must be >= 1, got {processes}")
    if not command:
        raise ValueError("no command given; put it after '--'")
    coordinator = f"localhost:{free_port()}"
    procs, threads = [], []
    for rank in range(processes):
        proc = subprocess.Popen(
            list(command),
            env=process_env(rank, processes, coordinator, cpu_devices, env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        procs.append(proc)
        # Reader threads drain every pipe: a process blocked on a full pipe would stall its peers
        # inside a collective.
        thread = threading.Thread(
            target=_forward, args=(proc.stdout, f"[{rank}] ", sys.stdout), daemon=True
        )
        thread.start()
        threads.append(thread)
    deadline = None if timeout is None else time.monotonic() + timeout
    failed_at = None
    try:
        while any(proc.poll() is None for proc in procs):
            now = time.monotonic()
            if failed_at is None and any(proc.poll() not in (None, 0) for proc in procs):
                failed_at = now
            if (failed_at is not None and now - failed_at > GRACE_S) or (
                deadline is not None and now > deadline
            ):
                break
            time.sleep(0.2)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait()
        for thread in threads:
            thread.join(timeout=5)
    return [proc.returncode for proc in procs]


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" not in argv:
        raise SystemExit("usage: python -m rljax.experiments.launch [options] -- COMMAND ...")
    split = argv.index("--")
    parser = argparse.ArgumentParser(
        prog="python -m rljax.experiments.launch", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--processes", type=int, required=True, help="number of JAX processes")
    parser.add_argument(
        "--cpu-devices",
        type=int,
        default=None,
        help="fake CPU devices per process (for testing a pod layout on one machine)",
    )
    parser.add_argument("--timeout", type=float, default=None, help="seconds before a kill")
    args = parser.parse_args(argv[:split])
    codes = launch(
        argv[split + 1 :],
        processes=args.processes,
        cpu_devices=args.cpu_devices,
        timeout=args.timeout,
    )
    print(f"launch: exit codes {codes}", file=sys.stderr)
    return next((code for code in codes if code), 0)


if __name__ == "__main__":
    sys.exit(main())
