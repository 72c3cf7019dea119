"""grain pipelines of prompt batches: a batch is a list of P tasks.

A source is any random-access sequence of tasks: a family read directly (`FamilySource`, index ->
`family.generate(split, index)`), a TFDS dataset written by `build_task_dataset` (`load_tasks`),
or an external dataset through `ExternalQA` (a family). `task_batches` shards the source across
processes, shuffles it with a seed (a fresh order every epoch), repeats it and batches it; the
iterator's `get_state()` is a small dict that `set_state` restores exactly, so a run resumed from a
checkpoint sees the same prompts it would have seen without stopping.

In a multi-process run each process reads only its own rows of every batch: batch k of the stream
is the same list of tasks whatever the number of processes, and process i of n reads its i-th
contiguous part (so the global batch, and everything computed from it, does not depend on how many
hosts share the run).
"""

from __future__ import annotations

from typing import Sequence

import grain

from rljax.envs.base import Task, TaskFamily, check_split


class FamilySource(Sequence[Task]):
    """The first `num_tasks` instances of one split of a family, generated on access.

    Args:
        family: any task family.
        split: "train" or "heldout".
        num_tasks: the epoch size; None takes `family.num_examples(split)` (finite families such
            as `ExternalQA`).
    """

    def __init__(self, family: TaskFamily, split: str, num_tasks: int | None = None):
        check_split(split)
        if num_tasks is None:
            if not hasattr(family, "num_examples"):
                raise ValueError(
                    f"num_tasks is required: {family.name!r} has no num_examples(split)"
                )
            num_tasks = family.num_examples(split)
        if num_tasks <= 0:
            raise ValueError(f"num_tasks must be > 0, got {num_tasks}")
        self.family, self.split, self.num_tasks = family, split, num_tasks

    def __len__(self) -> int:
        return self.num_tasks

    def __getitem__(self, index: int) -> Task:
        if not 0 <= index < self.num_tasks:
            raise IndexError(f"index {index} out of range for {self.num_tasks} tasks")
        return self.family.generate(self.split, index)


def task_dataset(
    source: Sequence[Task],
    *,
    batch_size: int,
    seed: int,
    shuffle: bool = True,
    num_epochs: int | None = None,
    shard_index: int = 0,
    shard_count: int = 1,
) -> grain.MapDataset:
    """This shard's part of batches of `batch_size` tasks: shuffle (new order each epoch) ->
    repeat -> batch -> shard.

    Shard i of n holds tasks [i * P / n, (i + 1) * P / n) of every global batch of P =
    `batch_size` tasks (grain reads only those), so the n shards of batch k together are exactly
    batch k of the unsharded stream.

    Args:
        source: random-access tasks (`FamilySource`, `load_tasks(...)`, ...).
        batch_size: P, tasks per global batch; an incomplete last batch is dropped.
        seed: shuffle seed.
        shuffle: shuffle each epoch (False keeps source order, e.g. for evaluation).
        num_epochs: passes over the source; None repeats forever.
        shard_index: this process's shard (e.g. `jax.process_index()`).
        shard_count: number of shards (e.g. `jax.process_count()`); must divide `batch_size`.

    Returns:
        A `grain.MapDataset` whose elements are lists of `batch_size // shard_count` tasks.
    """
    if batch_size <= 0:
        raise ValueError(f"batch_size must be > 0, got {batch_size}")
    if not 0 <= shard_index < shard_count:
        raise ValueError(
            f"need 0 <= shard_index < shard_count, got shard_index={shard_index}, shard_count={shard_count}"
        )
    if batch_size % shard_count:
        raise ValueError(
            f"batch_size={batch_size} tasks do not split evenly over {shard_count} processes"
        )
    if num_epochs is not None and num_epochs <= 0:
        raise ValueError(f"num_epochs must be > 0 or None, got {num_epochs}")
    dataset = grain.MapDataset.source(source)
    if len(dataset) < batch_size:
        raise ValueError(
            f"the source holds {len(dataset)} tasks, fewer than batch_size={batch_size}"
        )
    if shuffle:
        dataset = dataset.shuffle(seed=seed)
    parts = dataset.repeat(num_epochs).batch(
        batch_size // shard_count, drop_remainder=True, batch_fn=list
    )
    if shard_count == 1:
        return parts
    if num_epochs is not None:  # every shard stops after the same number of global batches
        parts = parts[: len(parts) // shard_count * shard_count]
    return parts[shard_index::shard_count]


def task_batches(
    source: Sequence[Task],
    *,
    read_options: grain.ReadOptions | None = None,
    **kwargs,
) -> grain.DatasetIterator:
    """An iterator over `task_dataset(source, **kwargs)` with exact `get_state`/`set_state`.

    Args:
        source: random-access tasks.
        read_options: grain's prefetch threads and buffer; the default (one thread, 16 batches
            ahead) bounds the memory held by prefetched prompts.
        **kwargs: `task_dataset` arguments (batch_size and seed are required).

    Returns:
        A `grain.DatasetIterator` yielding lists of P tasks; `get_state()` returns a dict.
    """
    options = read_options or grain.ReadOptions(num_threads=1, prefetch_buffer_size=16)
    return iter(task_dataset(source, **kwargs).to_iter_dataset(options))
