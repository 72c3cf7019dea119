"""Parity with Hugging Face transformers (PyTorch, float32) on small random Llama / Qwen2 / Qwen3 models."""

import numpy as np
import pytest

from rljax.models import load_hf, save_hf

VOCAB = 97
# name -> (transformers config class, config kwargs, save_pretrained kwargs)
FAMILIES = {
    # Llama 3.1 style: llama3 RoPE scaling whose band edges (64 / 4 = 16, 64 / 1 = 64) fall between
    # the head's wavelengths, untied embeddings, GQA 4 -> 2, sharded checkpoint with an index.
    "llama": (
        "LlamaConfig",
        dict(
            rope_scaling=dict(
                rope_type="llama3",
                factor=4.0,
                low_freq_factor=1.0,
                high_freq_factor=4.0,
                original_max_position_embeddings=64,
            ),
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
        ),
        dict(max_shard_size="40KB"),
    ),
    "qwen2": ("Qwen2Config", dict(tie_word_embeddings=True, rope_theta=1e6), {}),
    "qwen3": ("Qwen3Config", dict(head_dim=32, tie_word_embeddings=False), {}),
    "qwen3_tied": ("Qwen3Config", dict(head_dim=32, tie_word_embeddings=True), {}),
}


def _torch_model(name: str):
    import torch
    import transformers

    config_class, extra, _ = FAMILIES[name]
    config = getattr(transformers, config_class)(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        initializer_range=0.1,
        attn_implementation="eager",
        **extra,
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():  # norm weights start at one and biases at zero; randomise them too
        for key, param in model.named_parameters():
            if "norm" in key:
                param.copy_(1 + 0.2 * torch.randn_like(param))
            elif key.endswith("bias"):
                param.copy_(0.2 * torch.randn_like(param))
    return model


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """name -> (torch model, directory it was saved to with save_pretrained)."""
    saved = {}
    for name, (_, _, save_kwargs) in FAMILIES.items():
        model = _torch_model(name)
        directory = tmp_path_factory.mktemp(name)
        model.save_pretrained(directory, **save_kwargs)
        saved[name] = (model, directory)
    return saved


def _torch_logits(model, tokens, attention_mask, positions) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(
            input_ids=torch.tensor(tokens, dtype=torch.long),
            attention_mask=torch.tensor(attention_mask, dtype=torch.long),
            position_ids=torch.tensor(positions, dtype=torch.long),
        ).logits.numpy()


def _logits(run, model, tokens, **kwargs) -> np.ndarray:
    """rljax logits: the jitted forward's hidden states times the unembedding, in float64."""
    hidden, _ = run(model, tokens, **kwargs)
    return np.einsum(
        "bth,hv->btv", np.asarray(hidden, np.float64), np.asarray(model.unembedding, np.float64)
    )


TOKENS = np.random.default_rng(0).integers(0, VOCAB, (2, 9)).astype(np.int32)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_logits_match_transformers_with_left_padding(checkpoints, run, name):
    torch_model, directory = checkpoints[name]
    model = load_hf(directory)
    mask = np.ones((2, 9), np.int32)
    mask[1, :3] = 0  # row 1 is left-padded by three tokens
    # transformers numbers positions only from the mask it is given; rljax derives them from segment_ids.
    expected = _torch_logits(torch_model, TOKENS, mask, np.maximum(mask.cumsum(-1) - 1, 0))
    got = _logits(run, model, TOKENS, segment_ids=mask)
    np.testing.assert_allclose(got[mask == 1], expected[mask == 1], atol=1e-4)


@pytest.mark.parametrize("name", list(FAMILIES))
def test_logits_match_transformers_at_explicit_positions(checkpoints, run, name):
    torch_model, directory = checkpoints[name]
    model = load_hf(directory)
    positions = np.broadcast_to(np.arange(9, dtype=np.int32) * 7 + 40, (2, 9))  # up to 96: past 64
    expected = _torch_logits(torch_model, TOKENS, np.ones((2, 9), np.int32), positions)
    got = _logits(run, model, TOKENS, positions=np.ascontiguousarray(positions))
    np.testing.assert_allclose(got, expected, atol=1e-4)


def test_sharded_checkpoint_has_an_index(checkpoints):
    _, directory = checkpoints["llama"]
    assert (directory / "model.safetensors.index.json").exists()
    assert len(list(directory.glob("model-*.safetensors"))) > 1


@pytest.mark.parametrize("name", ["llama", "qwen2", "qwen3"])
def test_export_is_read_by_transformers(checkpoints, run, tmp_path, name):
    import torch
    import transformers

    torch_model, directory = checkpoints[name]
    model = load_hf(directory)
    save_hf(model, tmp_path, max_shard_bytes=60_000 if name == "qwen3" else 2**30)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager"
    ).eval()
    assert type(reloaded) is type(torch_model)
    original = torch_model.state_dict()
    for key, tensor in reloaded.state_dict().items():
        assert torch.equal(tensor, original[key]), key
    positions = np.broadcast_to(np.arange(9, dtype=np.int32), (2, 9))
    expected = _torch_logits(reloaded, TOKENS, np.ones((2, 9), np.int32), positions)
    got = _logits(run, model, TOKENS)
    np.testing.assert_allclose(got, expected, atol=1e-4)
