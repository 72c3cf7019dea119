"""Tests for the built-in tokenizer and `load_tokenizer`."""

import importlib.util
import json
import pathlib
import pickle

import hypothesis
import hypothesis.strategies as st
import pytest
import tokenizers
import transformers

from rljax.data import BUILTIN_DIR, SPECIAL_TOKENS, load_tokenizer, token_counter

REPO = pathlib.Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tok():
    return load_tokenizer()


def test_builtin_is_a_fast_tokenizer_with_1024_ids(tok):
    assert isinstance(tok, transformers.PreTrainedTokenizerFast)
    assert len(tok) == 1024


def test_special_token_ids(tok):
    expected = {
        "<|pad|>": 0,
        "<|bos|>": 1,
        "<|eos|>": 2,
        "<|system|>": 3,
        "<|user|>": 4,
        "<|assistant|>": 5,
        "<|observation|>": 6,
        "<|end|>": 7,
    }
    assert SPECIAL_TOKENS == tuple(expected)
    for token, token_id in expected.items():
        assert tok.convert_tokens_to_ids(token) == token_id
        assert tok.encode(token, add_special_tokens=False) == [token_id]
    assert (tok.pad_token_id, tok.bos_token_id, tok.eos_token_id) == (0, 1, 2)


def test_encode_adds_nothing_and_specials_inside_text_are_single_ids(tok):
    ids = tok.encode("a<|end|>b", add_special_tokens=False)
    assert ids[1] == 7 and len(ids) == 3
    assert tok.decode(ids) == "a<|end|>b"


def test_digits_are_single_tokens(tok):
    ids = tok.encode("x=90817", add_special_tokens=False)
    assert [tok.decode([i]) for i in ids[-5:]] == ["9", "0", "8", "1", "7"]


def test_every_byte_is_in_the_vocabulary(tok):
    alphabet = tokenizers.pre_tokenizers.ByteLevel.alphabet()
    assert len(alphabet) == 256
    vocab = tok.get_vocab()
    assert all(char in vocab for char in alphabet)


@hypothesis.settings(max_examples=300, deadline=None)
@hypothesis.given(st.text())
def test_round_trip_is_lossless_on_random_unicode(text):
    tok = load_tokenizer()
    ids = tok.encode(text, add_special_tokens=False)
    assert tok.decode(ids, skip_special_tokens=False) == text


@pytest.mark.parametrize(
    "text", ["  leading spaces", "trailing  \n\n", "tab\there", "\r\n", "é🙂中文 . , !", ""]
)
def test_round_trip_whitespace_and_multibyte(tok, text):
    assert tok.decode(tok.encode(text, add_special_tokens=False)) == text


def test_template_text_compresses(tok):
    # The merges were learnt on this kind of text: far fewer tokens than bytes.
    text = "Command 'cat /data/f03' executed successfully. Output: k17=ab3x\n\n(exit_code=0)"
    assert len(tok.encode(text, add_special_tokens=False)) < 0.6 * len(text.encode())


def test_shipped_asset_is_what_the_training_script_builds():
    spec = importlib.util.spec_from_file_location(
        "train_tokenizer", REPO / "tools" / "train_tokenizer.py"
    )
    script = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(script)
    rebuilt = json.loads(script.train(vocab_size=1024, num_docs=20_000, seed=0).to_str())
    assert rebuilt == json.loads((BUILTIN_DIR / "tokenizer.json").read_text())


def test_load_tokenizer_from_a_directory(tmp_path, tok):
    other = tokenizers.Tokenizer(
        tokenizers.models.WordLevel({"[UNK]": 0, "hello": 1, "world": 2}, unk_token="[UNK]")
    )
    other.pre_tokenizer = tokenizers.pre_tokenizers.Whitespace()
    transformers.PreTrainedTokenizerFast(tokenizer_object=other, unk_token="[UNK]").save_pretrained(
        tmp_path
    )
    loaded = load_tokenizer(tmp_path)
    assert loaded.is_fast
    assert loaded.encode("hello world", add_special_tokens=False) == [1, 2]


def test_load_tokenizer_missing_path_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="tokenizer.json"):
        load_tokenizer(tmp_path)


def test_token_counter_counts_without_special_tokens_or_warnings(tok, caplog):
    count = token_counter(tok)
    text = "E17 color = red <|end|> city = oslo"
    assert count(text) == len(tok(text, add_special_tokens=False)["input_ids"]) and count("") == 0
    assert pickle.loads(pickle.dumps(count))(text) == count(text)
    short = load_tokenizer()
    short.model_max_length = 4
    with caplog.at_level("WARNING"):
        assert token_counter(short)(text) == count(text)
    assert "longer than the specified maximum" not in caplog.text
