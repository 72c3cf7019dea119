"""ModelConfig validation, presets (parameter counts never materialised) and HF config mapping."""

import math

import jax
import pytest
from flax import nnx

from rljax.models import PRESETS, Decoder, ModelConfig, RopeScaling


def _count_params(config: ModelConfig) -> int:
    model = nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0)))
    return sum(math.prod(leaf.shape) for leaf in jax.tree.leaves(nnx.state(model, nnx.Param)))


def _published_formula(
    vocab, hidden, inter, layers, heads, kv_heads, head_dim, tied, qk_norm
) -> int:
    """Parameter count from the published dims: embeddings, attention, SwiGLU, norms."""
    attention = hidden * head_dim * (2 * heads + 2 * kv_heads)
    mlp = 3 * hidden * inter
    norms = 2 * hidden + (2 * head_dim if qk_norm else 0)
    embeddings = vocab * hidden * (1 if tied else 2)
    return embeddings + layers * (attention + mlp + norms) + hidden


@pytest.mark.parametrize(
    "name, dims, published",
    [
        # Qwen3-0.6B model card: 0.6B total, 0.44B non-embedding.
        ("qwen3_0_6b", (151_936, 1024, 3072, 28, 16, 8, 128, True, True), 596_049_920),
        # Qwen3-8B model card: 8.2B total, 6.95B non-embedding.
        ("qwen3_8b", (151_936, 4096, 12_288, 36, 32, 8, 128, False, True), 8_190_735_360),
        # Llama-3.1-8B: 8,030,261,248 parameters.
        ("llama3_1_8b", (128_256, 4096, 14_336, 32, 32, 8, 128, False, False), 8_030_261_248),
    ],
)
def test_preset_parameter_counts(name, dims, published):
    expected = _published_formula(*dims)
    assert expected == published
    assert _count_params(PRESETS[name](scan_layers=True)) == expected


def test_preset_count_does_not_depend_on_layer_scanning():
    assert _count_params(ModelConfig.qwen3_0_6b()) == 596_049_920


def test_qwen3_non_embedding_counts_match_model_cards():
    for name, non_embedding in [("qwen3_0_6b", 0.44e9), ("qwen3_8b", 6.95e9)]:
        config = PRESETS[name]()
        embeddings = config.vocab_size * config.hidden_size * (1 if config.tie_embeddings else 2)
        assert (
            round((_count_params(config.replace(scan_layers=True)) - embeddings) / 1e7)
            == non_embedding / 1e7
        )


def test_tiny_preset_takes_the_tokenizer_vocab():
    config = PRESETS["tiny"](vocab_size=300)
    assert config.vocab_size == 300
    assert ModelConfig.tiny().vocab_size == 512
    assert config.num_layers <= 4 and config.hidden_size == 128


@pytest.mark.parametrize(
    "overrides, message",
    [
        (dict(num_heads=4, num_kv_heads=3), "multiple of num_kv_heads"),
        (dict(family="mistral"), "family"),
        (dict(head_dim=15), "head_dim"),
        (dict(hidden_size=0), "hidden_size"),
        (dict(rope_theta=-1.0), "rope_theta"),
        (dict(rms_norm_eps=0.0), "rms_norm_eps"),
        (dict(dtype="int8"), "dtype"),
        (dict(param_dtype="not-a-dtype"), "param_dtype"),
        (dict(rope_scaling={"factor": 8.0}), "missing keys"),
        (
            dict(
                rope_scaling=dict(
                    factor=8.0,
                    low_freq_factor=4.0,
                    high_freq_factor=1.0,
                    original_max_position_embeddings=8,
                )
            ),
            "low_freq_factor",
        ),
    ],
)
def test_invalid_config_raises(overrides, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig.tiny(**overrides)


def test_config_is_hashable_and_normalises_fields():
    config = ModelConfig.tiny(
        dtype="bfloat16",
        rope_scaling=dict(
            rope_type="llama3",
            factor=8,
            low_freq_factor=1,
            high_freq_factor=4,
            original_max_position_embeddings=64,
        ),
    )
    assert config.dtype == "bfloat16"
    assert config.rope_scaling == RopeScaling(8.0, 1.0, 4.0, 64)
    assert hash(config) == hash(config.replace())


@pytest.mark.parametrize("name", ["tiny", "qwen3_0_6b", "qwen3_8b", "llama3_1_8b"])
def test_hf_config_round_trip(name):
    config = PRESETS[name]()
    hf = config.to_hf_config()
    assert ModelConfig.from_hf_config(hf) == config


def test_qwen2_hf_config_round_trip():
    config = ModelConfig.tiny(family="qwen2", qkv_bias=True, qk_norm=False, tie_embeddings=False)
    hf = config.to_hf_config()
    assert hf["architectures"] == ["Qwen2ForCausalLM"]
    assert ModelConfig.from_hf_config(hf) == config


def test_from_hf_config_reads_the_legacy_rope_layout():
    # The Llama-3.1-8B config.json as published (transformers 4.x layout).
    hf = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 128256,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "hidden_act": "silu",
        "max_position_embeddings": 131072,
        "rms_norm_eps": 1e-05,
        "rope_theta": 500000.0,
        "tie_word_embeddings": False,
        "attention_bias": False,
        "mlp_bias": False,
        "torch_dtype": "bfloat16",
        "rope_scaling": {
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 8192,
            "rope_type": "llama3",
        },
    }
    assert ModelConfig.from_hf_config(hf) == ModelConfig.llama3_1_8b()


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(model_type="mistral"), "model_type"),
        (dict(hidden_act="gelu"), "hidden_act"),
        (dict(use_sliding_window=True), "sliding"),
        (dict(attention_bias=True), "attention_bias"),
        (
            dict(rope_parameters={"rope_type": "yarn", "rope_theta": 1e6, "factor": 4.0}),
            "rope_type",
        ),
    ],
)
def test_from_hf_config_rejects_unsupported_features(change, message):
    hf = {**ModelConfig.qwen3_0_6b().to_hf_config(), **change}
    with pytest.raises(ValueError, match=message):
        ModelConfig.from_hf_config(hf)


def test_to_hf_config_rejects_what_the_family_cannot_express():
    with pytest.raises(ValueError, match="qk_norm"):
        ModelConfig.tiny(family="llama").to_hf_config()
    with pytest.raises(ValueError, match="qkv_bias"):
        ModelConfig.tiny(qkv_bias=True).to_hf_config()
