"""Orbax checkpoints of the whole train state, with resume from the latest complete one.

A checkpoint holds two items: `state` (the array pytree: parameters, optimiser state, step, PRNG key,
method state) and `meta` (JSON: the resolved config, the data iterator state, the metric history
cursor). Orbax writes each step into a temporary directory and renames it when complete, so a save
interrupted by SIGKILL leaves no directory that `latest_step` would pick; a step directory that is
present but unreadable (truncated by a crashed file system, say) is skipped in favour of the
previous one, with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import signal
from typing import Any, Callable

import jax
import orbax.checkpoint as ocp
from etils import epath

log = logging.getLogger(__name__)


class IncompatibleCheckpointError(ValueError):
    """A checkpoint was written by a run whose config differs in a way that changes the state."""


class Checkpointer:
    """Periodic, asynchronous, keep-last-N checkpoints of one run directory.

    Args:
        directory: where step directories are written.
        max_to_keep: how many recent checkpoints to keep.
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
        # Orbax needs an absolute path (a relative run directory is resolved against the cwd).
        self.directory = epath.Path(os.path.abspath(directory))
        self.every = every
        options = ocp.CheckpointManagerOptions(
            max_to_keep=max_to_keep,
            enable_async_checkpointing=async_save,
            cleanup_tmp_directories=True,
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "meta")
        )

    def steps(self) -> list[int]:
        return sorted(self._manager.all_steps())

    def save(self, step: int, state: Any, meta: dict, *, force: bool = False) -> bool:
        """Saves `state` and `meta` at `step` if it is due (or `force`); returns whether it saved."""
        due = force or (self.every > 0 and step % self.every == 0)
        if not due or step in self._manager.all_steps():
            return False
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state),
                meta=ocp.args.JsonSave(meta),
            ),
            force=True,
        )
        return True

    def restore_latest(
        self, abstract_state: Any, check_meta: Callable[[dict], None] | None = None
    ) -> tuple[int, Any, dict] | None:
        """Restores the newest readable checkpoint, or returns None when there is none.

        Args:
            abstract_state: a pytree of `jax.ShapeDtypeStruct` (with shardings) or arrays giving the
                structure, dtypes and placement to restore into.
            check_meta: called with the stored meta before the arrays are read; it raises
                `IncompatibleCheckpointError` when the checkpoint cannot continue this run.

        Returns:
            (step, state, meta) or None.
        """
        self.wait()
        for step in reversed(self.steps()):
            try:
                meta = self._manager.restore(
                    step, args=ocp.args.Composite(meta=ocp.args.JsonRestore())
                )["meta"]
            except Exception as err:  # noqa: BLE001 - any unreadable step is skipped, not fatal
                log.warning("checkpoint step %d is unreadable (%s); trying an older one", step, err)
                continue
            if check_meta is not None:
                check_meta(meta)
            try:
                restored = self._manager.restore(
                    step, args=ocp.args.Composite(state=ocp.args.StandardRestore(abstract_state))
                )
            except IncompatibleCheckpointError:
                raise
            except Exception as err:  # noqa: BLE001
                log.warning("checkpoint step %d is unreadable (%s); trying an older one", step, err)
                continue
            return step, restored["state"], meta
        return None

    def wait(self) -> None:
        """Blocks until an asynchronous save has finished."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.wait_until_finished()
        self._manager.close()


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
