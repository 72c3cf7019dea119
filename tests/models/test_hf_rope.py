"""RoPE keys of an HF config.json resolved as transformers does: `rope_scaling` vs `rope_parameters`."""

import json

import numpy as np
import pytest

from rljax.models import ModelConfig, load_hf

VOCAB = 61
LLAMA3 = dict(
    rope_type="llama3",
    factor=4.0,
    low_freq_factor=1.0,
    high_freq_factor=4.0,
    original_max_position_embeddings=16,
)
SCALINGS = {
    "linear": dict(rope_type="linear", factor=4.0),
    "dynamic": dict(rope_type="dynamic", factor=4.0),
    "yarn": dict(rope_type="yarn", factor=4.0, original_max_position_embeddings=16),
    "llama3": LLAMA3,
}
BASE = dict(
    vocab_size=VOCAB,
    hidden_size=32,
    intermediate_size=48,
    num_hidden_layers=1,
    num_attention_heads=2,
    num_key_value_heads=1,
    head_dim=16,
    max_position_embeddings=128,
)


def _transformers_rope(config_class: str, raw: dict) -> tuple[float, str]:
    import transformers

    config = getattr(transformers, config_class)(**{**BASE, **raw})
    return float(config.rope_parameters["rope_theta"]), config.rope_parameters["rope_type"]


LAYOUTS = {
    "both, legacy wins": dict(
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, rope_scaling=LLAMA3
    ),
    "both, legacy wins, top-level theta": dict(
        rope_parameters={"rope_type": "default", "rope_theta": 1e6},
        rope_scaling=LLAMA3,
        rope_theta=5e5,
    ),
    "both, empty legacy ignored": dict(
        rope_parameters={**LLAMA3, "rope_theta": 1e6}, rope_scaling=None
    ),
    "legacy only, old 'type' key": dict(
        rope_scaling={**{k: v for k, v in LLAMA3.items() if k != "rope_type"}, "type": "llama3"},
        rope_theta=2e5,
    ),
    "new only": dict(rope_parameters={"rope_type": "default", "rope_theta": 3e4}),
    "neither": dict(),
}


@pytest.mark.parametrize(
    "config_class, model_type", [("LlamaConfig", "llama"), ("Qwen3Config", "qwen3")]
)
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_resolution_matches_transformers(config_class, model_type, layout):
    raw = LAYOUTS[layout]
    theta, rope_type = _transformers_rope(config_class, raw)
    hf = {**BASE, "model_type": model_type, **raw}
    config = ModelConfig.from_hf_config(hf)
    assert config.rope_theta == theta
    assert (config.rope_scaling is None) == (rope_type == "default")


@pytest.mark.parametrize("kind", ["linear", "dynamic", "yarn"])
def test_unsupported_scaling_behind_rope_parameters_is_refused_naming_the_key(kind):
    # transformers resolves this config to `kind` scaling (it would load with it), so loading it
    # with the default RoPE of rope_parameters would silently change the model.
    raw = dict(
        rope_parameters={"rope_type": "default", "rope_theta": 1e6}, rope_scaling=SCALINGS[kind]
    )
    assert _transformers_rope("LlamaConfig", raw)[1] == kind
    with pytest.raises(ValueError, match=f"rope_scaling.rope_type='{kind}'.*not supported"):
        ModelConfig.from_hf_config({**BASE, "model_type": "llama", **raw})
    with pytest.raises(ValueError, match=f"rope_parameters.rope_type='{kind}'.*not supported"):
        ModelConfig.from_hf_config(
            {**BASE, "model_type": "llama", "rope_parameters": SCALINGS[kind]}
        )


def _save_torch_llama(directory, rope_parameters):
    import torch
    import transformers

    config = transformers.LlamaConfig(
        **BASE, rope_parameters=rope_parameters, initializer_range=0.2, attn_implementation="eager"
    )
    torch.manual_seed(0)
    transformers.AutoModelForCausalLM.from_config(config).eval().save_pretrained(directory)


def _torch_logits(directory, tokens, positions):
    import torch
    import transformers

    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        return model(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits.numpy()


@pytest.mark.parametrize("kind", list(SCALINGS))
def test_logits_match_transformers_when_both_keys_are_present(run, tmp_path, kind):
    """config.json with a default `rope_parameters` and a legacy `rope_scaling`: as transformers."""
    _save_torch_llama(tmp_path, {"rope_type": "default", "rope_theta": 1e4})
    path = tmp_path / "config.json"
    hf = json.loads(path.read_text())
    hf["rope_scaling"] = SCALINGS[kind]
    path.write_text(json.dumps(hf))
    tokens = np.random.default_rng(0).integers(0, VOCAB, (1, 8)).astype(np.int32)
    positions = (np.arange(8, dtype=np.int32) * 9 + 20)[None]  # past the original 16 positions
    expected = _torch_logits(tmp_path, tokens, positions)
    if kind != "llama3":
        with pytest.raises(ValueError, match=f"rope_scaling.rope_type='{kind}'"):
            load_hf(tmp_path)
        return
    model = load_hf(tmp_path)
    hidden, _ = run(model, tokens, positions=positions)
    got = np.einsum(
        "bth,hv->btv", np.asarray(hidden, np.float64), np.asarray(model.unembedding, np.float64)
    )
    np.testing.assert_allclose(got, expected, atol=1e-4)
    # The scaling matters here: default RoPE (what rope_parameters alone says) is far off.
    hf["rope_scaling"] = None
    path.write_text(json.dumps(hf))
    assert np.abs(_torch_logits(tmp_path, tokens, positions) - expected).max() > 1e-2
