"""Multi-digit integer arithmetic: "Compute 37+45." -> "<answer>82</answer>".

For a real (instruction-tuned) model, `answer_format="boxed"` asks for the answer the way math
papers do ("Please reason step by step, and put your final answer within \\boxed{}.") and reads the
last `\\boxed{}` of the response, tolerating LaTeX formatting of the integer; `system` adds a system
turn to every task.

`filler=F` (methods/delta.md section 8, "formatted arithmetic with filler") makes the expert write F
filler words drawn uniformly from the small shared set `FILLER_WORDS` before its answer, e.g.
" think. now:<answer>82</answer>" for F = 4: structure that correct and wrong responses share,
which dilutes DelTA's side centroids. Each filler word is one token of the built-in tokenizer (and
their concatenations tokenize word by word), so F words are F tokens there. The verifier reads only
the final answer, as without filler.

A single-turn verifiable family small enough for a tiny model to learn on CPU. Difficulty knobs:
operand digit counts, number of operands and the operator set (+, -, *; standard precedence, `*`
binds tighter). Instances are deterministic in (seed, split, index), and the split of an instance
is a hash of its expression (`registry.sample_in_split`), so train and held-out never overlap.
"""

from __future__ import annotations

import dataclasses
import re

import numpy as np

from rljax.envs import metrics, registry
from rljax.envs.base import Task, Verdict, check_split

OPERATORS = "+-*"
# The shared filler set: delta.md section 8's "Let me think. Step:" words, each picked to be one
# token of the built-in tokenizer ("Let", "me" and "Step" are two there).
FILLER_WORDS = (" think", " step", " now", " so", ".", ":")
_CANONICAL_INT = re.compile(r"0|-?[1-9][0-9]*")


@dataclasses.dataclass(frozen=True)
class ArithmeticFamily:
    """Integer expressions over multi-digit operands, answered as `<answer>N</answer>`.

    Attributes:
        digits: digit count of each operand, an int or an inclusive range (lo, hi); each operand
            draws its digit count uniformly from the range, then a uniform number of that length.
        num_operands: operand count, an int >= 2 or an inclusive range (lo, hi).
        operators: the operators to draw from, a non-empty subset of "+-*".
        seed: family seed.
        heldout_fraction: share of the instance space (by content hash) reserved for "heldout".
        name: family name, the first field of every uid.
        answer_format: "tag" (answer as `<answer>N</answer>` ending the response) or "boxed" (the
            prompt asks for `\\boxed{N}`; the last box of the response is read).
        system: system-turn text of every task (None: no system turn).
        filler: F >= 0, the number of words from `FILLER_WORDS` the expert writes before its
            answer (0: none).
    """

    digits: int | tuple[int, int] = 2
    num_operands: int | tuple[int, int] = 2
    operators: str = "+-*"
    seed: int = 0
    heldout_fraction: float = 0.2
    name: str = "arithmetic"
    answer_format: str = "tag"
    system: str | None = None
    filler: int = 0

    def __post_init__(self):
        metrics.check_answer_format(self.answer_format)
        if not isinstance(self.filler, int) or isinstance(self.filler, bool) or self.filler < 0:
            raise ValueError(
                f"filler must be an int >= 0 (filler words before the answer), got {self.filler!r}"
            )
        _check_range("digits", self.digits, minimum=1)
        _check_range("num_operands", self.num_operands, minimum=2)
        ops = self.operators
        if not ops or set(ops) - set(OPERATORS) or len(set(ops)) < len(ops):
            raise ValueError(
                f"operators must be distinct characters from {OPERATORS!r}, got {ops!r}"
            )
        registry.check_heldout_fraction(self.heldout_fraction)

    def generate(self, split: str, index: int) -> Task:
        """Returns instance `index` of `split`: a prompt "Compute <expression>." and its value.

        Args:
            split: "train" or "heldout".
            index: any non-negative int.

        Returns:
            The task; `answer` is the integer value, `meta["expression"]` the expression.
        """
        check_split(split)
        expression = registry.sample_in_split(
            self._draw,
            seed=self.seed,
            split=split,
            index=index,
            heldout_fraction=self.heldout_fraction,
        )
        return Task(
            uid=f"{self.name}/{split}/{index}",
            family=self.name,
            prompt=f"Compute {expression}."
            + (f" {metrics.BOXED_INSTRUCTION}" if self.answer_format == "boxed" else ""),
            answer=evaluate(expression),
            system=self.system,
            meta={"expression": expression},
        )

    def verify(self, task: Task, response: str) -> Verdict:
        """Reward 1 iff the response's final answer N is the exact value.

        "tag": the response ends with `<answer>N</answer>` and N is a canonical integer (optional
        `-`, no leading zeros, no inner spaces or separators; whitespace around it inside the tags
        is ignored). "boxed": N is the last `\\boxed{N}` anywhere in the response, read as a real
        model writes it (`boxed_integer`: `$`, `\\text{}`, thousands separators, a `.0`). Anything
        else is malformed and scores 0.

        Args:
            task: a task of this family.
            response: the full response (text before the answer tag is allowed).

        Returns:
            The verdict; `info["reason"]` starts with "correct", "wrong" or "malformed".
        """
        content, reason = metrics.extract_final_answer(response, self.answer_format)
        if content is None:
            return Verdict(0.0, {"reason": reason})
        content = boxed_integer(content) if self.answer_format == "boxed" else content.strip()
        if not _CANONICAL_INT.fullmatch(content):
            reason = f"malformed: answer {content!r} is not a plain integer like -12 or 82"
            return Verdict(0.0, {"reason": reason})
        value = int(content)
        if value != task.answer:
            return Verdict(0.0, {"reason": f"wrong: expected {task.answer}, got {value}"})
        return Verdict(1.0, {"reason": "correct"})

    def expert(self, task: Task, rng: np.random.Generator, noise: float = 0.0) -> str:
        """A scripted answer; with probability `noise` the value carries a realistic mistake.

        Mistakes: a dropped or extra carry/borrow (off by a power of ten), an off-by-one digit,
        left-to-right evaluation ignoring precedence, a lost minus sign. With `filler` F > 0 the
        answer follows F words drawn uniformly from `FILLER_WORDS` (drawn after the mistake, so
        F = 0 consumes `rng` exactly as before the option existed).

        Args:
            task: a task of this family.
            rng: randomness for the mistake and the filler.
            noise: probability of a mistake, in [0, 1].

        Returns:
            F filler words, then "<answer>N</answer>" ("\\boxed{N}" with answer_format="boxed").
        """
        _check_noise(noise)
        value = task.answer
        if rng.random() < noise:
            value = _mistake(task.meta["expression"], value, rng)
        filler = ""
        if self.filler:
            filler = "".join(
                FILLER_WORDS[i] for i in rng.integers(len(FILLER_WORDS), size=self.filler)
            )
        return filler + (
            f"\\boxed{{{value}}}" if self.answer_format == "boxed" else f"<answer>{value}</answer>"
        )

    def _draw(self, rng: np.random.Generator) -> tuple[str, str]:
        count = int(rng.integers(_lo(self.num_operands), _hi(self.num_operands) + 1))
        operands = []
        for _ in range(count):
            num_digits = int(rng.integers(_lo(self.digits), _hi(self.digits) + 1))
            low = 0 if num_digits == 1 else 10 ** (num_digits - 1)
            operands.append(str(int(rng.integers(low, 10**num_digits))))
        ops = [self.operators[int(rng.integers(len(self.operators)))] for _ in range(count - 1)]
        expression = operands[0] + "".join(op + x for op, x in zip(ops, operands[1:]))
        return expression, expression


def boxed_integer(content: str) -> str:
    """Normalises a boxed integer as a real model writes it, e.g. "$1{,}234$" or "\\text{82}".

    Strips whitespace, `$` and `\\text{}`/`\\mathbf{}` wrappers, LaTeX spacing (`\\,` `\\!`),
    thousands separators in groups of three (`1,234`, `1{,}234`) and a zero fraction (`82.0`).

    Args:
        content: the text inside the box.

    Returns:
        The normalised text (a canonical integer when the content was one).
    """
    text = content.strip().strip("$").strip()
    wrapped = re.fullmatch(r"\\(?:text|textbf|mathbf|mathrm)\{(.*)\}", text)
    if wrapped:
        text = wrapped.group(1).strip()
    text = text.replace("\\,", "").replace("\\!", "").replace("{,}", ",").replace(" ", "")
    if re.fullmatch(r"-?\d{1,3}(?:,\d{3})+(?:\.0*)?", text):
        text = text.replace(",", "")
    if re.fullmatch(r"-?\d+\.0*", text):
        text = text.split(".")[0]
    return text


def evaluate(expression: str, *, left_to_right: bool = False) -> int:
    """Value of an expression of non-negative integers joined by + - * (no spaces, no brackets).

    Args:
        expression: e.g. "12+3*4".
        left_to_right: ignore precedence (the mistake a noisy expert makes).

    Returns:
        The integer value (standard precedence unless `left_to_right`).
    """
    parts = re.split(r"([+\-*])", expression)
    if len(parts) % 2 == 0 or not all(p.isdigit() for p in parts[::2]):
        raise ValueError(f"expression must be integers joined by + - *, got {expression!r}")
    operands, ops = [int(p) for p in parts[::2]], parts[1::2]
    if left_to_right:
        value = operands[0]
        for op, x in zip(ops, operands[1:]):
            value = value + x if op == "+" else value - x if op == "-" else value * x
        return value
    terms, signs = [operands[0]], [1]
    for op, x in zip(ops, operands[1:]):
        if op == "*":
            terms[-1] *= x
        else:
            terms.append(x)
            signs.append(1 if op == "+" else -1)
    return sum(s * t for s, t in zip(signs, terms))


def _mistake(expression: str, value: int, rng: np.random.Generator) -> int:
    units = abs(value) % 10
    candidates = [value + (1 if units < 9 else -1) * int(np.sign(value) or 1)]
    magnitude = len(str(abs(value)))
    if magnitude > 1:
        candidates.append(value + int(rng.choice([-1, 1])) * 10 ** int(rng.integers(1, magnitude)))
    precedence = evaluate(expression, left_to_right=True)
    if precedence != value:
        candidates.append(precedence)
    if value != 0 and "-" in expression:
        candidates.append(-value)
    return candidates[int(rng.integers(len(candidates)))]


def _lo(knob: int | tuple[int, int]) -> int:
    return knob if isinstance(knob, int) else knob[0]


def _hi(knob: int | tuple[int, int]) -> int:
    return knob if isinstance(knob, int) else knob[1]


def _check_range(name: str, knob: object, *, minimum: int) -> None:
    ok = isinstance(knob, int) and knob >= minimum
    if isinstance(knob, tuple) and len(knob) == 2 and all(isinstance(k, int) for k in knob):
        ok = minimum <= knob[0] <= knob[1]
    if not ok:
        raise ValueError(
            f"{name} must be an int >= {minimum} or a range (lo, hi) with {minimum} <= lo <= hi, got {knob!r}"
        )


def _check_noise(noise: float) -> None:
    if not 0.0 <= noise <= 1.0:
        raise ValueError(f"noise must be in [0, 1], got {noise!r}")
