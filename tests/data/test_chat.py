"""Tests for the segment-wise chat renderer."""

import numpy as np
import pytest
import tokenizers
import transformers

from rljax.data import (
    ChatFormat,
    Role,
    Turn,
    encode_action,
    end_token_id,
    format_warnings,
    load_tokenizer,
    render_conversation,
    render_observation,
    render_prompt,
    role_masks,
)

T, S, U, A, E, W = (
    int(r) for r in (Role.TEMPLATE, Role.SYSTEM, Role.USER, Role.ACTION, Role.ENV, Role.WARNING)
)
CONVERSATION = [
    Turn("system", "You are a shell agent."),
    Turn("user", "Q: value of k07 ?"),
    Turn("assistant", "<think> look </think> <cmd> grep k07 f03 </cmd>"),
    Turn(
        "observation",
        "Command 'grep k07 f03' failed. Output: \n\n(exit_code=1)",
        warning="Missing <think> block\nText detected after final XML tag",
    ),
    Turn("assistant", "<cmd> answer zz9q </cmd>"),
]
QWEN_FORMAT = ChatFormat(
    bos="",
    headers={
        "system": "<|im_start|>system\n",
        "user": "<|im_start|>user\n",
        "assistant": "<|im_start|>assistant\n",
        "observation": "<|im_start|>tool\n",
    },
    end="<|im_end|>",
    separator="\n",
)


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


@pytest.fixture(scope="module")
def other_tok():
    """A differently trained byte-level BPE with a different special-token set (Qwen-style glue)."""
    base = tokenizers.Tokenizer(tokenizers.models.BPE())
    base.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    base.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    base.train_from_iterator(
        ["the cat sat on the mat", "grep key file", "answer value"] * 50, trainer=trainer
    )
    return transformers.PreTrainedTokenizerFast(
        tokenizer_object=base, pad_token="<|endoftext|>", clean_up_tokenization_spaces=False
    )


def spans(tokenizer, rendered, role):
    """Decodes each maximal run of tokens with `role`."""
    out, run = [], []
    for token, r in zip(rendered.tokens.tolist() + [None], rendered.roles.tolist() + [None]):
        if r == role:
            run.append(token)
        elif run:
            out.append(tokenizer.decode(run, skip_special_tokens=False))
            run = []
    return out


def test_format_warnings_matches_the_spec():
    assert format_warnings("Missing <think> block\nUnclosed <cmd> tag") == (
        "WARNINGS:\n- Missing <think> block\n- Unclosed <cmd> tag\n\n"
    )
    assert format_warnings("Empty <cmd> block") == "WARNINGS:\n- Empty <cmd> block\n\n"
    assert format_warnings("") == ""
    assert format_warnings("\n  \n") == ""


def test_render_conversation_text_and_roles(tok):
    rendered = render_conversation(tok, CONVERSATION, generation_prompt=True)
    assert rendered.tokens.dtype == np.int32 and rendered.roles.dtype == np.int8
    assert tok.decode(rendered.tokens) == (
        "<|bos|><|system|>You are a shell agent.<|end|><|user|>Q: value of k07 ?<|end|>"
        "<|assistant|><think> look </think> <cmd> grep k07 f03 </cmd><|end|>"
        "<|observation|>WARNINGS:\n- Missing <think> block\n- Text detected after final XML tag\n\n"
        "Command 'grep k07 f03' failed. Output: \n\n(exit_code=1)<|end|>"
        "<|assistant|><cmd> answer zz9q </cmd><|end|><|assistant|>"
    )
    assert spans(tok, rendered, S) == ["You are a shell agent."]
    assert spans(tok, rendered, U) == ["Q: value of k07 ?"]
    assert spans(tok, rendered, A) == [
        "<think> look </think> <cmd> grep k07 f03 </cmd><|end|>",
        "<cmd> answer zz9q </cmd><|end|>",
    ]
    assert spans(tok, rendered, W) == [
        "WARNINGS:\n- Missing <think> block\n- Text detected after final XML tag\n\n"
    ]
    assert spans(tok, rendered, E) == ["Command 'grep k07 f03' failed. Output: \n\n(exit_code=1)"]
    # Chat glue: bos 1, system 3, end 7, user 4, assistant 5, observation 6.
    assert rendered.tokens[rendered.roles == T].tolist() == [1, 3, 7, 4, 7, 5, 6, 7, 5, 5]


def test_role_masks():
    roles = np.array([[T, U, A, A, T, W, E, T]], np.int8)
    action, env, warning = role_masks(roles)
    np.testing.assert_array_equal(action, [[0, 0, 1, 1, 0, 0, 0, 0]])
    np.testing.assert_array_equal(env, [[0, 0, 0, 0, 0, 1, 1, 0]])
    np.testing.assert_array_equal(warning, [[0, 0, 0, 0, 0, 1, 0, 0]])


def test_rollout_pieces_concatenate_to_the_conversation(tok):
    pieces = render_prompt(tok, "Q: value of k07 ?", "You are a shell agent.")
    first = encode_action(tok, CONVERSATION[2].text)
    obs = render_observation(tok, CONVERSATION[3].text, CONVERSATION[3].warning)
    second = encode_action(tok, CONVERSATION[4].text)
    tokens = pieces.tokens.tolist() + first + obs.tokens.tolist() + second
    np.testing.assert_array_equal(tokens, render_conversation(tok, CONVERSATION).tokens)


def test_segments_are_encoded_separately(tok):
    # "answer" is one merged token in one call, but "ans" (user) and "wer" (assistant) never merge.
    assert len(tok.encode("answer", add_special_tokens=False)) == 1
    rendered = render_conversation(
        tok, [Turn("user", "ans"), Turn("assistant", "wer")], add_bos=False
    )
    assert tok.decode(rendered.tokens) == "<|user|>ans<|end|><|assistant|>wer<|end|>"
    assert spans(tok, rendered, U) == ["ans"] and spans(tok, rendered, A) == ["wer<|end|>"]


def test_qwen_style_format_with_another_tokenizer(other_tok):
    rendered = render_conversation(other_tok, CONVERSATION, fmt=QWEN_FORMAT, generation_prompt=True)
    assert other_tok.decode(rendered.tokens, skip_special_tokens=False) == (
        "<|im_start|>system\nYou are a shell agent.<|im_end|>\n<|im_start|>user\nQ: value of k07 ?<|im_end|>\n"
        "<|im_start|>assistant\n<think> look </think> <cmd> grep k07 f03 </cmd><|im_end|>\n"
        "<|im_start|>tool\nWARNINGS:\n- Missing <think> block\n- Text detected after final XML tag\n\n"
        "Command 'grep k07 f03' failed. Output: \n\n(exit_code=1)<|im_end|>\n"
        "<|im_start|>assistant\n<cmd> answer zz9q </cmd><|im_end|>\n<|im_start|>assistant\n"
    )
    assert spans(other_tok, rendered, A) == [
        "<think> look </think> <cmd> grep k07 f03 </cmd><|im_end|>",
        "<cmd> answer zz9q </cmd><|im_end|>",
    ]
    assert spans(other_tok, rendered, W) == [
        "WARNINGS:\n- Missing <think> block\n- Text detected after final XML tag\n\n"
    ]
    assert spans(other_tok, rendered, E) == [
        "Command 'grep k07 f03' failed. Output: \n\n(exit_code=1)"
    ]
    assert end_token_id(other_tok, QWEN_FORMAT) == 2
    # The separator after an assistant turn belongs to the next piece, as in a rollout.
    assert other_tok.decode(render_observation(other_tok, "out", fmt=QWEN_FORMAT).tokens) == (
        "\n<|im_start|>tool\nout<|im_end|>\n<|im_start|>assistant\n"
    )


def test_end_token_must_be_a_single_token(other_tok):
    with pytest.raises(ValueError, match="exactly one"):
        end_token_id(other_tok)  # "<|end|>" is plain text for this tokenizer


def test_bad_turns_and_formats_raise():
    with pytest.raises(ValueError, match="Turn.role"):
        Turn("tool", "x")
    with pytest.raises(ValueError, match="observation"):
        Turn("user", "x", warning="w")
    with pytest.raises(ValueError, match="headers"):
        ChatFormat(headers={"user": "u"})
