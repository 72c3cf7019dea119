"""Countdown family: safe parser, exact arithmetic, number usage, splits and the noisy expert."""

import collections
import hashlib
import operator
import re
from fractions import Fraction

import numpy as np
import pytest

from rljax.envs.base import Task, TaskFamily
from rljax.envs.countdown import CountdownFamily, ExpressionError, evaluate, leaves, parse, render


def _task(numbers, target):
    meta = {"numbers": numbers}
    return Task(uid="countdown/train/0", family="countdown", prompt="", answer=target, meta=meta)


def _scored_zero(verdict):
    """The reason of a zero-reward verdict."""
    assert verdict.reward == 0.0
    return verdict.info["reason"]


def _reference_value(tree):
    """Independent evaluation of a (op, left, right) tree with Python's Fraction operators."""
    if isinstance(tree, int):
        return Fraction(tree)
    op = {"+": operator.add, "-": operator.sub, "*": operator.mul, "/": operator.truediv}[tree[0]]
    return op(_reference_value(tree[1]), _reference_value(tree[2]))


def test_is_a_task_family():
    assert isinstance(CountdownFamily(), TaskFamily)


@pytest.mark.parametrize(
    "text, tree, value",
    [
        ("(50-25)*9", ("*", ("-", 50, 25), 9), 225),
        ("2+3*4", ("+", 2, ("*", 3, 4)), 14),  # * binds tighter
        ("10-5-2", ("-", ("-", 10, 5), 2), 3),  # left associative
        ("100 / 3", ("/", 100, 3), Fraction(100, 3)),  # exact, not 33.33
        (" ( 7 ) ", 7, 7),
    ],
)
def test_parse_and_evaluate(text, tree, value):
    assert parse(text) == tree
    assert evaluate(parse(text)) == value


@pytest.mark.parametrize(
    "tree, text",
    [
        (("*", ("-", 50, 25), 9), "(50-25)*9"),
        (("-", 10, ("-", 5, 2)), "10-(5-2)"),  # brackets needed on the right of -
        (("-", ("-", 10, 5), 2), "10-5-2"),
        (("/", 8, ("*", 2, 2)), "8/(2*2)"),
        (("+", 1, ("*", 2, 3)), "1+2*3"),
    ],
)
def test_render_uses_the_fewest_brackets(tree, text):
    assert render(tree) == text


def test_render_parse_round_trip_keeps_value():
    rng = np.random.default_rng(0)
    for _ in range(200):
        tree = int(rng.integers(1, 20))
        for _ in range(int(rng.integers(1, 5))):
            other, op = int(rng.integers(1, 20)), "+-*/"[int(rng.integers(4))]
            tree = (op, tree, other) if rng.random() < 0.5 else (op, other, tree)
        try:
            expected = _reference_value(tree)
        except ZeroDivisionError:
            with pytest.raises(ExpressionError, match="division by zero"):
                evaluate(parse(render(tree)))
            continue
        assert evaluate(parse(render(tree))) == expected
        assert sorted(leaves(parse(render(tree)))) == sorted(leaves(tree))


@pytest.mark.parametrize(
    "text, message",
    [
        ("__import__('os')", "unexpected character '_'"),
        ("2**3", "expected a number or '(' but found '*'"),
        ("(2+3", "missing ')'"),
        ("2+3)", "unexpected ')' after a complete expression"),
        ("-3+5", "expected a number or '(' but found '-'"),
        ("03+5", "leading zero"),
        ("2.5*2", "unexpected character '.'"),
        ("4+4 = 8", "unexpected character '='"),
        ("", "empty expression"),
        ("3+", "expression ends"),
        ("1+" * 200 + "1", "at most 256 allowed"),
    ],
)
def test_parse_rejects(text, message):
    with pytest.raises(ExpressionError, match=re.escape(message)):
        parse(text)


class TestVerify:
    family = CountdownFamily()

    def _verdict(self, numbers, target, expression):
        return self.family.verify(
            _task(numbers, target), f"<think>try</think><answer>{expression}</answer>"
        )

    def test_correct(self):
        # (25*3 - 50) * 7 = (75 - 50) * 7 = 175.
        verdict = self._verdict([3, 7, 25, 50], 175, "(25*3-50)*7")
        assert verdict.reward == 1.0 and verdict.info["reason"] == "correct"

    def test_subset_of_numbers_is_allowed(self):
        assert self._verdict([2, 5, 7], 10, "2*5").reward == 1.0

    def test_exact_rational_arithmetic(self):
        # In floats (1/10 + 2/10) * 10 = 3.0000000000000004; exactly it is 3.
        assert (1 / 10 + 2 / 10) * 10 != 3
        assert self._verdict([1, 10, 2, 10, 10], 3, "(1/10+2/10)*10").reward == 1.0

    def test_repeated_numbers_can_each_be_used_once(self):
        assert self._verdict([5, 5, 2], 10, "5+5").reward == 1.0
        verdict = self._verdict([5, 5, 2], 15, "5+5+5")
        assert _scored_zero(verdict) == "invalid: 5 is used 3 times but given 2 time(s)"

    def test_number_used_twice(self):
        verdict = self._verdict([2, 5, 7], 10, "5+5")
        assert _scored_zero(verdict) == "invalid: 5 is used 2 times but given 1 time(s)"

    def test_number_not_given(self):
        verdict = self._verdict([2, 5, 7], 10, "7+3")
        assert _scored_zero(verdict) == "invalid: 3 is not one of the numbers [2, 5, 7]"

    def test_wrong_value_reports_the_exact_value(self):
        # 7 / 2 + 5 = 17/2.
        verdict = self._verdict([2, 5, 7], 10, "7/2+5")
        assert _scored_zero(verdict) == "wrong: the expression equals 17/2, expected 10"

    def test_division_by_zero_is_malformed(self):
        verdict = self._verdict([2, 5, 7, 7], 10, "5/(7-7)")
        assert verdict.reward == 0.0 and verdict.info["reason"] == "malformed: division by zero"

    def test_syntax_error_and_missing_tag(self):
        reason = self._verdict([2, 5], 10, "2x5").info["reason"]
        assert reason.startswith("malformed: unexpected character 'x'")
        verdict = self.family.verify(_task([2, 5], 10), "2*5")
        assert verdict.reward == 0.0 and "no <answer>" in verdict.info["reason"]


class TestGenerate:
    family = CountdownFamily(
        num_numbers=(3, 4), number_range=(1, 50), target_range=(10, 200), seed=5
    )

    def test_instances_are_deterministic_and_solvable(self):
        same = CountdownFamily(
            num_numbers=(3, 4), number_range=(1, 50), target_range=(10, 200), seed=5
        )
        sizes = set()
        for index in range(60):
            task = self.family.generate("train", index)
            assert task == same.generate("train", index)
            numbers, target = task.meta["numbers"], task.answer
            sizes.add(len(numbers))
            assert all(1 <= x <= 50 for x in numbers)
            assert 10 <= target <= 200 and target not in numbers
            assert str(numbers) in task.prompt and f"make {target}" in task.prompt
            # The scripted solution uses every number exactly once and reaches the target.
            solution = parse(task.meta["solution"])
            assert collections.Counter(leaves(solution)) == collections.Counter(numbers)
            assert _reference_value(solution) == target
        assert sizes == {3, 4}

    def test_heldout_shares_no_instance_with_train(self):
        knobs = {"num_numbers": 2, "number_range": (1, 9), "target_range": (1, 30)}
        small = [CountdownFamily(**knobs, seed=seed) for seed in (0, 1)]

        def content(task):
            return f"{sorted(task.meta['numbers'])}->{task.answer}"

        train = {content(f.generate("train", i)) for f in small for i in range(300)}
        heldout = {content(f.generate("heldout", i)) for f in small for i in range(100)}
        assert len(train) > 40 and len(heldout) > 10
        assert not train & heldout
        for text, split in [(t, "train") for t in train] + [(t, "heldout") for t in heldout]:
            unit = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "big") / 2**64
            assert (unit < 0.2) == (split == "heldout")

    @pytest.mark.parametrize(
        "kwargs, message",
        [
            ({"num_numbers": 1}, "num_numbers must be"),
            ({"number_range": (0, 9)}, "number_range must be"),
            ({"target_range": (9, 1)}, "target_range must be"),
            ({"heldout_fraction": 0.0}, "heldout_fraction must be in"),
        ],
    )
    def test_bad_knobs(self, kwargs, message):
        with pytest.raises(ValueError, match=message):
            CountdownFamily(**kwargs)


class TestExpert:
    family = CountdownFamily()
    tasks = [CountdownFamily().generate("heldout", i) for i in range(150)]

    def test_clean_expert_solves_every_task(self):
        rng = np.random.default_rng(0)
        assert all(
            self.family.verify(t, self.family.expert(t, rng)).reward == 1.0 for t in self.tasks
        )

    def test_mistakes_always_score_zero_and_are_realistic(self):
        rng = np.random.default_rng(1)
        reasons = collections.Counter()
        for task in self.tasks:
            verdict = self.family.verify(task, self.family.expert(task, rng, noise=1.0))
            assert verdict.reward == 0.0
            reasons[verdict.info["reason"].split(":")[0]] += 1
        # Both kinds of realistic slip occur: a wrong operator (wrong value) and a reused number.
        assert set(reasons) == {"wrong", "invalid"}

    def test_noise_rate(self):
        rng = np.random.default_rng(2)
        rewards = [
            self.family.verify(t, self.family.expert(t, rng, noise=0.3)).reward for t in self.tasks
        ]
        wrong = rewards.count(0.0)
        # Binomial(150, 0.3): mean 45, std 5.6.
        assert 25 <= wrong <= 65
