"""Two local processes joined by `initialize` compute the loss and gradient of one process."""

import json
import os
import pathlib
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from flax import nnx
from sharded_loss import TOKENS, mean_logprob_loss, tiny_config

from rljax.models import Decoder

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("localhost", 0))
        return sock.getsockname()[1]


def _last_json_line(text: str) -> dict:
    return json.loads([line for line in text.splitlines() if line.startswith("{")][-1])


@pytest.mark.slow  # two fresh JAX processes compile the sharded step: ~45 s on 2 cores
def test_two_processes_compute_the_single_process_loss(tmp_path):
    graphdef, state = nnx.split(Decoder(tiny_config(), rngs=nnx.Rngs(0)))
    want_loss, want_grads = jax.jit(
        jax.value_and_grad(lambda s, t: mean_logprob_loss(nnx.merge(graphdef, s), t))
    )(state, TOKENS)
    want_embedding_grad = np.asarray(want_grads["embedding"].get_value())

    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(HERE)]))
    coordinator = f"localhost:{_free_port()}"
    logs = [(tmp_path / f"out{rank}.txt", tmp_path / f"err{rank}.txt") for rank in range(2)]
    workers = []
    for rank, (out_path, err_path) in enumerate(logs):
        # files, not pipes: a worker blocked on a full pipe would stall its peer inside a collective
        with open(out_path, "w") as out, open(err_path, "w") as err:
            workers.append(
                subprocess.Popen(
                    [
                        sys.executable,
                        str(HERE / "multihost_worker.py"),
                        coordinator,
                        "2",
                        str(rank),
                        "auto",
                    ],
                    env=env,
                    stdout=out,
                    stderr=err,
                )
            )
    try:
        codes = [worker.wait(timeout=300) for worker in workers]
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
    assert codes == [0, 0], "\n".join(err.read_text()[-3000:] for _, err in logs)
    outputs = [_last_json_line(out.read_text()) for out, _ in logs]

    covered = np.zeros(want_embedding_grad.shape, bool)
    for out in outputs:
        assert out["process_count"] == 2 and out["local_device_count"] == 4
        assert out["mesh"] == {"data": 2, "fsdp": 4, "tensor": 1}
        np.testing.assert_allclose(out["loss"], float(want_loss), rtol=1e-5)
        for shard in out["embedding_grad_shards"]:
            data = np.asarray(shard["data"])
            window = tuple(
                slice(start, start + size) for start, size in zip(shard["start"], data.shape)
            )
            np.testing.assert_allclose(data, want_embedding_grad[window], atol=1e-5)
            covered[window] = True
    assert covered.all()
