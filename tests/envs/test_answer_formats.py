"""Real-model answer formats: `\\boxed{}` extraction and the system-prompt option (hand-worked)."""

import numpy as np
import pytest

from rljax.envs import metrics
from rljax.envs.arithmetic import ArithmeticFamily, boxed_integer
from rljax.envs.countdown import CountdownFamily, boxed_expression


@pytest.mark.parametrize(
    "response, content",
    [
        ("The answer is \\boxed{82}.", "82"),
        ("\\boxed{1} then \\boxed{2}", "2"),  # the last box wins
        ("\\boxed{\\frac{1}{2}}", "\\frac{1}{2}"),  # nested braces
        ("\\boxed{7} and an unclosed \\boxed{8", "7"),  # an unclosed box falls back to the last one
        ("<think>\n\\boxed{3}\n</think>\n\nso $\\boxed{ 4 }$", " 4 "),
    ],
)
def test_extract_boxed(response, content):
    assert metrics.extract_boxed(response) == (content, "")


@pytest.mark.parametrize("response", ["82", "\\boxed 82", "\\boxed{82", "<answer>82</answer>"])
def test_extract_boxed_malformed(response):
    content, reason = metrics.extract_boxed(response)
    assert content is None and reason.startswith("malformed")


def test_extract_final_answer_dispatches_and_checks():
    assert metrics.extract_final_answer("<answer>5</answer>", "tag") == ("5", "")
    assert metrics.extract_final_answer("\\boxed{5}", "boxed") == ("5", "")
    assert metrics.extract_final_answer("\\boxed{5}", "tag")[0] is None
    with pytest.raises(ValueError, match="answer_format"):
        metrics.extract_final_answer("x", "json")


@pytest.mark.parametrize(
    "content, expected",
    [
        ("82", "82"),
        (" $-12$ ", "-12"),
        ("\\text{82}", "82"),
        ("1,234", "1234"),
        ("1{,}234", "1234"),
        ("1\\,234", "1234"),
        ("82.0", "82"),
        ("12,34", "12,34"),  # not thousands groups: left alone (then malformed)
        ("007", "007"),  # leading zeros stay non-canonical
    ],
)
def test_boxed_integer(content, expected):
    assert boxed_integer(content) == expected


def test_arithmetic_boxed_prompt_system_and_verdicts():
    tag, boxed = ArithmeticFamily(), ArithmeticFamily(answer_format="boxed", system="Be brief.")
    t_tag, t_box = tag.generate("train", 3), boxed.generate("train", 3)
    assert t_box.answer == t_tag.answer and t_box.meta == t_tag.meta  # same instances
    assert t_tag.system is None and t_box.system == "Be brief."
    assert t_box.prompt == (
        t_tag.prompt + " Please reason step by step, and put your final answer within \\boxed{}."
    )
    value = t_box.answer
    assert boxed.verify(t_box, f"<think>\nadd\n</think>\n\n$\\boxed{{{value:,}}}$").reward == 1.0
    assert boxed.verify(t_box, f"\\boxed{{{value + 1}}}").info["reason"].startswith("wrong")
    assert boxed.verify(t_box, f"<answer>{value}</answer>").info["reason"].startswith("malformed")
    assert tag.verify(t_tag, f"\\boxed{{{value}}}").reward == 0.0  # the tag format is unchanged
    rng = np.random.default_rng(0)
    assert boxed.expert(t_box, rng) == f"\\boxed{{{value}}}"
    with pytest.raises(ValueError, match="answer_format"):
        ArithmeticFamily(answer_format="latex")


def test_boxed_expression():
    assert boxed_expression("(3 \\times 8) \\div 2 = 12") == "(3 * 8) / 2"
    assert boxed_expression("\\left(3+5\\right)\\cdot 3") == "(3+5)* 3"
    assert boxed_expression("$3 × 8 ÷ 2$") == "3 * 8 / 2"


def test_countdown_boxed():
    family = CountdownFamily(answer_format="boxed", system="S")
    task = family.generate("train", 0)
    assert task.system == "S" and task.prompt.endswith("final expression within \\boxed{}.")
    # Task 0: numbers [86, 3, 54], target 35 (see the prompt).
    assert task.meta["numbers"] == [86, 3, 54] and task.answer == 35
    assert family.verify(task, "so $\\boxed{86 - 54 + 3 = 35}$").reward == 1.0
    assert family.verify(task, "\\boxed{(86 - 54) \\times 3}").info["reason"].startswith("wrong")
    assert family.expert(task, np.random.default_rng(0)) == "\\boxed{86-54+3}"
    mistaken = family.expert(task, np.random.default_rng(0), noise=1.0)
    assert mistaken.startswith("\\boxed{") and family.verify(task, mistaken).reward == 0.0
