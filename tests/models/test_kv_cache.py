"""KV cache: cached prefill/decode and row-specific appends equal a fresh forward of the whole sequence."""

import jax.numpy as jnp
import numpy as np
import pytest

from rljax.models import init_cache

SEQUENCES = np.array([[5, 9, 2, 33, 7, 1, 60, 12], [3, 3, 8, 40, 22, 17, 0, 9]], np.int32)
MAX_LEN = 12


def _right_padded(rows: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """(tokens, segment_ids) of rows right-padded to `width`; segment id 1 for tokens, 0 for padding."""
    tokens = np.zeros((len(rows), width), np.int32)
    segment_ids = np.zeros((len(rows), width), np.int32)
    for b, row in enumerate(rows):
        tokens[b, : len(row)] = row
        segment_ids[b, : len(row)] = 1
    return tokens, segment_ids


def _run_in_chunks(call, model, config, chunks: list[list[np.ndarray]]) -> list[list[np.ndarray]]:
    """Feeds each row its chunks through one cache; returns each row's hidden states in order."""
    cache = init_cache(config, len(chunks[0]), MAX_LEN)
    outputs = [[] for _ in chunks[0]]
    for step in chunks:
        width = max(1, max(len(row) for row in step))
        tokens, segment_ids = _right_padded(step, width)
        hidden, cache = call(model, tokens, segment_ids=segment_ids, cache=cache)
        for b, row in enumerate(step):
            outputs[b].extend(np.asarray(hidden[b, : len(row)]))
    return outputs, cache


def test_prefill_then_decode_equals_full_forward(make_config, make_model, call):
    config = make_config()
    model = make_model(config)
    full, _ = call(model, SEQUENCES)
    # Row 0: prompt of 5, then 3 decode steps; row 1: prompt of 3, then 5 decode steps.
    chunks = [[SEQUENCES[0, :5], SEQUENCES[1, :3]]]
    for step in range(5):
        chunks.append([SEQUENCES[0, 5 + step : 6 + step], SEQUENCES[1, 3 + step : 4 + step]])
    outputs, cache = _run_in_chunks(call, model, config, chunks)
    for b in range(2):
        np.testing.assert_allclose(np.stack(outputs[b]), full[b], atol=1e-5)
    np.testing.assert_array_equal(cache.end, [8, 8])
    np.testing.assert_array_equal(cache.next_position, [8, 8])
    np.testing.assert_array_equal(cache.segment_ids, np.repeat([[1] * 8 + [0] * 4], 2, axis=0))


def test_row_specific_appends_equal_fresh_forward(make_config, make_model, run):
    config = make_config()
    model = make_model(config)
    # A multi-turn step: prompts, two decoded tokens each, an observation appended to row 0 only
    # (row 1 appends nothing in that call), then one more decoded token each.
    s0, s1 = SEQUENCES
    chunks = [
        [s0[:2], s1[:3]],
        [s0[2:3], s1[3:4]],
        [s0[3:4], s1[4:5]],
        [s0[4:7], s1[5:5]],
        [s0[7:8], s1[5:6]],
    ]
    cache = init_cache(config, 2, MAX_LEN)
    outputs = [[], []]
    ends = []
    for step in chunks:
        tokens, segment_ids = _right_padded(step, max(len(row) for row in step))
        hidden, cache = run(model, tokens, segment_ids=segment_ids, cache=cache)
        ends.append(np.asarray(cache.end).tolist())
        for b, row in enumerate(step):
            outputs[b].extend(np.asarray(hidden[b, : len(row)]))
    assert ends == [[2, 3], [3, 4], [4, 5], [7, 5], [8, 6]]
    np.testing.assert_array_equal(cache.next_position, [8, 6])
    full0, _ = run(model, s0[None])
    full1, _ = run(model, s1[None, :6])
    np.testing.assert_allclose(np.stack(outputs[0]), full0[0], atol=1e-5)
    np.testing.assert_allclose(np.stack(outputs[1]), full1[0], atol=1e-5)


def test_packed_prefill_then_decode_continues_the_last_segment(make_config, make_model, run):
    config = make_config()
    model = make_model(config)
    a, b = SEQUENCES[0, :4], SEQUENCES[1, :5]
    packed = np.concatenate([a, b[:4]])[None]
    segment_ids = np.array([[1] * 4 + [2] * 4], np.int32)
    cache = init_cache(config, 1, MAX_LEN)
    hidden, cache = run(model, packed, segment_ids=segment_ids, cache=cache)
    step, cache = run(model, b[None, 4:], segment_ids=np.array([[2]], np.int32), cache=cache)
    alone_b, _ = run(model, b[None])
    alone_a, _ = run(model, a[None])
    np.testing.assert_allclose(hidden[0, :4], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(hidden[0, 4:], alone_b[0, :4], atol=1e-5)
    np.testing.assert_allclose(step[0], alone_b[0, 4:], atol=1e-5)
    assert int(cache.next_position[0]) == 5


def test_explicit_positions_carry_into_default_decode_positions(make_config, make_model, run):
    config = make_config()
    model = make_model(config)
    offset = np.arange(8, dtype=np.int32)[None] + 10
    full, _ = run(model, SEQUENCES[:1], positions=offset)
    cache = init_cache(config, 1, MAX_LEN)
    prefill, cache = run(model, SEQUENCES[:1, :6], positions=offset[:, :6], cache=cache)
    decoded = [prefill[0]]
    for t in (6, 7):
        hidden, cache = run(model, SEQUENCES[:1, t : t + 1], cache=cache)
        decoded.append(hidden[0])
    np.testing.assert_allclose(np.concatenate(decoded), full[0], atol=1e-5)
    assert int(cache.next_position[0]) == 18


def test_scanned_remat_model_decodes_like_full_forward(make_config, make_model, run):
    config = make_config(scan_layers=True, remat=True)
    model = make_model(config)
    full, _ = run(model, SEQUENCES)
    cache = init_cache(config, 2, MAX_LEN)
    prefill, cache = run(model, SEQUENCES[:, :6], cache=cache)
    decoded = [prefill]
    for t in (6, 7):
        hidden, cache = run(model, SEQUENCES[:, t : t + 1], cache=cache)
        decoded.append(hidden)
    np.testing.assert_allclose(np.concatenate(decoded, axis=1), full, atol=1e-5)


def test_write_past_max_len_raises(make_config, make_model, run):
    config = make_config()
    model = make_model(config)
    with pytest.raises(ValueError, match="max_len=6"):
        model(jnp.asarray(SEQUENCES[:, :7]), cache=init_cache(config, 2, 6))
    _, cache = run(model, SEQUENCES[:, :5], cache=init_cache(config, 2, 6))
    with pytest.raises(ValueError, match=r"rows \[0\] would hold \[7\]"):
        model(
            jnp.asarray(SEQUENCES[:, :2]),
            segment_ids=jnp.asarray([[1, 1], [1, 0]], jnp.int32),
            cache=cache,
        )
    with pytest.raises(Exception, match="KV cache overflow"):
        run(model, SEQUENCES[:, :2], cache=cache)[0].block_until_ready()


def test_cache_of_the_wrong_batch_raises(make_config, make_model):
    config = make_config()
    model = make_model(config)
    with pytest.raises(ValueError, match="cache k/v must have shape"):
        model(jnp.asarray(SEQUENCES), cache=init_cache(config, 3, MAX_LEN))
    with pytest.raises(ValueError, match="max_len"):
        init_cache(config, 2, 0)
