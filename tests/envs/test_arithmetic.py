"""Arithmetic family: determinism, split disjointness, knobs, verifier and noisy expert."""

import hashlib
import re

import numpy as np
import pytest

from rljax.data.tokenizer import load_tokenizer
from rljax.envs.arithmetic import FILLER_WORDS, ArithmeticFamily, evaluate
from rljax.envs.base import TaskFamily


def _hash_split(content, heldout_fraction=0.2):
    """Independent re-implementation of the documented split rule (SHA-256 of the content)."""
    unit = int.from_bytes(hashlib.sha256(content.encode()).digest()[:8], "big") / 2**64
    return "heldout" if unit < heldout_fraction else "train"


def _oracle(expression):
    """Python's own integer arithmetic on a validated digits-and-operators string."""
    assert re.fullmatch(r"\d+([-+*]\d+)*", expression)
    return eval(expression)  # noqa: S307 -- validated above: digits and + - * only


def test_is_a_task_family():
    assert isinstance(ArithmeticFamily(), TaskFamily)


@pytest.mark.parametrize(
    "expression, value, left_to_right",
    [
        ("37+45", 82, 82),
        ("12+3*4", 24, 60),  # precedence: 12 + 12; left to right: 15 * 4
        ("7-10-2", -5, -5),  # left associative: (7 - 10) - 2
        ("2*3*4-5", 19, 19),
        ("100-5*20+3", 3, 1903),  # 100 - 100 + 3; left to right: (95 * 20) + 3
    ],
)
def test_evaluate(expression, value, left_to_right):
    assert evaluate(expression) == value
    assert evaluate(expression, left_to_right=True) == left_to_right


def test_evaluate_rejects_bad_expression():
    with pytest.raises(ValueError, match="expression must be integers"):
        evaluate("3+(4)")


def test_generate_is_deterministic_and_well_formed():
    family = ArithmeticFamily(digits=2, num_operands=(2, 3), operators="+-*", seed=3)
    again = ArithmeticFamily(digits=2, num_operands=(2, 3), operators="+-*", seed=3)
    for index in range(50):
        task = family.generate("train", index)
        assert task == again.generate("train", index)
        assert task.uid == f"arithmetic/train/{index}"
        expression = task.meta["expression"]
        assert task.prompt == f"Compute {expression}."
        assert task.answer == _oracle(expression)
    other_seed = ArithmeticFamily(digits=2, num_operands=(2, 3), operators="+-*", seed=4)
    assert [family.generate("train", i) for i in range(20)] != [
        other_seed.generate("train", i) for i in range(20)
    ]


def test_heldout_shares_no_instance_with_train():
    # Small instance space (two 1-2 digit operands, + and -) so overlaps would show if the split
    # were by index; also across seeds, since the split depends on the content only.
    families = [ArithmeticFamily(digits=(1, 2), operators="+-", seed=s) for s in (0, 1)]
    train = {f.generate("train", i).meta["expression"] for f in families for i in range(400)}
    heldout = {f.generate("heldout", i).meta["expression"] for f in families for i in range(150)}
    assert len(train) > 300 and len(heldout) > 100
    assert not train & heldout
    assert {_hash_split(e) for e in train} == {"train"}
    assert {_hash_split(e) for e in heldout} == {"heldout"}


def test_knobs():
    family = ArithmeticFamily(digits=3, num_operands=(2, 4), operators="*")
    counts = set()
    for index in range(60):
        operands = family.generate("train", index).meta["expression"].split("*")
        counts.add(len(operands))
        assert all(len(x) == 3 and x[0] != "0" for x in operands)
    assert counts == {2, 3, 4}
    one_digit = ArithmeticFamily(digits=1, operators="+")
    assert all(
        re.fullmatch(r"\d\+\d", one_digit.generate("train", i).meta["expression"])
        for i in range(30)
    )


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"digits": 0}, "digits must be"),
        ({"digits": (3, 2)}, "digits must be"),
        ({"num_operands": 1}, "num_operands must be"),
        ({"operators": "+/"}, "operators must be"),
        ({"operators": ""}, "operators must be"),
        ({"heldout_fraction": 1.0}, "heldout_fraction must be in"),
    ],
)
def test_bad_knobs(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ArithmeticFamily(**kwargs)


def test_bad_split_and_index():
    with pytest.raises(ValueError, match="split must be one of"):
        ArithmeticFamily().generate("test", 0)
    with pytest.raises(ValueError, match="index must be a non-negative int"):
        ArithmeticFamily().generate("train", -1)


class TestVerify:
    family = ArithmeticFamily()
    task = ArithmeticFamily().generate("train", 0)

    def _verdict(self, response):
        return self.family.verify(self.task, response)

    def test_correct_with_thinking(self):
        verdict = self._verdict(f"<think>carry the one</think><answer>{self.task.answer}</answer>")
        assert verdict.reward == 1.0 and verdict.info["reason"] == "correct"

    def test_whitespace_around_the_number_is_ignored(self):
        assert self._verdict(f"<answer> {self.task.answer}\n</answer>").reward == 1.0

    def test_wrong(self):
        verdict = self._verdict(f"<answer>{self.task.answer + 1}</answer>")
        assert verdict.reward == 0.0
        assert (
            verdict.info["reason"]
            == f"wrong: expected {self.task.answer}, got {self.task.answer + 1}"
        )

    @pytest.mark.parametrize(
        "content, why",
        [
            ("0082", "not a plain integer"),
            ("8 2", "not a plain integer"),
            ("1,000", "not a plain integer"),
            ("-0", "not a plain integer"),
            ("82.0", "not a plain integer"),
            ("", "not a plain integer"),
        ],
    )
    def test_malformed_content(self, content, why):
        verdict = self._verdict(f"<answer>{content}</answer>")
        assert verdict.reward == 0.0
        assert verdict.info["reason"].startswith("malformed:") and why in verdict.info["reason"]

    def test_missing_tag(self):
        verdict = self._verdict(str(self.task.answer))
        assert verdict.reward == 0.0 and "no <answer>" in verdict.info["reason"]


class TestExpert:
    family = ArithmeticFamily(digits=(1, 3), num_operands=(2, 3), operators="+-*")
    tasks = [
        ArithmeticFamily(digits=(1, 3), num_operands=(2, 3), operators="+-*").generate("train", i)
        for i in range(300)
    ]

    def test_clean_expert_is_always_right(self):
        rng = np.random.default_rng(0)
        for task in self.tasks:
            response = self.family.expert(task, rng)
            assert response == f"<answer>{_oracle(task.meta['expression'])}</answer>"
            assert self.family.verify(task, response).reward == 1.0

    def test_noisy_expert_makes_realistic_mistakes_at_the_given_rate(self):
        rng = np.random.default_rng(1)
        wrong = 0
        for task in self.tasks:
            response = self.family.expert(task, rng, noise=0.3)
            if self.family.verify(task, response).reward == 1.0:
                continue
            wrong += 1
            value, truth = int(response[8:-9]), task.answer
            realistic = [
                abs(value - truth) == 1,
                abs(value - truth) in {10**k for k in range(1, len(str(abs(truth))))},
                value == evaluate(task.meta["expression"], left_to_right=True),
                value == -truth,
            ]
            assert any(realistic), (task.meta["expression"], truth, value)
        # Binomial(300, 0.3): mean 90, std 7.9.
        assert 60 <= wrong <= 120

    def test_full_noise_is_always_wrong(self):
        rng = np.random.default_rng(2)
        for task in self.tasks:
            assert self.family.verify(task, self.family.expert(task, rng, noise=1.0)).reward == 0.0

    def test_bad_noise(self):
        with pytest.raises(ValueError, match="noise must be in"):
            self.family.expert(self.tasks[0], np.random.default_rng(0), noise=1.5)


_FILLER_FAMILY = ArithmeticFamily(digits=(1, 2), operators="+", filler=8)


class TestFiller:
    """`filler=F`: F shared filler words before the expert's answer (delta.md section 8)."""

    family = _FILLER_FAMILY
    tasks = [_FILLER_FAMILY.generate("train", i) for i in range(100)]
    words = "|".join(re.escape(w) for w in FILLER_WORDS)

    def _split(self, response):
        match = re.fullmatch(rf"((?:{self.words})*)(<answer>.*</answer>)", response)
        assert match, response
        return re.findall(self.words, match.group(1)), match.group(2)

    def test_expert_writes_f_filler_words_then_the_answer(self):
        rng = np.random.default_rng(0)
        seen = set()
        for task in self.tasks:
            response = self.family.expert(task, rng)
            filler, answer = self._split(response)
            assert len(filler) == 8
            seen.update(filler)
            assert answer == f"<answer>{task.answer}</answer>"
            assert self.family.verify(task, response).reward == 1.0
        assert seen == set(FILLER_WORDS)  # all six words drawn (800 uniform draws)

    def test_deterministic_in_the_rng(self):
        first = [self.family.expert(t, np.random.default_rng(3), noise=0.5) for t in self.tasks]
        again = [self.family.expert(t, np.random.default_rng(3), noise=0.5) for t in self.tasks]
        other = [self.family.expert(t, np.random.default_rng(4), noise=0.5) for t in self.tasks]
        assert first == again and first != other

    def test_filler_is_drawn_after_the_mistake(self):
        # The same rng state gives the same (possibly wrong) answer with and without filler.
        plain = ArithmeticFamily(digits=(1, 2), operators="+")
        for index, task in enumerate(self.tasks):
            with_filler = self.family.expert(task, np.random.default_rng(index), noise=0.5)
            without = plain.expert(task, np.random.default_rng(index), noise=0.5)
            assert self._split(with_filler)[1] == without

    def test_verifier_still_checks_the_answer(self):
        task = self.tasks[0]
        filler = "".join(FILLER_WORDS)
        wrong = self.family.verify(task, f"{filler}<answer>{task.answer + 1}</answer>")
        assert wrong.reward == 0.0 and wrong.info["reason"].startswith("wrong:")
        assert self.family.verify(task, filler).reward == 0.0  # filler without an answer
        assert self.family.verify(task, f"{filler}<answer>{task.answer}</answer>").reward == 1.0

    def test_each_filler_word_is_one_builtin_token(self):
        tokenizer = load_tokenizer()
        ids = [tokenizer.encode(w, add_special_tokens=False) for w in FILLER_WORDS]
        assert all(len(i) == 1 for i in ids) and len({i[0] for i in ids}) == len(FILLER_WORDS)
        family = ArithmeticFamily(filler=32)
        rng = np.random.default_rng(5)
        for index in range(50):
            response = family.expert(family.generate("train", index), rng)
            tokens = tokenizer.encode(response, add_special_tokens=False)
            assert len(tokens) == 32 + len(
                tokenizer.encode(response[response.index("<answer>") :], add_special_tokens=False)
            )
            assert set(tokens[:32]) <= {i[0] for i in ids}

    def test_zero_filler_is_the_plain_expert(self):
        plain, zero = ArithmeticFamily(), ArithmeticFamily(filler=0)
        task = plain.generate("train", 0)
        assert plain.expert(task, np.random.default_rng(0), noise=0.5) == zero.expert(
            task, np.random.default_rng(0), noise=0.5
        )

    @pytest.mark.parametrize("filler", [-1, 1.5, True, "8", None])
    def test_bad_filler(self, filler):
        with pytest.raises(ValueError, match=r"filler must be an int >= 0 .* got"):
            ArithmeticFamily(filler=filler)
