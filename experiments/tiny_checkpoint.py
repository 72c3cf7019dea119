"""Write a tiny random-weight Hugging Face checkpoint directory to rehearse a real-model run offline.

    python -m rljax.experiments.tiny_checkpoint --out /tmp/tiny-qwen3 \\
        --chat-template tests/data/templates/qwen3.jinja

The directory has what a published checkpoint has (`config.json`, `model.safetensors` written by
`rljax.models.save_hf`, tokenizer files with the chat template, `generation_config.json`), so
`--set model.hf_path=/tmp/tiny-qwen3` exercises the whole `real`-preset path (template-driven chat
format, stop tokens, checkpoints, export) in minutes on a CPU. The weights are random: it learns
nothing useful.

The tokenizer is either a real model's (`--tokenizer DIR`, e.g. the files of Qwen3-0.6B: the
model's vocabulary then sets the embedding size) or, offline, a small byte-level BPE with ChatML's
special tokens trained here on arithmetic text, with the ChatML (Qwen2/Qwen3) template given by
`--chat-template`.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import tokenizers
import transformers
from flax import nnx

from rljax.data import load_tokenizer
from rljax.models import Decoder, ModelConfig, save_hf

# Qwen's pre-tokenizer regex; ChatML's special tokens and Qwen3's added tokens.
QWEN_REGEX = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
CHATML_SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
CHATML_ADDED = [
    "<tool_call>",
    "</tool_call>",
    "<tool_response>",
    "</tool_response>",
    "<think>",
    "</think>",
]
CORPUS = [
    "Compute 17+25. Please reason step by step, and put your final answer within \\boxed{}.",
    "Let me add the numbers: 17 + 25 = 42, so the answer is \\boxed{42}.",
    "You are a helpful assistant. Answer briefly.",
    "Using the numbers 3, 7, 25, 50, make 100. The answer is (50 - 25) * (7 - 3).",
    "system user assistant tool The question asks for the total number of apples.",
]


def chatml_tokenizer(
    template: str, *, vocab_size: int = 512
) -> transformers.PreTrainedTokenizerFast:
    """A small byte-level BPE with ChatML special tokens (eos `<|im_end|>`) and `template`."""
    base = tokenizers.Tokenizer(tokenizers.models.BPE())
    base.pre_tokenizer = tokenizers.pre_tokenizers.Sequence(
        [
            tokenizers.pre_tokenizers.Split(tokenizers.Regex(QWEN_REGEX), behavior="isolated"),
            tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    base.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=CHATML_SPECIAL,
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base.train_from_iterator(CORPUS * 20, trainer=trainer)
    base.add_tokens(
        [tokenizers.AddedToken(t, special=False, normalized=False) for t in CHATML_ADDED]
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=base,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
        chat_template=template,
    )


def write_tiny_checkpoint(
    out: str | pathlib.Path,
    tokenizer: transformers.PreTrainedTokenizerFast,
    *,
    num_layers: int = 2,
    hidden_size: int = 64,
    seed: int = 0,
) -> pathlib.Path:
    """Writes a random Qwen3-style decoder sized to `tokenizer` with the tokenizer and a generation
    config (eos: the tokenizer's eos and `<|endoftext|>` when it has one) to `out`."""
    out = pathlib.Path(out)
    config = ModelConfig.tiny(
        vocab_size=len(tokenizer),
        num_layers=num_layers,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_heads=2,
        num_kv_heads=1,
        head_dim=hidden_size // 2,
    )
    save_hf(Decoder(config, rngs=nnx.Rngs(seed)), out)
    tokenizer.save_pretrained(out)
    eos = [tokenizer.eos_token_id]
    extra = tokenizer.convert_tokens_to_ids("<|endoftext|>")
    if extra is not None and extra != tokenizer.unk_token_id and extra not in eos:
        eos.append(extra)
    transformers.GenerationConfig(
        eos_token_id=eos, pad_token_id=tokenizer.pad_token_id
    ).save_pretrained(out)
    return out


def main(argv: list[str] | None = None) -> pathlib.Path:
    parser = argparse.ArgumentParser(
        prog="python -m rljax.experiments.tiny_checkpoint", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--out", required=True, help="output directory")
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--tokenizer", help="a tokenizer directory (e.g. a real model's files)")
    source.add_argument("--chat-template", help="a ChatML Jinja template file (Qwen2/Qwen3)")
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--hidden", type=int, default=64)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.tokenizer is not None:
        tokenizer = load_tokenizer(args.tokenizer)
    else:
        tokenizer = chatml_tokenizer(pathlib.Path(args.chat_template).read_text())
    out = write_tiny_checkpoint(
        args.out, tokenizer, num_layers=args.layers, hidden_size=args.hidden, seed=args.seed
    )
    config = json.loads((out / "config.json").read_text())
    print(
        f"wrote {out}: {config['num_hidden_layers']} layers, hidden {config['hidden_size']}, "
        f"vocab {config['vocab_size']}"
    )
    return out


if __name__ == "__main__":
    main(sys.argv[1:])
