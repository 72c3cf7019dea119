"""Multi-controller start-up: one process per host, joined through `jax.distributed`."""

from __future__ import annotations

import os

import jax

ENV_COORDINATOR = "JAX_COORDINATOR_ADDRESS"
ENV_NUM_PROCESSES = "JAX_NUM_PROCESSES"
ENV_PROCESS_ID = "JAX_PROCESS_ID"


def _env_int(name: str) -> int | None:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return None
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name}={raw!r} is not an integer") from None


def initialize(
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    *,
    auto_detect: bool = False,
) -> bool:
    """Joins this process to a multi-process JAX run; a no-op for a single process.

    Each argument left as None is read from the standard environment variables
    `JAX_COORDINATOR_ADDRESS` ("host:port" of process 0), `JAX_NUM_PROCESSES` and `JAX_PROCESS_ID`.
    When nothing is given and `auto_detect` is True, JAX's cluster detection (TPU pod slices, SLURM,
    Open MPI, Kubernetes jobsets) supplies the values instead when it finds a cluster of more than
    one process (`detected_cluster`); on a plain machine it is a no-op. Call it before any other
    JAX call.

    Args:
        coordinator_address: "host:port" where process 0 serves the coordination service.
        num_processes: total number of processes.
        process_id: this process's index in [0, num_processes).
        auto_detect: with no values given or in the environment, join the cluster JAX detects.

    Returns:
        True if `jax.distributed.initialize` was called, False for the single-process no-op.

    Raises:
        ValueError: the values are only partly given, or are out of range.
    """
    coordinator_address = coordinator_address or os.environ.get(ENV_COORDINATOR) or None
    num_processes = num_processes if num_processes is not None else _env_int(ENV_NUM_PROCESSES)
    process_id = process_id if process_id is not None else _env_int(ENV_PROCESS_ID)
    given = {
        "coordinator_address": coordinator_address,
        "num_processes": num_processes,
        "process_id": process_id,
    }
    if all(value is None for value in given.values()):
        if auto_detect and detected_cluster() is not None:
            jax.distributed.initialize()
            return True
        return False
    if num_processes == 1 and process_id in (None, 0):
        return False
    missing = [name for name, value in given.items() if value is None]
    if missing:
        raise ValueError(
            f"distributed initialize: {missing} not given (arguments or env {ENV_COORDINATOR}, "
            f"{ENV_NUM_PROCESSES}, {ENV_PROCESS_ID}); got {given}"
        )
    if num_processes < 1 or not 0 <= process_id < num_processes:
        raise ValueError(
            f"distributed initialize: process_id={process_id} must lie in [0, num_processes={num_processes})"
        )
    jax.distributed.initialize(
        coordinator_address=coordinator_address, num_processes=num_processes, process_id=process_id
    )
    return True


def detected_cluster() -> str | None:
    """The name of the multi-process cluster JAX detects around this process (None: none).

    Uses JAX's own cluster environments (`jax._src.clusters`: SLURM, Open MPI, Cloud TPU VMs and
    GKE TPU pods, Kubernetes), the ones `jax.distributed.initialize()` would use, and reports one
    only when it has more than one process, so a single-task SLURM job or a single-host TPU VM runs
    as one process without a coordination service.
    """
    from jax._src import clusters  # no public API says whether a cluster is present

    for env in clusters.ClusterEnv._cluster_types:
        if env.opt_in_only_method or not env.is_env_present():
            continue
        try:
            count = env.get_process_count()
        except Exception:  # noqa: BLE001 - an environment that cannot say is not joined
            continue
        if count > 1:
            return env.__name__
    return None
