"""Orbax checkpoints of the whole train state, with resume from the latest readable one.

A checkpoint holds three items: `state` (the array pytree: parameters, optimiser state, step, PRNG
key, method state), `meta` (JSON: the resolved config, the data iterator state, the metric history
cursor) and `checksums` (JSON: a CRC-32 of every array, computed from the host copy each save makes;
null for an array sharded across processes, which no host holds whole). The checksums do not depend
on the number of processes: a checkpoint saved by one process restores in a multi-process run and
the other way round, each array that the restoring process holds whole and the saving process held
whole being verified.
Orbax writes each step into a temporary directory and renames it when complete, so a save
interrupted by SIGKILL leaves no directory that `latest_step` would pick.

A step directory that is present but unreadable (a data file truncated or deleted, `_METADATA`
corrupted, a required meta key missing, an array whose checksum differs) is moved aside to
`<directory>/unreadable/<step>` with the reason in `UNREADABLE.txt`, never deleted, once an older
readable step has been found; the run then redoes that step and saves it again. When checkpoints
exist but none is readable, `restore_latest` raises `NoReadableCheckpointError` and changes nothing,
unless the caller explicitly asks to start fresh.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import zlib
from typing import Any, Callable

import jax
import numpy as np
import orbax.checkpoint as ocp
from etils import epath
from jax.experimental import multihost_utils

from rljax.train.rundir import RunLock

log = logging.getLogger(__name__)

UNREADABLE_DIR = "unreadable"
REASON_FILE = "UNREADABLE.txt"


class IncompatibleCheckpointError(ValueError):
    """A checkpoint was written by a run whose config differs in a way that changes the state."""


class UnreadableCheckpointError(RuntimeError):
    """One checkpoint step cannot be restored (the message says why)."""


class NoReadableCheckpointError(RuntimeError):
    """Checkpoints exist but none of them can be restored."""


def array_checksum(array: np.ndarray) -> dict:
    """CRC-32 of a host array's bytes, with its dtype and shape: {"crc32", "dtype", "shape"}."""
    array = np.ascontiguousarray(array)
    return {
        "crc32": zlib.crc32(array.reshape(-1).view(np.uint8)),
        "dtype": array.dtype.name,
        "shape": list(array.shape),
    }


def host_copy(tree: Any) -> tuple[Any, dict[str, dict | None]]:
    """The host (numpy) copy of `tree` that a save writes, and the checksum of each array in it.

    Arrays that span several processes (multi-host sharding) cannot be copied whole to one host:
    they are passed through unchanged and their checksum is None (so that every array of the tree
    is named, whatever the number of processes).

    Returns:
        (the tree with host arrays, {`jax.tree_util.keystr` path: `array_checksum` or None}).
    """
    paths_leaves, treedef = jax.tree_util.tree_flatten_with_path(tree)
    local = [
        i
        for i, (_, leaf) in enumerate(paths_leaves)
        if not (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable)
    ]
    copies = jax.device_get([paths_leaves[i][1] for i in local])
    leaves = [leaf for _, leaf in paths_leaves]
    checksums = {jax.tree_util.keystr(path): None for path, _ in paths_leaves}
    for i, copy in zip(local, copies):
        leaves[i] = np.asarray(copy)
        checksums[jax.tree_util.keystr(paths_leaves[i][0])] = array_checksum(leaves[i])
    return jax.tree_util.tree_unflatten(treedef, leaves), checksums


def verify_checksums(tree: Any, checksums: dict[str, dict | None]) -> None:
    """Raises UnreadableCheckpointError naming the first array whose checksum differs or is missing.

    An array is verified when its checksum is stored and this process holds it whole; one sharded
    across processes now, or when it was saved (stored checksum None), is not: no host holds it
    whole. Every other array of `tree` must have a stored checksum, and every stored name must be
    an array of `tree`.
    """
    paths_leaves = jax.tree_util.tree_flatten_with_path(tree)[0]
    names = [jax.tree_util.keystr(path) for path, _ in paths_leaves]
    unexpected = sorted(set(checksums) - set(names))
    if unexpected:
        raise UnreadableCheckpointError(
            f"checksums name arrays the restored state lacks: {unexpected[:3]}"
        )
    local = [
        (name, leaf)
        for name, (_, leaf) in zip(names, paths_leaves)
        if not (isinstance(leaf, jax.Array) and not leaf.is_fully_addressable)
    ]
    for name, _ in local:
        if name not in checksums:
            raise UnreadableCheckpointError(f"no checksum stored for array {name}")
    checked = [(name, leaf) for name, leaf in local if checksums[name] is not None]
    copies = jax.device_get([leaf for _, leaf in checked])
    for (name, _), copy in zip(checked, copies):
        found = array_checksum(np.asarray(copy))
        if found != checksums[name]:
            raise UnreadableCheckpointError(
                f"array {name} does not match its checksum (stored {checksums[name]}, "
                f"restored {found})"
            )


class Checkpointer:
    """Periodic, asynchronous, keep-last-N, checksummed checkpoints of one run directory.

    Args:
        directory: where step directories are written.
        max_to_keep: how many recent checkpoints to keep (>= 1).
        every: save when `step % every == 0` (0 = only explicit `force` saves).
        async_save: write in a background thread (the next save waits for the previous one).
    """

    def __init__(
        self,
        directory: str | epath.Path,
        *,
        max_to_keep: int = 2,
        every: int = 0,
        async_save: bool = True,
    ):
        if max_to_keep < 1:
            raise ValueError(
                f"max_to_keep must be >= 1 (a run keeps its last checkpoint), got {max_to_keep}"
            )
        # Orbax needs an absolute path (a relative run directory is resolved against the cwd).
        self.directory = epath.Path(os.path.abspath(directory))
        self.every = every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta", "checksums")
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
        """Saves `state`, `meta` and the state's checksums at `step` if due (or `force`).

        Returns whether it saved: False when not due or when directory `step` already exists.
        """
        due = force or (self.every > 0 and step % self.every == 0)
        if not due or step in self._manager.all_steps():
            return False
        host, checksums = host_copy(state)
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(host),
                meta=ocp.args.JsonSave(meta),
                checksums=ocp.args.JsonSave(checksums),
            ),
            force=True,
        )
        return True

    def restore_step(
        self,
        step: int,
        abstract_state: Any,
        *,
        required_meta: tuple[str, ...] = (),
        check_meta: Callable[[dict], None] | None = None,
    ) -> tuple[Any, dict]:
        """Restores one step and verifies it; raises UnreadableCheckpointError saying why it cannot.

        `check_meta`'s IncompatibleCheckpointError propagates unchanged: such a step is readable.
        """
        self.wait()
        try:
            restored = self._manager.restore(
                step,
                args=ocp.args.Composite(
                    meta=ocp.args.JsonRestore(), checksums=ocp.args.JsonRestore()
                ),
            )
            meta, checksums = restored["meta"], restored["checksums"]
        except Exception as err:  # noqa: BLE001 - whatever Orbax raises, the step is unreadable
            raise UnreadableCheckpointError(f"meta or checksums unreadable: {err!r}") from err
        if not isinstance(meta, dict) or not isinstance(checksums, dict):
            raise UnreadableCheckpointError(
                f"meta and checksums must be JSON objects, got {type(meta).__name__} and "
                f"{type(checksums).__name__}"
            )
        missing = [key for key in required_meta if key not in meta]
        if missing:
            raise UnreadableCheckpointError(f"meta lacks required key(s) {missing}")
        if check_meta is not None:
            check_meta(meta)
        try:
            state = self._manager.restore(
                step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
            )["state"]
        except Exception as err:  # noqa: BLE001
            raise UnreadableCheckpointError(f"arrays unreadable: {err!r}") from err
        verify_checksums(state, checksums)
        return state, meta

    def restore_latest(
        self,
        abstract_state: Any,
        check_meta: Callable[[dict], None] | None = None,
        *,
        required_meta: tuple[str, ...] = (),
        start_fresh: bool = False,
    ) -> tuple[int, Any, dict] | None:
        """Restores the newest readable checkpoint, moving newer unreadable ones aside.

        Args:
            abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) or arrays giving the
                structure, dtypes and placement to restore into.
            check_meta: called with the stored meta before the arrays are read; it raises
                `IncompatibleCheckpointError` when the checkpoint cannot continue this run.
            required_meta: meta keys a readable checkpoint must have.
            start_fresh: when checkpoints exist but none is readable, move them all aside and
                return None instead of raising NoReadableCheckpointError.

        Returns:
            (step, state, meta), or None when there is no checkpoint (or none readable and
            `start_fresh`).
        """
        failures = []
        for step in reversed(self.steps()):
            try:
                state, meta = self.restore_step(
                    step, abstract_state, required_meta=required_meta, check_meta=check_meta
                )
            except UnreadableCheckpointError as err:
                log.warning("checkpoint step %d is unreadable: %s", step, err)
                failures.append((step, str(err)))
                continue
            for bad, reason in failures:
                self._set_aside(bad, reason)
            return step, state, meta
        if failures and not start_fresh:
            listed = "; ".join(f"step {step}: {reason}" for step, reason in failures)
            raise NoReadableCheckpointError(
                f"{self.directory} holds checkpoints but none is readable ({listed}). Nothing was "
                "changed. To discard them and start from step 0 (they are moved to "
                f"{self.directory / UNREADABLE_DIR}, not deleted), set "
                "train.start_fresh_if_unreadable=True."
            )
        for bad, reason in failures:
            self._set_aside(bad, reason)
        return None

    def _set_aside(self, step: int, reason: str) -> None:
        """Renames step directory `step` to `unreadable/<step>[.n]` and records why there."""
        if jax.process_index() == 0:
            aside = self.directory / UNREADABLE_DIR
            aside.mkdir(parents=True, exist_ok=True)
            target, n = aside / str(step), 1
            while target.exists():
                n += 1
                target = aside / f"{step}.{n}"
            os.rename(self.directory / str(step), target)
            (target / REASON_FILE).write_text(reason + "\n")
            log.warning("checkpoint step %d moved aside to %s: %s", step, target, reason)
        multihost_utils.sync_global_devices(f"rljax_set_aside_{step}")
        self._manager.reload()

    def wait(self) -> None:
        """Blocks until an asynchronous save has finished."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


def cached(
    directory: str | epath.Path,
    abstract: Any,
    build: Callable[[], tuple[Any, dict]],
    *,
    step: int,
    what: str,
) -> Any:
    """Returns the arrays cached in `directory`, or builds, saves and verifies them.

    The cache follows the run's checkpoint rules: it is locked against a concurrent writer (a
    second process waits for the first, then loads what it saved), an
    unreadable entry is moved aside (never deleted) and rebuilt, and "saved" is logged only after
    the new entry has been restored and its checksums verified.

    Args:
        directory: the cache directory (one Orbax checkpoint at `step`).
        abstract: `jax.ShapeDtypeStruct`s (with shardings) of the cached pytree.
        build: computes (arrays, meta) when the cache holds nothing readable.
        step: the step number the entry is stored under.
        what: a name for the log lines ("SFT warm start").

    Returns:
        The cached or newly built arrays.
    """
    directory = epath.Path(os.path.abspath(directory))
    with RunLock(directory, wait=True):
        checkpointer = Checkpointer(directory, max_to_keep=1, async_save=False)
        try:
            restored = checkpointer.restore_latest(abstract, start_fresh=True)
            if restored is not None:
                log.info("%s loaded from %s", what, directory)
                return restored[1]
            value, meta = build()
            checkpointer.save(step, value, meta, force=True)
            checkpointer.restore_step(step, abstract)
            log.info("%s saved to %s (restored and verified)", what, directory)
            return value
        finally:
            checkpointer.close()


def abstract_like(tree: Any) -> Any:
    """ShapeDtypeStructs (keeping shardings) describing `tree`, for `restore_latest`."""
    return jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=getattr(x, "sharding", None)),
        tree,
    )


def check_compatible(saved: dict, current: dict, keys: tuple[str, ...]) -> None:
    """Raises IncompatibleCheckpointError if `saved` and `current` config differ at dotted `keys`."""
    for key in keys:
        a, b = saved, current
        for part in key.split("."):
            a = a.get(part) if isinstance(a, dict) else None
            b = b.get(part) if isinstance(b, dict) else None
        if a != b:
            raise IncompatibleCheckpointError(
                f"checkpoint config {key}={json.dumps(a)} differs from this run's "
                f"{key}={json.dumps(b)}; use a fresh run directory or matching settings"
            )


class PreemptionGuard:
    """Turns SIGTERM into a flag the loop polls, so it can save before exiting.

    Use as a context manager around the training loop; `requested` becomes True after SIGTERM.
    """

    def __init__(self):
        self.requested = False
        self._previous = None

    def _handle(self, signum, frame):
        del signum, frame
        self.requested = True

    def __enter__(self) -> "PreemptionGuard":
        self._previous = signal.signal(signal.SIGTERM, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        signal.signal(signal.SIGTERM, self._previous)
