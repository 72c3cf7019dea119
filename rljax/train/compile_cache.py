"""The persistent XLA compilation cache: compiled programs kept on disk between processes.

A run compiles its sampler, forward, prepare and update once per shape; on a small CPU model that
is most of the first step (about 10 s of a 0.4 s/step run). With the cache on, a second process
running the same programs (a resumed run, another seed, the next benchmark run) loads them instead.
Reading a cached executable gives the same program, so results are unchanged.

The experiment CLI turns it on by default; `RLJAX_COMPILATION_CACHE=off` (or `--no-compile-cache`
where a command has it) turns it off, and `RLJAX_COMPILATION_CACHE=<dir>` moves it.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator

import jax

ENV = "RLJAX_COMPILATION_CACHE"
OFF = ("off", "0", "false", "none", "")
DEFAULT_DIR = os.path.join(os.path.expanduser("~"), ".cache", "rljax", "xla")
_SETTINGS = (
    "jax_compilation_cache_dir",
    "jax_persistent_cache_min_compile_time_secs",
    "jax_persistent_cache_min_entry_size_bytes",
)


def default_directory() -> str | None:
    """The cache directory `RLJAX_COMPILATION_CACHE` names (default `~/.cache/rljax/xla`), or None
    when it says off ("off", "0", "false", "none" or empty)."""
    value = os.environ.get(ENV)
    if value is None:
        return DEFAULT_DIR
    return None if value.strip().lower() in OFF else value


def enable(directory: str | os.PathLike | None = None) -> str | None:
    """Turns the persistent cache on for this process (every compiled program is kept, however
    small or fast to compile); returns the directory, or None when it stays off.

    Args:
        directory: where to keep the programs (None: `default_directory()`). A cache directory
            already set in JAX's config (e.g. `JAX_COMPILATION_CACHE_DIR`) is kept as it is.
    """
    if jax.config.jax_compilation_cache_dir:
        return jax.config.jax_compilation_cache_dir
    directory = default_directory() if directory is None else os.fspath(directory)
    if directory is None:
        return None
    _apply((directory, 0.0, 0))
    return directory


@contextlib.contextmanager
def enabled(directory: str | os.PathLike) -> Iterator[None]:
    """`enable(directory)` for the block; the process's previous settings are restored on exit."""
    before = tuple(getattr(jax.config, name) for name in _SETTINGS)
    enable(directory)
    try:
        yield
    finally:
        _apply(before)


def _apply(values: tuple) -> None:
    for name, value in zip(_SETTINGS, values):
        jax.config.update(name, value)
    # JAX sets its cache up at the first compilation: make a change take effect in this process.
    try:
        from jax._src import compilation_cache

        compilation_cache.reset_cache()
    except (ImportError, AttributeError):
        pass
