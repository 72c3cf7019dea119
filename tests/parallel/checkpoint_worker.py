"""One process of the cross-process-count checkpoint test (run by `rljax.experiments.launch`).

Usage: python checkpoint_worker.py save|restore DIRECTORY

Builds a train-state-like tree on the mesh data=2,fsdp=4,tensor=1 (8 devices in all, over however
many processes the launcher started): a matrix sharded over the data axes, a replicated vector and
a scalar. `save` writes it at step 1 with `rljax.train.checkpoint.Checkpointer`; `restore` reads
step 1 back with the run's verification (checksums included; an unreadable step raises) and prints,
on process 0, one JSON line with the process count, the saving run's process count and the
restored values.
"""

import json
import sys

from rljax import parallel


def main() -> None:
    mode, directory = sys.argv[1], sys.argv[2]
    if mode not in ("save", "restore"):
        raise SystemExit(f"mode must be 'save' or 'restore', got {mode!r}")
    parallel.initialize()

    import jax
    import numpy as np
    from jax.sharding import NamedSharding, PartitionSpec

    from rljax.parallel import DATA_AXES, multihost
    from rljax.train import checkpoint

    mesh = parallel.make_mesh("data=2,fsdp=4,tensor=1")
    rows = NamedSharding(mesh, PartitionSpec(DATA_AXES))
    replicated = NamedSharding(mesh, PartitionSpec())
    state = {
        "w": multihost.place(np.arange(8 * 3, dtype=np.float32).reshape(8, 3), rows),
        "b": multihost.place(np.asarray([0.5, -1.0, 2.0], np.float32), replicated),
        "step": multihost.place(np.asarray(7, np.int32), replicated),
    }
    ckpt = checkpoint.Checkpointer(directory, every=1, async_save=False)
    try:
        if mode == "save":
            assert ckpt.save(1, state, {"processes": jax.process_count()}, force=True)
            ckpt.wait()
            return
        restored, meta = ckpt.restore_step(1, checkpoint.abstract_like(state))
    finally:
        ckpt.close()
    # `to_host` of an array sharded across processes is a collective: every process calls it.
    values = {key: multihost.to_host(value).tolist() for key, value in restored.items()}
    if multihost.is_primary():
        print(
            json.dumps({"processes": jax.process_count(), "saved_by": meta["processes"], **values})
        )
    multihost.sync("checkpoint_worker_done")


if __name__ == "__main__":
    main()
