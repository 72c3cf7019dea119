"""A DecodeSession over a model sharded on 8 fake CPU devices decodes what the unsharded model decodes."""

import jax
import numpy as np
import pytest
from flax import nnx
from sampling_oracles import log_softmax

from rljax.models import Decoder, ModelConfig
from rljax.parallel import make_mesh, shard_model
from rljax.sampling import DecodeSession, Temperature

PROMPTS = [
    [1, 2, 3, 4, 5],
    [7, 8],
    [9, 10, 11, 12, 13, 14, 15, 16, 17],
    [20, 21, 22],
    [30],
    [31, 32],
]


@pytest.mark.parametrize("batch_size,rows_split", [(4, True), (2, False)])
def test_sharded_session_matches_full_forward(full_logits, batch_size, rows_split):
    mesh = make_mesh("data=2,fsdp=2,tensor=2")
    model = shard_model(
        Decoder(ModelConfig.tiny(vocab_size=64, num_layers=2), rngs=nnx.Rngs(0)), mesh
    )
    prompts = PROMPTS[:batch_size]
    session = DecodeSession(
        model, batch_size=batch_size, max_len=32, strategy=Temperature(1.0), key=jax.random.key(7)
    )
    # rows are split over data x fsdp = 4 devices when the batch divides them, else replicated
    shard_rows = {s.data.shape[1] for s in session.cache.k.addressable_shards}
    assert shard_rows == ({batch_size // 4} if rows_split else {batch_size})
    session.prefill(prompts)
    first = session.generate(
        max_new_tokens=[6] * batch_size, stop_tokens=[()] * batch_size, active=[True] * batch_size
    )
    session.append([[40, 41]] + [[]] * (batch_size - 1))
    second = session.generate(
        max_new_tokens=[4] * batch_size, stop_tokens=[()] * batch_size, active=[True] * batch_size
    )
    chunks = [[40, 41]] + [[]] * (batch_size - 1)
    sequences = [p + a.tokens + c + b.tokens for p, a, c, b in zip(prompts, first, chunks, second)]
    for prompt, a, chunk, b, logits in zip(prompts, first, chunks, second, full_logits(sequences)):
        log_probs = log_softmax(logits)
        start = len(prompt) - 1
        np.testing.assert_allclose(a.logprobs, log_probs[start + np.arange(6), a.tokens], atol=1e-4)
        start += len(a.tokens) + len(chunk)
        np.testing.assert_allclose(b.logprobs, log_probs[start + np.arange(4), b.tokens], atol=1e-4)
