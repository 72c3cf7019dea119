"""Real models end to end: a run from an `hf_path` directory (random Qwen3 weights written with
save_hf, a Qwen3 chat-template tokenizer) and the Hugging Face export that `transformers` loads
with equal logits and the same chat template."""

import importlib.util
import json
import pathlib

import jax.numpy as jnp
import numpy as np
import pytest
import transformers
from rljax.experiments import export as export_cli
from rljax.experiments import presets

from rljax.data import chat
from rljax.models import ModelConfig, load_hf, save_hf
from rljax.train import Trainer
from rljax.train import config as config_lib
from rljax.train.components import policy_tokenizer
from rljax.train.config import (
    ExperimentConfig,
    ModelSection,
    OptimSection,
    SFTSection,
    TaskSection,
    TrainSection,
)
from rljax.train.export import export_hf

TESTS = pathlib.Path(__file__).parents[1]


def _template_builders():
    """tests/data/test_chat_templates.py: tokenizers of the published templates (no download)."""
    spec = importlib.util.spec_from_file_location(
        "chat_template_builders", TESTS / "data" / "test_chat_templates.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


BUILDERS = _template_builders()
MESSAGES = [
    {"role": "system", "content": "You are a careful math tutor."},
    {"role": "user", "content": "What is 17 + 25?"},
]


def random_qwen3(vocab_size: int, seed: int = 0):
    """A 2-layer, 64-wide Qwen3 (qk-norm, tied embeddings) with random parameters."""
    spec = importlib.util.spec_from_file_location(
        "model_conftest", TESTS / "models" / "conftest.py"
    )
    conftest = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(conftest)
    config = ModelConfig.tiny(
        family="qwen3",
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=32,
        qk_norm=True,
        tie_embeddings=True,
    )
    return conftest.random_model(config, seed)


@pytest.fixture(scope="module")
def hf_dir(tmp_path_factory):
    """An hf_path directory: random tiny Qwen3 + Qwen3 template tokenizer + generation config."""
    directory = tmp_path_factory.mktemp("tiny-qwen3")
    tokenizer = BUILDERS.build_tokenizer("qwen3")
    save_hf(random_qwen3(len(tokenizer)), directory)
    tokenizer.save_pretrained(directory)
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    transformers.GenerationConfig(
        eos_token_id=[im_end, endoftext], temperature=0.6, top_p=0.95, do_sample=True
    ).save_pretrained(directory)
    return directory


def _torch_logits(directory, tokens) -> np.ndarray:
    import torch

    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, attn_implementation="eager"
    ).eval()
    with torch.no_grad():
        return model(input_ids=torch.tensor(tokens, dtype=torch.long)).logits.numpy()


def test_export_loads_in_transformers_with_equal_logits(hf_dir, tmp_path):
    tokenizer = policy_tokenizer(ModelSection(hf_path=str(hf_dir)))
    model = load_hf(hf_dir)
    out = export_hf(model, tokenizer, tmp_path / "hf", source=hf_dir, info={"step": 0})
    tokens = np.random.default_rng(0).integers(0, len(tokenizer), (2, 12))
    expected = np.asarray(model.logits(jnp.asarray(tokens)), np.float32)
    np.testing.assert_allclose(_torch_logits(out, tokens), expected, atol=1e-4, rtol=0)
    # The tokenizer round-trips with its chat template; the generation config keeps the source's
    # sampling defaults and stops where rollouts stopped.
    loaded = transformers.AutoTokenizer.from_pretrained(out)
    for kwargs in ({}, {"enable_thinking": False}):
        assert loaded.apply_chat_template(
            MESSAGES, add_generation_prompt=True, tokenize=False, **kwargs
        ) == tokenizer.apply_chat_template(
            MESSAGES, add_generation_prompt=True, tokenize=False, **kwargs
        )
    assert loaded.encode("17 + 25 = 42") == tokenizer.encode("17 + 25 = 42")
    generation = transformers.GenerationConfig.from_pretrained(out)
    im_end, endoftext = tokenizer.convert_tokens_to_ids(["<|im_end|>", "<|endoftext|>"])
    assert sorted(generation.eos_token_id) == sorted([im_end, endoftext])
    assert (generation.temperature, generation.top_p) == (0.6, 0.95)
    assert json.loads((out / "rljax_export.json").read_text())["step"] == 0
    assert not (tmp_path / "hf.tmp").exists()


def test_run_tokenizer_takes_template_options_and_checkpoint_eos(hf_dir, tmp_path):
    # Llama 3.2 Instruct: eos <|eot_id|>; generation_config.json's eos ids [<|end_of_text|>,
    # <|eom_id|>, <|eot_id|>] all stop a turn.
    llama = BUILDERS.build_tokenizer("llama3")
    llama_dir = tmp_path / "llama"
    llama.save_pretrained(llama_dir)
    ids = llama.convert_tokens_to_ids(["<|end_of_text|>", "<|eom_id|>", "<|eot_id|>"])
    (llama_dir / "generation_config.json").write_text(json.dumps({"eos_token_id": ids}))
    assert chat.stop_token_ids(llama) == {ids[2]}
    tok = policy_tokenizer(
        ModelSection(hf_path=str(llama_dir), chat_template_kwargs={"date_string": "26 Jul 2024"})
    )
    assert chat.stop_token_ids(tok) == set(ids)
    prompt = chat.render_prompt(tok, "What is 17 + 25?", "Be brief.")
    text = tok.decode(prompt.tokens, skip_special_tokens=False)
    assert "Today Date: 26 Jul 2024" in text

    # Qwen3 with thinking off: the generation prompt carries the template's empty think block.
    qwen = policy_tokenizer(
        ModelSection(hf_path=str(hf_dir), chat_template_kwargs={"enable_thinking": False})
    )
    prompt = chat.render_prompt(qwen, "What is 17 + 25?", None)
    assert qwen.decode(prompt.tokens, skip_special_tokens=False).endswith(
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    with pytest.raises(ValueError, match="chat_template_kwargs.*no template"):
        policy_tokenizer(ModelSection(chat_template_kwargs={"enable_thinking": False}))


def test_real_preset_refuses_to_start_without_hf_path(tmp_path):
    config = presets.real("grpo", TaskSection(), config_lib.MethodSection())
    config = config_lib.apply_overrides(config, ["train.mesh=auto"])  # 8 test CPU devices
    assert config.model.require_hf_path
    with pytest.raises(config_lib.ConfigError, match=r"model.hf_path=None: .*--set model.hf_path="):
        Trainer(config, tmp_path / "run")
    bad = config_lib.apply_overrides(
        config, [f"model.hf_path={tmp_path}", "model.overrides={'num_layers': 2}"]
    )
    with pytest.raises(config_lib.ConfigError, match="only \\['remat', 'scan_layers'\\] apply"):
        config_lib.validate(bad)


def smoke_config(hf_dir, steps: int) -> ExperimentConfig:
    """GRPO on boxed arithmetic from the hf_path directory: 2 prompts x 4 samples per step."""
    return ExperimentConfig(
        name="hf-smoke",
        model=ModelSection(hf_path=str(hf_dir), chat_template_kwargs={"enable_thinking": False}),
        task=TaskSection(
            family="arithmetic",
            kwargs={
                "digits": 1,
                "num_operands": 2,
                "answer_format": "boxed",
                "system": "Be brief.",
            },
            prompts_per_step=2,
            group_size=4,
            max_new_tokens=48,
            max_len=256,
        ),
        optim=OptimSection(learning_rate=1e-3),
        train=TrainSection(steps=steps, checkpoint_every=1, eval_every=0, eval_prompts=0),
        sft=SFTSection(steps=0),
    )


@pytest.mark.slow
def test_hf_path_run_trains_resumes_and_exports(hf_dir, tmp_path):
    run = tmp_path / "run"
    # A random policy never writes a correct box, and a row cut at max_new_tokens earns 0: reward
    # the length of the responses that end (about 1 in 5 here), so some groups have an advantage.
    reward = lambda task, response: len(response) / 8  # noqa: E731
    first = Trainer(smoke_config(hf_dir, steps=2), run, reward_fn=reward).run()
    assert first.final_step == 2 and (run / "hf" / "model.safetensors").exists()
    # Resume to step 3 (a later invocation), then export step 2 from its checkpoint.
    resumed = Trainer(smoke_config(hf_dir, steps=3), run, reward_fn=reward)
    result = resumed.run()
    assert [m["step"] for m in result.metrics] == [1, 2, 3]
    assert json.loads((run / "hf" / "rljax_export.json").read_text())["step"] == 3
    out = export_cli.main(["--run-dir", str(run), "--step", "2"])
    assert out == run / "hf-step2"
    vocab = len(transformers.AutoTokenizer.from_pretrained(out))
    tokens = np.random.default_rng(1).integers(0, vocab, (1, 10))
    at_two = Trainer(smoke_config(hf_dir, steps=3), run)
    assert at_two.load_checkpoint(2) == 2
    np.testing.assert_allclose(
        _torch_logits(out, tokens),
        np.asarray(at_two.policy.logits(jnp.asarray(tokens))),
        atol=1e-4,
        rtol=0,
    )
    # The trained weights moved away from the source checkpoint.
    assert not np.allclose(_torch_logits(out, tokens), _torch_logits(hf_dir, tokens), atol=1e-4)


@pytest.mark.slow  # minutes; the decoder tests check remat's forward and gradients in the default suite
def test_remat_checkpoint_samples_like_the_plain_one(hf_dir):
    # The real presets load the checkpoint with remat=True; the sampler's decode loop (a KV cache,
    # no backward pass) runs the layers without it and samples exactly what the plain model does.
    import jax

    from rljax.sampling.session import DecodeSession
    from rljax.sampling.strategies import Temperature

    out = []
    for remat in (False, True):
        model = load_hf(hf_dir, remat=remat)
        session = DecodeSession(
            model, batch_size=2, max_len=16, strategy=Temperature(1.0), key=jax.random.key(0)
        )
        session.prefill([[5, 6, 7], [8, 9]])
        out.append([list(g.tokens) for g in session.generate(max_new_tokens=6)])
    assert out[0] == out[1] and all(len(row) == 6 for row in out[0])
