"""The MiniShell world of echo.md section 8.1: key=value files drawn once per experiment seed.

`make_world(seed)` lays out `num_files` files `f00`, `f01`, ... in `/data`, each holding
`lines_per_file` lines `key=value`; the keys `k00`, `k01`, ... are dealt to the files at random
(each key in exactly one file) and every value is a random string over [a-z0-9]. The world is a
pure function of the seed, so every episode of an experiment sees the same, learnable files.
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np

ROOT = "/data"
VALUE_ALPHABET = string.ascii_lowercase + string.digits
_WORLD_STREAM = 0x5EED  # separates the world's random stream from the per-instance streams


@dataclasses.dataclass(frozen=True)
class World:
    """A drawn world.

    Attributes:
        seed: the experiment seed it was drawn from.
        files: absolute path -> text ("k17=ab3x\\n..."), in file order.
        key_file: key -> file name (e.g. "f03").
        values: key -> value.
    """

    seed: int
    files: dict[str, str]
    key_file: dict[str, str]
    values: dict[str, str]

    @property
    def keys(self) -> list[str]:
        """All keys, sorted."""
        return sorted(self.values)

    @property
    def file_names(self) -> list[str]:
        """All file names (without the directory), sorted."""
        return sorted(path.rsplit("/", 1)[1] for path in self.files)


def make_world(
    seed: int, *, num_files: int = 20, lines_per_file: int = 5, value_chars: int = 4
) -> World:
    """Draws the world of experiment `seed` (echo.md section 8.1).

    Args:
        seed: experiment seed (non-negative int).
        num_files: number of files in /data (the spec: 20).
        lines_per_file: key=value lines per file (the spec: 5); there are num_files *
            lines_per_file keys.
        value_chars: length of each value (the spec: 4).

    Returns:
        The world; equal arguments give equal worlds.
    """
    for name, value, minimum in (
        ("seed", seed, 0),
        ("num_files", num_files, 1),
        ("lines_per_file", lines_per_file, 1),
        ("value_chars", value_chars, 1),
    ):
        if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < minimum:
            raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    rng = np.random.default_rng([_WORLD_STREAM, int(seed)])
    num_keys = num_files * lines_per_file
    keys = [f"k{i:0{max(2, len(str(num_keys - 1)))}d}" for i in range(num_keys)]
    names = [f"f{i:0{max(2, len(str(num_files - 1)))}d}" for i in range(num_files)]
    letters = rng.integers(len(VALUE_ALPHABET), size=(num_keys, value_chars))
    values = {key: "".join(VALUE_ALPHABET[c] for c in row) for key, row in zip(keys, letters)}
    dealt = [keys[i] for i in rng.permutation(num_keys)]
    files, key_file = {}, {}
    for f, name in enumerate(names):
        chunk = dealt[f * lines_per_file : (f + 1) * lines_per_file]
        files[f"{ROOT}/{name}"] = "".join(f"{key}={values[key]}\n" for key in chunk)
        key_file.update({key: name for key in chunk})
    return World(int(seed), files, key_file, values)
