"""Decoder building blocks against numpy references, segment semantics, remat and layer scanning."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rljax.models import Decoder, RopeScaling
from rljax.models.layers import (
    RMSNorm,
    apply_rope,
    attend,
    attend_cache,
    rope_inverse_frequencies,
)
from rljax.models.segments import attention_mask, default_positions

TOKENS = np.array([[5, 9, 2, 33, 7, 1, 60, 12], [3, 3, 8, 40, 22, 17, 0, 9]], np.int32)


@pytest.mark.parametrize("jit", [False, True])
def test_default_positions_hand_worked(jit):
    segment_ids = jnp.array([[0, 0, 1, 1, 1], [1, 1, 2, 2, 0], [1, 0, 1, 2, 0], [2, 2, 3, 0, 0]])
    prev_segment = jnp.array([0, 0, 0, 2])
    prev_next = jnp.array([0, 0, 0, 7])
    fn = jax.jit(default_positions) if jit else default_positions
    expected = [[0, 0, 0, 1, 2], [0, 1, 0, 1, 0], [0, 0, 1, 0, 0], [7, 8, 0, 0, 0]]
    np.testing.assert_array_equal(fn(segment_ids, prev_segment, prev_next), expected)


@pytest.mark.parametrize("jit", [False, True])
def test_attention_mask_hand_worked(jit):
    fn = jax.jit(attention_mask) if jit else attention_mask
    segments = jnp.array([[1, 1, 2, 0]])
    index = jnp.array([[0, 1, 2, 3]])
    expected = [[[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]]
    np.testing.assert_array_equal(fn(segments, index, segments), np.array(expected, bool))


def test_llama3_rope_frequencies_hand_worked():
    # theta=1e4, D=8: base frequencies 1, 0.1, 0.01, 0.001 with wavelengths 2*pi*(1, 10, 100, 1000).
    # original=64, low=1, high=4: keep wavelengths < 16, divide those > 64 by 8, interpolate between.
    scaling = RopeScaling(
        factor=8.0, low_freq_factor=1.0, high_freq_factor=4.0, original_max_position_embeddings=64
    )
    smooth = (64 / (2 * math.pi * 10) - 1) / 3
    expected = [1.0, (1 - smooth) * 0.1 / 8 + smooth * 0.1, 0.01 / 8, 0.001 / 8]
    np.testing.assert_allclose(rope_inverse_frequencies(8, 1e4, scaling), expected, rtol=1e-6)
    np.testing.assert_allclose(
        rope_inverse_frequencies(8, 1e4, None), [1.0, 0.1, 0.01, 0.001], rtol=1e-6
    )


@pytest.mark.parametrize("jit", [False, True])
def test_apply_rope_is_a_complex_rotation_of_half_pairs(jit):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 3, 4, 8)).astype(np.float32)
    angles = rng.normal(size=(2, 3, 4)).astype(np.float32) * 5
    rotated = (x[..., :4] + 1j * x[..., 4:]) * np.exp(1j * angles)[:, :, None, :]
    expected = np.concatenate([rotated.real, rotated.imag], axis=-1)
    fn = jax.jit(apply_rope) if jit else apply_rope
    np.testing.assert_allclose(fn(x, np.cos(angles), np.sin(angles)), expected, atol=1e-5)


@pytest.mark.parametrize("tokens", [3, 1])  # 1: the decode step's multiply-and-sum form
@pytest.mark.parametrize("jit", [False, True])
def test_attend_matches_numpy_grouped_query_attention(jit, tokens):
    rng = np.random.default_rng(1)
    q = rng.normal(size=(2, tokens, 4, 8)).astype(np.float32)
    k = rng.normal(size=(2, 5, 2, 8)).astype(np.float32)
    v = rng.normal(size=(2, 5, 2, 8)).astype(np.float32)
    mask = rng.random((2, tokens, 5)) < 0.6
    mask[:, :, 0] = True
    k_rep, v_rep = (
        np.repeat(k, 2, axis=2),
        np.repeat(v, 2, axis=2),
    )  # query head n uses kv head n // 2
    logits = np.einsum("btnd,bsnd->bnts", q, k_rep) / np.sqrt(8)
    logits = np.where(mask[:, None], logits, -np.inf)
    probs = np.exp(logits - logits.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    expected = np.einsum("bnts,bsnd->btnd", probs, v_rep)
    fn = jax.jit(attend) if jit else attend
    np.testing.assert_allclose(fn(q, k, v, mask), expected, atol=1e-5)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("jit", [False, True])
def test_attend_cache_equals_the_general_form(dtype, jit):
    # Attention over a [B, K, S, D] cache block: one new token (a decode step) takes its own form,
    # two go through the general path; both must equal `attend` on the [B, S, K, D] layout, run on
    # the same queries, including a row that sees no key (uniform).
    rng = np.random.default_rng(3)
    q = jnp.asarray(rng.normal(size=(3, 2, 4, 8)), dtype)
    k = jnp.asarray(rng.normal(size=(3, 6, 2, 8)), dtype)
    v = jnp.asarray(rng.normal(size=(3, 6, 2, 8)), dtype)
    mask = rng.random((3, 2, 6)) < 0.5
    mask[2] = False
    cached = jax.jit(attend_cache) if jit else attend_cache
    block_k, block_v = jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)  # [B, K, S, D]
    general = attend(q, k, v, mask)
    one = cached(q[:, 1:], block_k, block_v, mask[:, 1:])
    two = cached(q, block_k, block_v, mask)
    assert one.dtype == two.dtype == general.dtype == jnp.dtype(dtype)
    atol = 1e-6 if dtype == "float32" else 2e-2
    np.testing.assert_allclose(np.float32(one), np.float32(general[:, 1:]), atol=atol)
    np.testing.assert_allclose(np.float32(two), np.float32(general), atol=atol)
    uniform = np.repeat(np.float32(v[2]).mean(0), 2, axis=0)  # query head n reads kv head n // 2
    np.testing.assert_allclose(np.float32(one[2, 0]), uniform, atol=atol)


def test_rms_norm_matches_numpy():
    norm = RMSNorm(6, eps=1e-5, dtype="float32", param_dtype="float32", rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.arange(1.0, 7.0)
    x = np.random.default_rng(2).normal(size=(2, 3, 6)).astype(np.float32)
    expected = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-5) * np.arange(1.0, 7.0)
    np.testing.assert_allclose(norm(jnp.asarray(x)), expected, rtol=1e-5)


def test_packed_segments_equal_separate_forwards(make_config, make_model, run):
    model = make_model(make_config())
    a, b = TOKENS[0, :5], TOKENS[1, :3]
    packed = np.stack([np.concatenate([a, b]), np.concatenate([b, a])])
    segment_ids = np.array([[1] * 5 + [2] * 3, [4] * 3 + [9] * 5], np.int32)
    hidden, _ = run(model, packed, segment_ids=segment_ids)
    alone_a, _ = run(model, a[None])
    alone_b, _ = run(model, b[None])
    np.testing.assert_allclose(hidden[0, :5], alone_a[0], atol=1e-5)
    np.testing.assert_allclose(hidden[0, 5:], alone_b[0], atol=1e-5)
    np.testing.assert_allclose(hidden[1, :3], alone_b[0], atol=1e-5)
    np.testing.assert_allclose(hidden[1, 3:], alone_a[0], atol=1e-5)


def test_left_and_right_padding_equal_unpadded_forward(make_config, make_model, run):
    model = make_model(make_config())
    row, pad = TOKENS[0, :5], np.zeros(3, np.int32)
    padded = np.stack([np.concatenate([pad, row]), np.concatenate([row, pad])])
    segment_ids = np.stack([np.arange(8) >= 3, np.arange(8) < 5]).astype(np.int32)
    hidden, _ = run(model, padded, segment_ids=segment_ids)
    alone, _ = run(model, row[None])
    np.testing.assert_allclose(hidden[0, 3:], alone[0], atol=1e-5)
    np.testing.assert_allclose(hidden[1, :5], alone[0], atol=1e-5)
    assert np.isfinite(np.asarray(hidden)).all()


def test_explicit_positions_are_used(make_config, make_model, run):
    model = make_model(make_config())
    default, _ = run(model, TOKENS)
    same, _ = run(model, TOKENS, positions=np.broadcast_to(np.arange(8, dtype=np.int32), (2, 8)))
    shifted, _ = run(
        model, TOKENS, positions=np.broadcast_to(np.arange(8, dtype=np.int32) + 3, (2, 8))
    )
    np.testing.assert_allclose(same, default, atol=1e-6)
    # RoPE attention depends only on relative positions, so a uniform shift changes nothing.
    np.testing.assert_allclose(shifted, default, atol=1e-4)
    assert not np.allclose(
        run(model, TOKENS, positions=np.array([[0, 2, 4, 6, 8, 10, 12, 14]] * 2, np.int32))[0],
        default,
        atol=1e-3,
    )


def test_unembedding_tied_and_untied(make_config, make_model):
    tied = make_model(make_config())
    np.testing.assert_array_equal(tied.unembedding, np.asarray(tied.embedding[...]).T)
    untied = make_model(make_config(tie_embeddings=False))
    np.testing.assert_array_equal(untied.unembedding, untied.lm_head[...])
    hidden, logits = nnx.jit(lambda model, tokens: (model(tokens)[0], model.logits(tokens)))(
        untied, jnp.asarray(TOKENS)
    )
    assert logits.dtype == jnp.float32 and logits.shape == (2, 8, 61)
    np.testing.assert_allclose(
        logits, np.einsum("bth,hv->btv", hidden, untied.lm_head[...]), atol=1e-5
    )


def _restacked(plain: Decoder, config) -> Decoder:
    """The same parameters as `plain`, in a Decoder built from `config` (layers stacked if it scans)."""
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0))))
    source = {path: var.get_value() for path, var in nnx.to_flat_state(nnx.state(plain))}
    flat = []
    for path, var in nnx.to_flat_state(state):
        if config.scan_layers and path[0] == "layers":
            value = jnp.stack([source[("layers", i) + path[1:]] for i in range(config.num_layers)])
        else:
            value = source[path]
        flat.append((path, var.replace(value)))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


def test_remat_and_scan_layers_match_plain_model(make_config, make_model, run):
    config = make_config()
    plain = make_model(config)
    segment_ids = np.array([[1] * 8, [0, 0, 1, 1, 1, 2, 2, 2]], np.int32)
    expected, _ = run(plain, TOKENS, segment_ids=segment_ids)
    for remat, scan_layers in [(True, False), (False, True), (True, True)]:
        other = _restacked(plain, config.replace(remat=remat, scan_layers=scan_layers))
        np.testing.assert_allclose(
            run(other, TOKENS, segment_ids=segment_ids)[0], expected, atol=1e-5
        )


def test_remat_scanned_gradients_match_plain_model(make_config, make_model):
    config = make_config()
    plain = make_model(config)
    other = _restacked(plain, config.replace(remat=True, scan_layers=True))
    tokens = jnp.asarray(TOKENS)

    @nnx.jit
    def grads(model):
        return nnx.grad(lambda model: jnp.mean(jax.nn.log_softmax(model.logits(tokens))[..., 0]))(
            model
        )

    plain_grads, other_grads = grads(plain), grads(other)
    np.testing.assert_allclose(
        other_grads["embedding"][...], plain_grads["embedding"][...], atol=1e-5
    )
    for index in range(config.num_layers):
        np.testing.assert_allclose(
            other_grads["layers"]["attn"]["q_proj"][...][index],
            plain_grads["layers"][index]["attn"]["q_proj"][...],
            atol=1e-5,
        )


def test_parameters_carry_only_the_agreed_logical_axes(make_config):
    allowed = {"vocab", "embed", "mlp", "heads", "kv_heads", "head_dim", "layers", "norm"}
    for config in (
        make_config(),
        make_config(
            family="qwen2", qkv_bias=True, qk_norm=False, tie_embeddings=False, scan_layers=True
        ),
    ):
        model = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0)))
        for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
            axes = var.get_metadata()["out_sharding"]
            assert len(axes) == len(var.get_value().shape), path
            assert set(axes) <= allowed, path


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(tokens=np.zeros((8,), np.int32)), "tokens"),
        (dict(tokens=np.zeros((2, 8), np.float32)), "tokens"),
        (dict(tokens=np.full((2, 8), 61, np.int32)), r"\[0, 61\)"),
        (dict(tokens=TOKENS, segment_ids=np.ones((2, 7), np.int32)), "segment_ids"),
        (dict(tokens=TOKENS, positions=np.ones((2, 8), np.float32)), "positions"),
    ],
)
def test_bad_inputs_raise(make_config, make_model, kwargs, message):
    model = make_model(make_config())
    tokens = jnp.asarray(kwargs.pop("tokens"))
    with pytest.raises(ValueError, match=message):
        model(tokens, **{k: jnp.asarray(v) for k, v in kwargs.items()})
