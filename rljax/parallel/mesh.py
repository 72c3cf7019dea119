"""Device meshes over the fixed axes ("data", "fsdp", "tensor")."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import jax
from jax.sharding import AxisType, Mesh

MESH_AXES: tuple[str, ...] = ("data", "fsdp", "tensor")
DATA_AXES: tuple[str, ...] = ("data", "fsdp")


def parse_mesh_spec(spec: str | Mapping[str, int]) -> dict[str, int]:
    """Parses "data=2,fsdp=2,tensor=2" (or a dict) into a size per mesh axis.

    Axes left out have size 1. "auto" is not handled here (it depends on the devices); see
    `make_mesh`.

    Args:
        spec: comma-separated `axis=size` pairs over ("data", "fsdp", "tensor"), or a mapping
            from those axis names to positive sizes.

    Returns:
        A dict with one positive size for each of ("data", "fsdp", "tensor"), in that order.
    """
    if isinstance(spec, str):
        pairs = {}
        for item in spec.split(","):
            name, sep, size = item.strip().partition("=")
            if not sep or not name.strip() or not size.strip().lstrip("-").isdigit():
                raise ValueError(
                    f"mesh spec {spec!r}: item {item.strip()!r} is not of the form axis=size "
                    f"(e.g. 'data=2,fsdp=2,tensor=2')"
                )
            name = name.strip()
            if name in pairs:
                raise ValueError(f"mesh spec {spec!r} names axis {name!r} twice")
            pairs[name] = int(size)
    elif isinstance(spec, Mapping):
        pairs = dict(spec)
    else:
        raise ValueError(f"mesh spec must be a str or a dict, got {type(spec).__name__}: {spec!r}")
    unknown = sorted(set(pairs) - set(MESH_AXES))
    if unknown:
        raise ValueError(
            f"mesh spec {spec!r} has unknown axes {unknown}; expected a subset of {MESH_AXES}"
        )
    sizes = {axis: pairs.get(axis, 1) for axis in MESH_AXES}
    for axis, size in sizes.items():
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise ValueError(
                f"mesh spec {spec!r}: axis {axis!r} has size {size!r}; expected a positive int"
            )
    return sizes


def auto_mesh_shape(num_devices: int, num_processes: int) -> dict[str, int]:
    """The "auto" layout: data parallel across processes (hosts), FSDP over each host's devices.

    Gradient all-reduces then cross hosts once per step while the parameter all-gathers of FSDP stay
    on the fast intra-host links. Tensor parallelism is never chosen automatically.

    Args:
        num_devices: total devices in the mesh.
        num_processes: number of processes (hosts) owning them; must divide `num_devices`.

    Returns:
        A dict with one size for each of ("data", "fsdp", "tensor").
    """
    if num_processes < 1 or num_devices % num_processes:
        raise ValueError(
            f"auto mesh: {num_devices} devices cannot be split evenly over {num_processes} processes"
        )
    return {"data": num_processes, "fsdp": num_devices // num_processes, "tensor": 1}


def make_mesh(spec: str | Mapping[str, int], devices: Sequence[jax.Device] | None = None) -> Mesh:
    """Builds a `jax.sharding.Mesh` with axes ("data", "fsdp", "tensor") from a spec.

    Args:
        spec: "auto", a string such as "data=2,fsdp=2,tensor=2", or a dict {"data": 2, ...}.
            Axes left out have size 1; the product of the sizes must equal the number of devices.
        devices: devices to lay out (default: `jax.devices()`, all processes' devices).

    Returns:
        A mesh whose axes are ("data", "fsdp", "tensor"), all of type `AxisType.Auto` (the
        compiler propagates shardings from the explicit in/out shardings of `jax.jit`).
    """
    devices = list(jax.devices() if devices is None else devices)
    if not devices:
        raise ValueError("make_mesh: the device list is empty")
    if spec == "auto":
        num_processes = len({d.process_index for d in devices})
        sizes = auto_mesh_shape(len(devices), num_processes)
    else:
        sizes = parse_mesh_spec(spec)
    needed = math.prod(sizes.values())
    if needed != len(devices):
        layout = ",".join(f"{axis}={size}" for axis, size in sizes.items())
        raise ValueError(
            f"mesh spec {spec!r} ({layout}) needs {needed} devices but {len(devices)} are available; "
            f"the product of the axis sizes must equal the device count"
        )
    return jax.make_mesh(
        tuple(sizes.values()),
        MESH_AXES,
        axis_types=(AxisType.Auto,) * len(MESH_AXES),
        devices=devices,
    )
