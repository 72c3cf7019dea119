"""Padding helpers (hand-worked) and the compiled extend/decode pair run with and without jit."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from sampling_oracles import log_softmax

from rljax.models import init_cache
from rljax.sampling import Temperature, bucket_size, decode, extend
from rljax.sampling.sampler import pad_chunks, pad_stop_tokens


@pytest.mark.parametrize(
    "n,minimum,maximum,want",
    [
        (0, 8, None, 8),
        (1, 1, None, 1),
        (3, 1, None, 4),
        (8, 8, None, 8),
        (9, 8, None, 16),
        (100, 16, 64 * 2, 128),
        (100, 16, 100, 100),
        (17, 16, 24, 24),
    ],
)
def test_bucket_size(n, minimum, maximum, want):
    assert bucket_size(n, minimum, maximum) == want


def test_bucket_size_rejects_sizes_over_the_maximum():
    with pytest.raises(ValueError, match="size 9 exceeds the maximum 8"):
        bucket_size(9, 4, 8)


def test_pad_chunks():
    tokens, segment_ids = pad_chunks([[5, 6, 7], [], [9]], batch=4, width=4, vocab_size=10)
    np.testing.assert_array_equal(tokens, [[5, 6, 7, 0], [0, 0, 0, 0], [9, 0, 0, 0], [0, 0, 0, 0]])
    np.testing.assert_array_equal(
        segment_ids, [[1, 1, 1, 0], [0, 0, 0, 0], [1, 0, 0, 0], [0, 0, 0, 0]]
    )
    assert tokens.dtype == segment_ids.dtype == np.int32
    with pytest.raises(
        ValueError, match=r"chunk 1 has token ids outside the vocabulary \[0, 10\): min -1"
    ):
        pad_chunks([[1], [-1]], batch=2, width=2, vocab_size=10)


def test_pad_stop_tokens():
    packed = pad_stop_tokens([{3, 1}, (), [7, 7, 2, 5, 4]], batch=4, vocab_size=8)
    np.testing.assert_array_equal(packed, [[1, 3, -1, -1], [-1] * 4, [2, 4, 5, 7], [-1] * 4])
    packed = pad_stop_tokens([{0, 1, 2, 3, 4}], batch=1, vocab_size=8)  # 5 ids: next bucket, 8
    np.testing.assert_array_equal(packed, [[0, 1, 2, 3, 4, -1, -1, -1]])
    with pytest.raises(ValueError, match=r"stop_tokens\[0\] has ids \[8\]"):
        pad_stop_tokens([{8}], batch=1, vocab_size=8)


@pytest.mark.parametrize(
    "jitted",
    [
        pytest.param(True, id="jit"),
        pytest.param(
            False, id="nojit", marks=pytest.mark.slow
        ),  # eager op-by-op dispatch: ~45 s on 2 cores
    ],
)
def test_extend_and_decode_match_full_forward(tiny_model, full_logits, jitted):
    prompts = [[3, 4, 5, 6], [8, 9]]
    graphdef, state = nnx.split(tiny_model)
    tokens, segment_ids = pad_chunks(prompts, batch=2, width=8, vocab_size=64)
    cache = init_cache(tiny_model.config, 2, 16)
    last_hidden = jnp.zeros((2, 128), jnp.float32)
    budget, stops = np.array([2, 1], np.int32), np.full((2, 1), -1, np.int32)

    def run():
        new_cache, hidden = extend(graphdef, state, cache, last_hidden, tokens, segment_ids)
        return decode(
            graphdef,
            state,
            new_cache,
            hidden,
            jax.random.key(0),
            budget,
            stops,
            strategy=Temperature(1.0),
            num_steps=2,
        )

    if jitted:
        result = run()
    else:
        with jax.disable_jit():
            result = run()
    lengths = np.asarray(result.lengths)
    np.testing.assert_array_equal(lengths, [2, 1])
    np.testing.assert_array_equal(np.asarray(result.cache.end), [6, 3])
    out_tokens, out_logprobs = np.asarray(result.tokens), np.asarray(result.logprobs)
    assert out_tokens[1, 1] == 0 and out_logprobs[1, 1] == 0.0
    sequences = [p + out_tokens[b, : lengths[b]].tolist() for b, p in enumerate(prompts)]
    for b, (prompt, logits) in enumerate(zip(prompts, full_logits(sequences))):
        rows = np.arange(len(prompt) - 1, len(prompt) - 1 + lengths[b])
        expected = log_softmax(logits[rows])[np.arange(lengths[b]), out_tokens[b, : lengths[b]]]
        np.testing.assert_allclose(out_logprobs[b, : lengths[b]], expected, atol=1e-4)
        # the returned last hidden state predicts the next token exactly as the full forward does
        np.testing.assert_allclose(
            np.asarray(result.last_hidden[b]) @ np.asarray(tiny_model.unembedding),
            logits[-1],
            atol=1e-3,
        )


def test_sampler_programs_hold_no_host_callback(tiny_model):
    # JAX does not keep a program with a host callback in its persistent compilation cache; the
    # sampler's cache writes are unchecked (the session checks on the host) so that a new process
    # loads its prefill and decode instead of compiling them. The model's own checked write does
    # hold one (the control: the check below can fail).
    graphdef, state = nnx.split(tiny_model)
    cache = init_cache(tiny_model.config, 2, 16)
    last_hidden = jnp.zeros((2, 128), jnp.float32)
    tokens, segment_ids = pad_chunks([[3, 4], [5]], batch=2, width=4, vocab_size=64)
    budget, stops = np.array([2, 1], np.int32), np.full((2, 4), -1, np.int32)
    programs = {
        "extend": extend.lower(graphdef, state, cache, last_hidden, tokens, segment_ids),
        "decode": decode.lower(
            graphdef,
            state,
            cache,
            last_hidden,
            jax.random.key(0),
            budget,
            stops,
            strategy=Temperature(1.0),
            num_steps=2,
        ),
        "checked model call": jax.jit(lambda t, c: tiny_model(t, cache=c)).lower(tokens, cache),
    }
    texts = {name: lowered.as_text() for name, lowered in programs.items()}
    assert "callback" in texts.pop("checked model call")
    for name, text in texts.items():
        assert "callback" not in text, f"{name} holds a host callback"
