"""Reward metrics against hand-worked values (golongrl.md 6 E2 and 8.1)."""

import math

import pytest

from rljax.envs import metrics


class TestExtraction:
    def test_answer_after_thinking(self):
        assert metrics.extract_answer("<think>7+8=15</think> <answer>15</answer>\n") == ("15", "")

    @pytest.mark.parametrize(
        "response, reason",
        [
            ("15", "no <answer>"),
            ("<answer>15", "no <answer>"),
            ("<answer>1</answer><answer>2</answer>", "expected exactly one"),
            ("</answer>15<answer>", "comes before"),
            ("<answer>15</answer> I think", "text after </answer>"),
        ],
    )
    def test_malformed(self, response, reason):
        content, why = metrics.extract_answer(response)
        assert content is None
        assert why.startswith("malformed:") and reason in why

    def test_non_string_raises(self):
        with pytest.raises(ValueError, match="response must be a str"):
            metrics.extract_answer(None)

    @pytest.mark.parametrize(
        "response, scored",
        [
            ("<think>x</think>\nE 7", "\nE 7"),
            ("x</think>E 7", "E 7"),  # at most one <think>: zero is fine
            ("<think>x<think>y</think>E 7", None),  # two <think>
            ("<think>x</think>E</think>", None),  # two </think>
            ("E 7", None),  # no </think>
        ],
    )
    def test_format_gate(self, response, scored):
        assert metrics.format_gate(response) == scored

    def test_normalisation_and_items(self):
        assert metrics.normalize_text("  E  3\tMoved ") == "e 3 moved"
        # Empty lines are dropped by default (library choice), kept on request.
        assert metrics.answer_items("E 3\n\n  E 9 \n") == ["e 3", "e 9"]
        assert metrics.answer_items("E 3\n\nE 9", drop_empty=False) == ["e 3", "", "e 9"]


class TestScores:
    def test_exact_match(self):
        assert metrics.exact_match("E 7", "E 7") == 1.0  # E2
        assert metrics.exact_match("\n e  7\n", "E 7") == 1.0  # outer newlines and case ignored
        assert metrics.exact_match("E 7\nE 8", "E 7 E 8") == 0.0  # the newline is a token
        assert metrics.exact_match("E 7", "E 8") == 0.0

    def test_mcq_accuracy(self):
        assert metrics.mcq_accuracy(["B"], "B") == 1.0  # E2
        assert metrics.mcq_accuracy(["b", "C"], "B") == 1.0
        assert metrics.mcq_accuracy(["C", "B"], "B") == 0.0
        assert metrics.mcq_accuracy([], "B") == 0.0

    def test_set_f1(self):
        # E2: pred {E3,E9,E4}, gold {E3,E9,E12,E20}: P = 2/3, R = 2/4, F1 = 2*(1/3)/(7/6) = 4/7.
        f1 = metrics.set_f1(["E3", "E9", "E4"], ["E3", "E9", "E12", "E20"])
        assert f1 == pytest.approx(0.571429, abs=1e-6)
        # Duplicates do not count twice: set(pred) = {E3}, P = 1, R = 1/2, F1 = 2/3.
        assert metrics.set_f1(["E3", "E3"], ["E3", "E9"]) == pytest.approx(2 / 3)
        assert metrics.set_f1([], ["E3"]) == 0.0
        assert metrics.set_f1(["E4"], ["E3"]) == 0.0

    def test_token_f1(self):
        # pred tokens [the, cat, sat, the], gold [the, cat, the, mat]: common = min counts
        # the 2 + cat 1 = 3; P = 3/4, R = 3/4, F1 = 0.75.
        assert metrics.token_f1("The cat sat the", "the cat the mat") == pytest.approx(0.75)
        # pred [a, a, b] vs gold [a]: common 1, P = 1/3, R = 1, F1 = 2*(1/3)/(4/3) = 0.5.
        assert metrics.token_f1("a a b", "a") == pytest.approx(0.5)
        assert metrics.token_f1("x", "y") == 0.0
        assert metrics.token_f1("", "y") == 0.0

    def test_numeric_match(self):
        assert metrics.numeric_match(" 72 ", 72) == 1.0
        assert metrics.numeric_match("1,234", 1234) == 1.0
        assert metrics.numeric_match("0.3333", 1 / 3, abs_tol=1e-3) == 1.0
        assert metrics.numeric_match("0.3333", 1 / 3) == 0.0  # |diff| = 3.3e-5 > 1e-6
        assert metrics.numeric_match("105", 100, rel_tol=0.05) == 1.0  # 5 <= 0.05 * 105
        assert metrics.numeric_match("72 apples", 72) == 0.0
        assert metrics.numeric_match("12,34", 1234) == 0.0  # malformed thousands separator
        with pytest.raises(ValueError, match="abs_tol"):
            metrics.numeric_match("1", 1, abs_tol=-1.0)

    def test_numeric_exact_match(self):
        assert metrics.numeric_exact_match(["-42"], -42) == 1.0
        assert metrics.numeric_exact_match(["42", "7"], 42) == 1.0  # only pred[0] counts
        assert metrics.numeric_exact_match(["42.0"], 42) == 0.0  # not "-? digits"
        assert metrics.numeric_exact_match(["41"], 42) == 0.0
        assert metrics.numeric_exact_match([], 42) == 0.0

    def test_iou(self):
        # E2: pred rows [a,b,b], gold [a,b,c]: matches = min counts a 1 + b 1 = 2; IoU = 2/(3+3-2).
        assert metrics.iou(["a", "b", "b"], ["a", "b", "c"]) == pytest.approx(0.5)
        assert metrics.iou(["a", "a"], ["a", "a"]) == 1.0
        assert metrics.iou([], []) == 0.0

    def test_sub_em(self):
        # E2: pred [E3,E7], gold [E3,E9,E12]: only E3 of 3 gold items is present.
        assert metrics.sub_em(["E3", "E7"], ["E3", "E9", "E12"]) == pytest.approx(1 / 3)
        assert metrics.sub_em([], ["E3"]) == 0.0

    def test_ndcg(self):
        # E2: k = 3, rel a=3, b=2, c=1. Ranking [b,a,d]: DCG = 2/log2(2) + 3/log2(3) + 0 = 3.89279;
        # IDCG = 3 + 2/log2(3) + 1/log2(4) = 4.76186.
        dcg, idcg = 2 + 3 / math.log2(3), 3 + 2 / math.log2(3) + 0.5
        assert dcg == pytest.approx(3.89279, abs=1e-5) and idcg == pytest.approx(4.76186, abs=1e-5)
        assert metrics.ndcg(["b", "a", "d"], ["a", "b", "c"]) == pytest.approx(0.817494, abs=1e-6)
        # Duplicate a keeps its LAST position: ranking [b, a] -> same DCG.
        assert metrics.ndcg(["a", "b", "a"], ["a", "b", "c"]) == pytest.approx(0.817494, abs=1e-6)
        assert metrics.ndcg(["a", "b", "c"], ["a", "b", "c"]) == pytest.approx(1.0)
        # Only the first k = 2 ranked items count: [x, a, b] -> DCG = 2/log2(3); IDCG = 2 + 1/log2(3).
        expected = (2 / math.log2(3)) / (2 + 1 / math.log2(3))
        assert metrics.ndcg(["x", "a", "b"], ["a", "b"]) == pytest.approx(expected)
        assert metrics.ndcg([], ["a"]) == 0.0

    def test_pairwise_accuracy(self):
        # E2: gold pairs (e1,e2) (e1,e3) (e1,e4) (e2,e3) (e2,e4) (e3,e4); only (e2,e3) is inverted.
        score = metrics.pairwise_accuracy(["e1", "e3", "e2", "e4"], ["e1", "e2", "e3", "e4"])
        assert score == pytest.approx(5 / 6)
        # E2: the only gold pair inside pred, (e1,e2), is inverted.
        assert metrics.pairwise_accuracy(["e2", "e1"], ["e1", "e2", "e3"]) == 0.0
        # Duplicates count in the denominator: pred [a,a,b], last idx a = 1 < b = 2, so the gold
        # pair (a,b) is correct; (a,c) and (b,c) miss c -> 1 correct of C(3,2) = 3.
        assert metrics.pairwise_accuracy(["a", "a", "b"], ["a", "b", "c"]) == pytest.approx(1 / 3)
        assert metrics.pairwise_accuracy(["a"], ["a", "b"]) == 0.0

    def test_rouge_l(self):
        ref = "E3 moved to 12 ; E9 scored 57 ;"
        # E2: 9 tokens each, LCS 8 (all but 75/57): P = R = 8/9, both variants give 8/9.
        for variant in ("package", "f1"):
            assert metrics.rouge_l(
                "E3 moved to 12 ; E9 scored 75 ;", ref, rouge_f=variant
            ) == pytest.approx(0.888889, abs=1e-6)
        # E2: pred of 5 tokens, LCS 5: P = 1, R = 5/9. package: beta = 1.8,
        # F = 4.24 * 5/9 / (5/9 + 3.24) = 0.620609; F1 = 2 * (5/9) / (14/9) = 10/14.
        short = "E3 moved to 12 ;"
        assert metrics.rouge_l(short, ref) == pytest.approx(0.620609, abs=1e-6)
        assert metrics.rouge_l(short, ref, rouge_f="f1") == pytest.approx(0.714286, abs=1e-6)
        # Max over references: the exact reference wins.
        assert metrics.rouge_l(short, [ref, short]) == pytest.approx(1.0)
        assert metrics.rouge_l("", ref) == 0.0
        assert metrics.rouge_l("zzz", ref) == 0.0

    def test_rouge_l_lcs_not_contiguous(self):
        # pred [a, x, b, y, c], ref [a, b, c]: LCS = 3 (a, b, c); P = 3/5, R = 1;
        # F1 = 2 * 0.6 / 1.6 = 0.75.
        assert metrics.rouge_l("a x b y c", "a b c", rouge_f="f1") == pytest.approx(0.75)

    def test_bad_arguments(self):
        with pytest.raises(ValueError, match="rouge_f must be one of"):
            metrics.rouge_l("a", "a", rouge_f="rouge")
        with pytest.raises(ValueError, match="refs must hold at least one"):
            metrics.rouge_l("a", [])
        with pytest.raises(ValueError, match="pred_items must be a list of items"):
            metrics.set_f1("E3", ["E3"])
