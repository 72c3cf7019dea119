"""Countdown: reach a target with the given numbers using + - * / and brackets, each at most once.

The response ends with `<answer>EXPRESSION</answer>`. The verifier parses the expression with a
small recursive-descent parser (no `eval`), checks that every literal is one of the numbers and
that no number is used more often than it appears, and evaluates with exact rationals
(`fractions.Fraction`), so 7/2*2 = 7 exactly and intermediate fractions are allowed.
Instances are deterministic in (seed, split, index); the split of an instance is a hash of its
sorted numbers and target (`registry.sample_in_split`), so train and held-out never overlap.
"""

from __future__ import annotations

import collections
import dataclasses
import re
from fractions import Fraction
from typing import Union

import numpy as np

from rljax.envs import metrics, registry
from rljax.envs.base import Task, Verdict, check_split

# An expression tree: a number, or (operator, left, right).
Node = Union[int, tuple[str, "Node", "Node"]]

MAX_EXPRESSION_CHARS = 256
_PRECEDENCE = {"+": 1, "-": 1, "*": 2, "/": 2}
_TOKEN = re.compile(r"\s*(?:(\d+)|([-+*/()]))")


class ExpressionError(ValueError):
    """A Countdown expression that cannot be parsed or evaluated."""


@dataclasses.dataclass(frozen=True)
class CountdownFamily:
    """Countdown instances with a scripted solution that uses every number exactly once.

    Attributes:
        num_numbers: how many numbers are given, an int >= 2 or an inclusive range (lo, hi).
        number_range: inclusive range (lo, hi) of the given numbers, lo >= 1.
        target_range: inclusive range (lo, hi) of the target; the target is never one of the
            numbers (no one-number solutions).
        seed: family seed.
        heldout_fraction: share of the instance space (by content hash) reserved for "heldout".
        name: family name, the first field of every uid.
        answer_format: "tag" (the expression as `<answer>EXPR</answer>` ending the response) or
            "boxed" (the prompt asks for `\\boxed{EXPR}`; the last box of the response is read,
            LaTeX operators and a trailing "= target" tolerated: `boxed_expression`).
        system: system-turn text of every task (None: no system turn).
    """

    num_numbers: int | tuple[int, int] = (3, 4)
    number_range: tuple[int, int] = (1, 99)
    target_range: tuple[int, int] = (1, 100)
    seed: int = 0
    heldout_fraction: float = 0.2
    name: str = "countdown"
    answer_format: str = "tag"
    system: str | None = None

    def __post_init__(self):
        metrics.check_answer_format(self.answer_format)
        for knob, value, minimum in (
            ("num_numbers", self._counts, 2),
            ("number_range", self.number_range, 1),
            ("target_range", self.target_range, 1),
        ):
            if not (
                isinstance(value, tuple) and len(value) == 2 and minimum <= value[0] <= value[1]
            ):
                raise ValueError(
                    f"{knob} must be an inclusive range (lo, hi) with {minimum} <= lo <= hi, got {value!r}"
                )
        registry.check_heldout_fraction(self.heldout_fraction)

    def generate(self, split: str, index: int) -> Task:
        """Returns instance `index` of `split`.

        Args:
            split: "train" or "heldout".
            index: any non-negative int.

        Returns:
            The task; `answer` is the target, `meta` holds "numbers" and a "solution" expression.
        """
        check_split(split)
        numbers, target, solution = registry.sample_in_split(
            self._draw,
            seed=self.seed,
            split=split,
            index=index,
            heldout_fraction=self.heldout_fraction,
        )
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=(
                f"Using the numbers {numbers}, make {target} with + - * / and brackets, "
                "each number at most once."
                + (
                    " Please reason step by step, and put your final expression within \\boxed{}."
                    if self.answer_format == "boxed"
                    else ""
                )
            ),
            answer=target,
            system=self.system,
            meta={"numbers": numbers, "solution": render(solution)},
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Reward 1 iff the final `<answer>` expression uses allowed numbers and equals the target.

        Args:
            task: a task of this family.
            response: the full response (text before the answer tag is allowed).

        Returns:
            The verdict; `info["reason"]` starts with "correct", "wrong", "invalid" (a number not
            given or used too often) or "malformed" (no tag, a syntax error, division by zero).
        """
        content, reason = metrics.extract_final_answer(response, self.answer_format)
        if content is None:
            return Verdict(0.0, {"reason": reason})
        if self.answer_format == "boxed":
            content = boxed_expression(content)
        try:
            tree = parse(content)
            value = evaluate(tree)
        except ExpressionError as error:
            return Verdict(0.0, {"reason": f"malformed: {error}"})
        overused = _overused(leaves(tree), task.meta["numbers"])
        if overused:
            return Verdict(0.0, {"reason": f"invalid: {overused}"})
        if value != task.answer:
            return Verdict(
                0.0, {"reason": f"wrong: the expression equals {value}, expected {task.answer}"}
            )
        return Verdict(1.0, {"reason": "correct"})

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """The scripted solution; with probability `noise` it carries a realistic mistake.

        Mistakes: a swapped operator, a number used twice, a number misread (one that was not
        given). The mistaken answer always scores 0.

        Args:
            task: a task of this family.
            rng: randomness for the mistake.
            noise: probability of a mistake, in [0, 1].

        Returns:
            "<answer>EXPRESSION</answer>".
        """
        if not 0.0 <= noise <= 1.0:
            raise ValueError(f"noise must be in [0, 1], got {noise!r}")
        tree = parse(task.meta["solution"])
        if rng.random() < noise:
            tree = self._mistake(task, tree, rng)
        return self._wrap(render(tree))

    def _wrap(self, expression: str) -> str:
        if self.answer_format == "boxed":
            return f"\\boxed{{{expression}}}"
        return f"<answer>{expression}</answer>"

    def _mistake(self, task: Task, tree: Node, rng: np.random.Generator) -> Node:
        numbers = task.meta["numbers"]
        paths = _paths(tree)
        candidates = []
        for path in [p for p in paths if not isinstance(_get(tree, p), int)]:
            op = _get(tree, path)[0]
            for new_op in "+-*/".replace(op, ""):
                candidates.append(_replace(tree, path, (new_op,) + _get(tree, path)[1:]))
        leaf_paths = [p for p in paths if isinstance(_get(tree, p), int)]
        for path in leaf_paths:
            for other in leaf_paths:
                if _get(tree, other) != _get(tree, path):
                    candidates.append(_replace(tree, path, _get(tree, other)))
        order = rng.permutation(len(candidates))
        for i in order:
            if self.verify(task, self._wrap(render(candidates[i]))).reward == 0.0:
                return candidates[i]
        return _replace(tree, leaf_paths[0], max(numbers) + 1)

    @property
    def _counts(self) -> tuple[int, int]:
        return (
            (self.num_numbers, self.num_numbers)
            if isinstance(self.num_numbers, int)
            else self.num_numbers
        )

    def _draw(self, rng: np.random.Generator) -> tuple[str, tuple[list[int], int, Node]]:
        low, high = self.number_range
        while True:
            count = int(rng.integers(self._counts[0], self._counts[1] + 1))
            numbers = [int(x) for x in rng.integers(low, high + 1, size=count)]
            tree = _random_tree(numbers, rng)
            target = evaluate(tree)
            if self.target_range[0] <= target <= self.target_range[1] and target not in numbers:
                content = f"{sorted(numbers)}->{int(target)}"
                return content, (numbers, int(target), tree)


_LATEX_OPERATORS = {
    "\\times": "*",
    "\\cdot": "*",
    "\\div": "/",
    "\u00d7": "*",
    "\u00f7": "/",
    "\\left": "",
    "\\right": "",
    "$": "",
}


def boxed_expression(content: str) -> str:
    """Normalises a boxed Countdown expression as a real model writes it.

    LaTeX and Unicode operators become + - * / (`\\times`, `\\cdot`, `\\div`, ×, ÷;
    `\\left(`/`\\right)` become brackets, `$` is dropped) and a trailing "= N" is cut: the
    expression is the text before the first "=".

    Args:
        content: the text inside the box.

    Returns:
        The expression text, for `parse`.
    """
    for latex, plain in _LATEX_OPERATORS.items():
        content = content.replace(latex, plain)
    return content.split("=")[0].strip()


def parse(expression: str) -> Node:
    """Parses an expression of non-negative integers, + - * /, and brackets (no unary minus).

    Grammar: expr = term (("+" | "-") term)*; term = factor (("*" | "/") factor)*;
    factor = INTEGER | "(" expr ")". Integers have no leading zeros.

    Args:
        expression: the text, at most `MAX_EXPRESSION_CHARS` characters; whitespace is ignored.

    Returns:
        The expression tree.

    Raises:
        ExpressionError: naming the offending character or token.
    """
    if len(expression) > MAX_EXPRESSION_CHARS:
        raise ExpressionError(
            f"expression has {len(expression)} characters, at most {MAX_EXPRESSION_CHARS} allowed"
        )
    tokens, position = [], 0
    while expression[position:].strip():
        match = _TOKEN.match(expression, position)
        if match is None:
            bad = expression[position:].lstrip()[0]
            raise ExpressionError(f"unexpected character {bad!r} in {expression!r}")
        number, symbol = match.groups()
        if number is not None and len(number) > 1 and number[0] == "0":
            raise ExpressionError(f"number {number!r} has a leading zero")
        tokens.append(int(number) if number is not None else symbol)
        position = match.end()
    if not tokens:
        raise ExpressionError("empty expression")
    tree, end = _parse_sum(tokens, 0)
    if end != len(tokens):
        raise ExpressionError(
            f"unexpected {tokens[end]!r} after a complete expression in {expression!r}"
        )
    return tree


def evaluate(tree: Node) -> Fraction:
    """Exact rational value of an expression tree.

    Args:
        tree: a number or (operator, left, right).

    Returns:
        The value as a `Fraction` (so 7/2*2 is exactly 7).

    Raises:
        ExpressionError: on division by zero.
    """
    if isinstance(tree, int):
        return Fraction(tree)
    op, left, right = tree
    a, b = evaluate(left), evaluate(right)
    if op == "+":
        return a + b
    if op == "-":
        return a - b
    if op == "*":
        return a * b
    if b == 0:
        raise ExpressionError("division by zero")
    return a / b


def leaves(tree: Node) -> list[int]:
    """Lists the numbers an expression tree uses.

    Args:
        tree: a number or (operator, left, right).

    Returns:
        The numbers, left to right, repeats included.
    """
    return [tree] if isinstance(tree, int) else leaves(tree[1]) + leaves(tree[2])


def render(tree: Node) -> str:
    """Writes a tree with the fewest brackets that keep its value, e.g. "(50-25)*9".

    Args:
        tree: a number or (operator, left, right).

    Returns:
        The expression text (no spaces); `parse` of it has the same value and numbers.
    """
    if isinstance(tree, int):
        return str(tree)
    op, left, right = tree
    left_text, right_text = render(left), render(right)
    if not isinstance(left, int) and _PRECEDENCE[left[0]] < _PRECEDENCE[op]:
        left_text = f"({left_text})"
    if not isinstance(right, int) and (
        _PRECEDENCE[right[0]] < _PRECEDENCE[op]
        or (_PRECEDENCE[right[0]] == _PRECEDENCE[op] and op in "-/")
    ):
        right_text = f"({right_text})"
    return f"{left_text}{op}{right_text}"


def _parse_sum(tokens: list, i: int) -> tuple[Node, int]:
    tree, i = _parse_product(tokens, i)
    while i < len(tokens) and tokens[i] in ("+", "-"):
        right, j = _parse_product(tokens, i + 1)
        tree, i = (tokens[i], tree, right), j
    return tree, i


def _parse_product(tokens: list, i: int) -> tuple[Node, int]:
    tree, i = _parse_factor(tokens, i)
    while i < len(tokens) and tokens[i] in ("*", "/"):
        right, j = _parse_factor(tokens, i + 1)
        tree, i = (tokens[i], tree, right), j
    return tree, i


def _parse_factor(tokens: list, i: int) -> tuple[Node, int]:
    if i >= len(tokens):
        raise ExpressionError("expression ends where a number or '(' was expected")
    token = tokens[i]
    if isinstance(token, int):
        return token, i + 1
    if token == "(":
        tree, j = _parse_sum(tokens, i + 1)
        if j >= len(tokens) or tokens[j] != ")":
            raise ExpressionError("unbalanced brackets: missing ')'")
        return tree, j + 1
    raise ExpressionError(f"expected a number or '(' but found {token!r}")


def _overused(used: list[int], numbers: list[int]) -> str:
    available = collections.Counter(numbers)
    for number, count in sorted(collections.Counter(used).items()):
        if number not in available:
            return f"{number} is not one of the numbers {numbers}"
        if count > available[number]:
            return f"{number} is used {count} times but given {available[number]} time(s)"
    return ""


def _random_tree(numbers: list[int], rng: np.random.Generator) -> Node:
    """Combines all numbers pairwise at random, keeping every intermediate a positive integer."""
    pool: list[tuple[int, Node]] = [(x, x) for x in numbers]
    while len(pool) > 1:
        i, j = (int(k) for k in rng.choice(len(pool), size=2, replace=False))
        (a, left), (b, right) = pool[i], pool[j]
        op = "+-*/"[int(rng.integers(4))]
        if op in "-/" and a < b:
            (a, left), (b, right) = (b, right), (a, left)
        if (op == "-" and a == b) or (op == "/" and a % b):
            op = "+"
        value = {"+": a + b, "-": a - b, "*": a * b, "/": a // b}[op]
        pool = [entry for k, entry in enumerate(pool) if k not in (i, j)] + [
            (value, (op, left, right))
        ]
    return pool[0][1]


def _paths(tree: Node, prefix: tuple[int, ...] = ()) -> list[tuple[int, ...]]:
    if isinstance(tree, int):
        return [prefix]
    return [prefix] + _paths(tree[1], prefix + (1,)) + _paths(tree[2], prefix + (2,))


def _get(tree: Node, path: tuple[int, ...]) -> Node:
    for step in path:
        tree = tree[step]
    return tree


def _replace(tree: Node, path: tuple[int, ...], new: Node) -> Node:
    if not path:
        return new
    parts = list(tree)
    parts[path[0]] = _replace(tree[path[0]], path[1:], new)
    return tuple(parts)
