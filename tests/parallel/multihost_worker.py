"""One process of the two-process test: joins the run, shards the tiny model, prints its loss as JSON.

Usage: python multihost_worker.py COORDINATOR NUM_PROCESSES PROCESS_ID MESH_SPEC
Each process sees 4 fake CPU devices; rows [4 * id, 4 * id + 4) of the global batch are its own.
"""

import json
import os
import sys

os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
os.environ["JAX_PLATFORMS"] = "cpu"

from rljax import parallel  # noqa: E402


def main() -> None:
    coordinator, num_processes, process_id, spec = (
        sys.argv[1],
        int(sys.argv[2]),
        int(sys.argv[3]),
        sys.argv[4],
    )
    assert parallel.initialize(coordinator, num_processes, process_id)

    import jax
    from flax import nnx
    from sharded_loss import TOKENS, mean_logprob_loss, tiny_config

    from rljax.models import Decoder

    mesh = parallel.make_mesh(spec)
    model = parallel.shard_model(Decoder(tiny_config(), rngs=nnx.Rngs(0)), mesh)
    graphdef, state = nnx.split(model)
    rows = TOKENS.shape[0] // num_processes
    tokens = parallel.shard_batch(TOKENS[process_id * rows : (process_id + 1) * rows], mesh)
    shardings = parallel.logical_to_mesh_sharding(state, mesh)
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    step = jax.jit(
        jax.value_and_grad(lambda s, t: mean_logprob_loss(nnx.merge(graphdef, s), t)),
        in_shardings=(shardings, parallel.batch_sharding(mesh)),
        out_shardings=(replicated, shardings),
    )
    loss, grads = step(state, tokens)
    embedding_grad = grads["embedding"][...]
    shards = [
        {"start": [index.start or 0 for index in shard.index], "data": shard.data.tolist()}
        for shard in embedding_grad.addressable_shards
    ]
    print(
        json.dumps(
            {
                "process_count": jax.process_count(),
                "local_device_count": jax.local_device_count(),
                "mesh": dict(mesh.shape),
                "loss": float(loss.addressable_data(0)),
                "embedding_grad_shards": shards,
            }
        )
    )


if __name__ == "__main__":
    main()
