"""Native rewards of the nine capabilities on hand-worked cases (golongrl.md 6 E2 and 8.1), format gate."""

import math

import pytest

from rljax.envs.base import Task
from rljax.envs.longcontext import (
    ComprehensionFamily,
    ExhaustiveRetrievalFamily,
    GradedRankingFamily,
    NumericalReasoningFamily,
    PreciseRetrievalFamily,
    SequenceOrderingFamily,
    StructuredExtractionFamily,
    StructuredMatchingFamily,
    SummarizationFamily,
)


def _task(answer, task_id=0):
    return Task(uid="hand/train/0", family="hand", prompt="", answer=answer, task_id=task_id)


def _respond(*items):
    return "<think> reading </think>\n<answer>\n" + "\n".join(items) + "\n</answer>"


def _reward(family, answer, *items):
    return family.verify(_task(answer), _respond(*items)).reward


# (family, gold, predicted items, expected reward, worked out by hand)
CASES = [
    # EM: normalised (case, whitespace) whole-answer equality.
    (PreciseRetrievalFamily(), "oslo", ["  OSLO "], 1.0),
    (PreciseRetrievalFamily(), "1987", ["1978"], 0.0),
    (PreciseRetrievalFamily(), "1987", ["1987", "1988"], 0.0),
    # Accuracy: the first item is the letter.
    (ComprehensionFamily(), "B", ["b"], 1.0),
    (ComprehensionFamily(), "B", ["C", "B"], 0.0),
    # Set F1 (E2): P = 2/3, R = 2/4, F1 = 2 * (1/3) / (7/6) = 4/7.
    (ExhaustiveRetrievalFamily(), ["E3", "E9", "E12", "E20"], ["E3", "E9", "E4"], 4 / 7),
    (ExhaustiveRetrievalFamily(), ["E3", "E9"], ["E9", "E3", "E9"], 1.0),
    # Numeric EM: pred[0] must be an optional minus and digits.
    (NumericalReasoningFamily(), -3, ["-3"], 1.0),
    (NumericalReasoningFamily(), 162, ["162.0"], 0.0),
    (NumericalReasoningFamily(), 162, ["162", "7"], 1.0),
    # IoU (E2): pred [a, b, b], gold [a, b, c]: matches 2, 2 / (3 + 3 - 2) = 0.5.
    (
        StructuredExtractionFamily(),
        ["E1 , 1990", "E2 , 1991", "E3 , 1992"],
        ["E1 , 1990", "E2 , 1991", "E2 , 1991"],
        0.5,
    ),
    # SubEM (E2): 1 of 3 gold items present; extras cost nothing.
    (StructuredMatchingFamily(), ["E3", "E9", "E12"], ["E3", "E7"], 1 / 3),
    (StructuredMatchingFamily(), ["E3"], ["E3", "E7", "E8"], 1.0),
    # NDCG (E2): DCG = 2 + 3/log2(3), IDCG = 3 + 2/log2(3) + 1/2.
    (
        GradedRankingFamily(),
        ["a", "b", "c"],
        ["b", "a", "d"],
        (2 + 3 / math.log2(3)) / (3 + 2 / math.log2(3) + 0.5),
    ),
    # [a, b, a]: the duplicate keeps its last position, so the ranking is [b, a], same value.
    (
        GradedRankingFamily(),
        ["a", "b", "c"],
        ["a", "b", "a"],
        (2 + 3 / math.log2(3)) / (3 + 2 / math.log2(3) + 0.5),
    ),
    # Pairwise (E2): 5 of 6 gold pairs in order over C(4, 2); [e2, e1]: no pair right.
    (SequenceOrderingFamily(), ["e1", "e2", "e3", "e4"], ["e1", "e3", "e2", "e4"], 5 / 6),
    (SequenceOrderingFamily(), ["e1", "e2", "e3"], ["e2", "e1"], 0.0),
    # ROUGE-L (E2): LCS 8 of 9 tokens each side, F = 8/9 in both variants.
    (
        SummarizationFamily(),
        "E3 moved to 12 ;\nE9 scored 57 ;",
        ["E3 moved to 12 ;", "E9 scored 75 ;"],
        8 / 9,
    ),
]


@pytest.mark.parametrize("family, gold, items, expected", CASES)
def test_hand_worked_rewards(family, gold, items, expected):
    assert _reward(family, gold, *items) == pytest.approx(expected, abs=1e-9)


def test_rouge_l_variants():
    # pred 5 tokens, ref 9 tokens, LCS 5: P = 1, R = 5/9. package: beta = 9/5,
    # F = (1 + 81/25)(5/9) / (5/9 + 81/25) = 0.620609; F1 = 2(5/9)/(14/9) = 5/7.
    gold = "E3 moved to 12 ;\nE9 scored 57 ;"
    package = SummarizationFamily()
    f1 = SummarizationFamily(rouge_f="f1")
    assert _reward(package, gold, "E3 moved to 12 ;") == pytest.approx(0.620609, abs=1e-6)
    assert _reward(f1, gold, "E3 moved to 12 ;") == pytest.approx(5 / 7, abs=1e-9)
    assert _reward(package, gold, "e3 moved to 12 ;", "e9 scored 57 ;") == pytest.approx(
        1.0, abs=1e-9
    )


def test_verdict_info():
    family = ExhaustiveRetrievalFamily()
    partial = family.verify(_task(["E3", "E9", "E12", "E20"]), _respond("E3", "E9", "E4"))
    assert partial.info == {
        "reason": "partial: set_f1 = 0.571429",
        "metric": "set_f1",
        "score": pytest.approx(4 / 7, abs=1e-12),
    }
    assert family.verify(_task(["E3"]), _respond("E3")).info["reason"] == "correct: set_f1 = 1"
    assert family.verify(_task(["E3"]), _respond("E4")).info["reason"] == "wrong: set_f1 = 0"
    rouge = SummarizationFamily().verify(_task("E3 color red ;"), _respond("E3 color red ;"))
    assert rouge.info["reason"] == "correct: rouge_l = 1"


@pytest.mark.parametrize(
    "response, why",
    [
        ("<answer>oslo</answer>", "exactly one </think>"),  # no thinking at all
        ("<think> a </think> <think> b </think><answer>oslo</answer>", "exactly one </think>"),
        ("<think> a <think> b </think><answer>oslo</answer>", "exactly one </think>"),
        ("<think> a </think> oslo", "no <answer>"),
        ("<think> a </think><answer>oslo</answer> done", "text after </answer>"),
        (
            "<think> <answer>oslo</answer> </think>",
            "no <answer>",
        ),  # the answer must follow the thinking
        ("<think> a </think><answer>oslo</answer><answer>oslo</answer>", "2 <answer>"),
    ],
)
def test_malformed_responses_score_zero(response, why):
    verdict = PreciseRetrievalFamily().verify(_task("oslo"), response)
    assert verdict.reward == 0.0
    assert verdict.info["reason"].startswith("malformed:") and why in verdict.info["reason"]


def test_thinking_without_open_tag_passes_the_gate():
    # golongrl.md 8.1: one </think> and at most one <think> (a chat template may open it).
    assert (
        PreciseRetrievalFamily()
        .verify(_task("oslo"), "reading </think><answer>oslo</answer>")
        .reward
        == 1.0
    )


@pytest.mark.parametrize(
    "family", [ExhaustiveRetrievalFamily(), GradedRankingFamily(), SummarizationFamily()]
)
def test_empty_answer_scores_zero(family):
    gold = "E3 color red ;" if isinstance(family, SummarizationFamily) else ["E3", "E9"]
    assert family.verify(_task(gold), "<think> x </think><answer>\n\n</answer>").reward == 0.0
