"""`build_family`: the run's family counts its prompt lengths in the policy tokenizer's tokens."""

import pytest

from rljax.data import load_tokenizer, token_counter
from rljax.envs import registry
from rljax.envs.longcontext import LongContextFamily
from rljax.train.components import build_family, policy_tokenizer
from rljax.train.config import ModelSection, TaskSection

TASK = TaskSection(family="longcontext", kwargs={"context_tokens": (150, 300)})


def test_a_token_counting_family_gets_the_policy_tokenizer_counter():
    tokenizer = policy_tokenizer(ModelSection())
    family = build_family(TASK, tokenizer)
    assert family == registry.make("longcontext", context_tokens=(150, 300))
    text = "E17 color = red city = oslo"
    assert family.count_tokens(text) == len(tokenizer(text, add_special_tokens=False)["input_ids"])
    task = family.generate("train", 0)
    assert 150 <= task.meta["context_tokens"]
    with pytest.raises(ValueError, match="task family 'longcontext' .* has no count_tokens"):
        registry.make("longcontext").generate("train", 0)


def test_a_given_family_and_counter_are_kept():
    tokenizer = load_tokenizer()
    own = LongContextFamily(count_tokens=len)
    assert build_family(TASK, tokenizer, own) is own
    bare = LongContextFamily()
    assert build_family(TASK, tokenizer, bare).count_tokens("a b") == token_counter(tokenizer)(
        "a b"
    )
    arithmetic = registry.make("arithmetic")
    assert build_family(TASK, tokenizer, arithmetic) is arithmetic
