"""A small decoder and a full-forward oracle (no cache) shared by the sampling tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rljax.models import Decoder, ModelConfig

ORACLE_WIDTH = 64


@pytest.fixture(scope="session")
def tiny_model():
    """A 2-layer tiny Qwen3-style decoder with a 64-token vocabulary."""
    return Decoder(ModelConfig.tiny(vocab_size=64, num_layers=2), rngs=nnx.Rngs(0))


@pytest.fixture(scope="session")
def full_logits(tiny_model):
    """Returns f(sequences) -> list of float32 [len_b, V] logits by one uncached forward pass."""
    graphdef, state = nnx.split(tiny_model)

    @jax.jit
    def forward(tokens, segment_ids):
        return nnx.merge(graphdef, state).logits(tokens, segment_ids=segment_ids)

    def run(sequences):
        tokens = np.zeros((len(sequences), ORACLE_WIDTH), np.int32)
        segment_ids = np.zeros_like(tokens)
        for row, seq in enumerate(sequences):
            tokens[row, : len(seq)] = seq
            segment_ids[row, : len(seq)] = 1
        logits = np.asarray(forward(jnp.asarray(tokens), jnp.asarray(segment_ids)))
        return [logits[row, : len(seq)] for row, seq in enumerate(sequences)]

    return run
