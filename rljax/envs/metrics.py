"""Reward metrics shared by the task families: answer extraction, text normalisation and scores.

Definitions follow `methods/golongrl.md` section 8.1 exactly (the library's long-context rewards):
text is lower-cased, whitespace-collapsed and stripped; an answer is a list of items separated by
newlines with empty items dropped; tokens are the whitespace-separated words of normalised text.
Every score is a float in [0, 1]. All functions are host-side Python on strings.
"""

from __future__ import annotations

import collections
import math
import re
from typing import Sequence

ANSWER_OPEN = "<answer>"
ANSWER_CLOSE = "</answer>"
THINK_OPEN = "<think>"
THINK_CLOSE = "</think>"
ROUGE_F_VARIANTS = ("package", "f1")

_NUMBER = re.compile(r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?")
_INTEGER = re.compile(r"-?\d+")


def extract_answer(response: str) -> tuple[str | None, str]:
    """Returns the content of the single `<answer>...</answer>` that ends `response`.

    Thinking or any other text may precede the tag; only whitespace may follow it.

    Args:
        response: the full model response.

    Returns:
        `(content, "")` with the text between the tags (not stripped), or `(None, reason)` where
        `reason` starts with "malformed:" and says what is wrong.
    """
    _check_str("response", response)
    opens, closes = response.count(ANSWER_OPEN), response.count(ANSWER_CLOSE)
    if opens == 0 or closes == 0:
        return None, "malformed: no <answer>...</answer> tag"
    if opens > 1 or closes > 1:
        return (
            None,
            f"malformed: {opens} <answer> and {closes} </answer> tags, expected exactly one",
        )
    start, end = response.index(ANSWER_OPEN), response.index(ANSWER_CLOSE)
    if end < start:
        return None, "malformed: </answer> comes before <answer>"
    if response[end + len(ANSWER_CLOSE) :].strip():
        return None, "malformed: text after </answer>; the answer must end the response"
    return response[start + len(ANSWER_OPEN) : end], ""


BOXED = "\\boxed"
ANSWER_FORMATS = ("tag", "boxed")
BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."


def extract_boxed(response: str) -> tuple[str | None, str]:
    """Returns the content of the last `\\boxed{...}` in `response` (braces balanced).

    As the math verifiers of the papers read a real model's answer (DeepSeekMath / Qwen2.5-Math's
    `last_boxed_only_string`, DAPO's `\\boxed{}` reward): any text may surround it, thinking
    included, and the last complete box wins.

    Args:
        response: the full model response.

    Returns:
        `(content, "")` with the text inside the box (not stripped), or `(None, reason)` where
        `reason` starts with "malformed:".
    """
    _check_str("response", response)
    start = response.rfind(BOXED + "{")
    while start >= 0:
        depth, i = 0, start + len(BOXED)
        for i in range(start + len(BOXED), len(response)):
            depth += {"{": 1, "}": -1}.get(response[i], 0)
            if depth == 0:
                return response[start + len(BOXED) + 1 : i], ""
        start = response.rfind(BOXED + "{", 0, start)  # unclosed: an earlier box may be complete
    return None, "malformed: no complete \\boxed{...}"


def extract_final_answer(response: str, answer_format: str) -> tuple[str | None, str]:
    """The final answer of a response in `answer_format`.

    Args:
        response: the full model response.
        answer_format: "tag" (`extract_answer`: one `<answer>...</answer>` ending the response) or
            "boxed" (`extract_boxed`: the last `\\boxed{...}`).

    Returns:
        `(content, "")` or `(None, reason)` as the chosen extractor returns.
    """
    check_answer_format(answer_format)
    return extract_answer(response) if answer_format == "tag" else extract_boxed(response)


def check_answer_format(answer_format: str) -> None:
    """Raises ValueError unless `answer_format` is one of ANSWER_FORMATS."""
    if answer_format not in ANSWER_FORMATS:
        raise ValueError(f"answer_format must be one of {ANSWER_FORMATS}, got {answer_format!r}")


def format_gate(response: str) -> str | None:
    """The long-context format gate: returns the scored text after `</think>`, or None.

    golongrl.md 8.1: the reward is 0 unless the response contains exactly one `</think>` and at
    most one `<think>`; only the text after `</think>` is scored.

    Args:
        response: the full model response (up to EOS).

    Returns:
        The text after `</think>`, or None when the gate fails.
    """
    _check_str("response", response)
    if response.count(THINK_CLOSE) != 1 or response.count(THINK_OPEN) > 1:
        return None
    return response.split(THINK_CLOSE, 1)[1]


def normalize_text(text: str) -> str:
    """Lower-cases, collapses every whitespace run to one space and strips (golongrl.md 8.1).

    Args:
        text: any text.

    Returns:
        The normalised text.
    """
    _check_str("text", text)
    return " ".join(text.lower().split())


def answer_items(text: str, *, drop_empty: bool = True) -> list[str]:
    """Splits an answer into normalised items, one per line (golongrl.md 8.1).

    Args:
        text: the answer text (items separated by newlines).
        drop_empty: drop items that are empty after normalisation (library default).

    Returns:
        The list of normalised items, in order.
    """
    items = [normalize_text(line) for line in text.split("\n")]
    return [item for item in items if item] if drop_empty else items


def tokens(text: str) -> list[str]:
    """Splits text into the tokens that token F1 and ROUGE-L compare.

    Args:
        text: any text.

    Returns:
        The whitespace-separated words of `normalize_text(text)`.
    """
    return normalize_text(text).split()


def exact_match(pred: str, gold: str) -> float:
    """EM: 1 if the normalised answers are equal line by line, ignoring outer blank lines.

    Args:
        pred: predicted answer text.
        gold: gold answer text.

    Returns:
        1.0 or 0.0.
    """
    _check_str("pred", pred)
    _check_str("gold", gold)
    return float(_normalized_lines(pred) == _normalized_lines(gold))


def mcq_accuracy(pred_items: Sequence[str], gold_letter: str) -> float:
    """Accuracy (MCQ): 1 if the first predicted item equals the gold letter.

    Args:
        pred_items: predicted items (see `answer_items`).
        gold_letter: the correct option, e.g. "B".

    Returns:
        1.0 or 0.0 (0 when `pred_items` is empty).
    """
    pred = _items("pred_items", pred_items)
    return float(bool(pred) and pred[0] == normalize_text(gold_letter))


def parse_number(text: str) -> float | None:
    """Parses a whole string as a number: optional `-`, digits (thousands commas allowed), decimals.

    Args:
        text: e.g. "72", "-3.5", "1,234".

    Returns:
        The number, or None if the stripped text is not exactly one number.
    """
    _check_str("text", text)
    text = text.strip()
    if not _NUMBER.fullmatch(text):
        return None
    return float(text.replace(",", ""))


def numeric_match(pred: str, gold: float, *, abs_tol: float = 1e-6, rel_tol: float = 0.0) -> float:
    """Numeric match: 1 if `pred` parses as a number within tolerance of `gold`.

    Args:
        pred: predicted answer text (one number, see `parse_number`).
        gold: the reference number.
        abs_tol: absolute tolerance (>= 0).
        rel_tol: relative tolerance (>= 0), as in `math.isclose`.

    Returns:
        1.0 if `math.isclose(pred, gold, rel_tol, abs_tol)`, else 0.0 (also when unparseable).
    """
    if abs_tol < 0 or rel_tol < 0:
        raise ValueError(
            f"abs_tol and rel_tol must be >= 0, got abs_tol={abs_tol}, rel_tol={rel_tol}"
        )
    value = parse_number(pred)
    if value is None:
        return 0.0
    return float(math.isclose(value, float(gold), rel_tol=rel_tol, abs_tol=abs_tol))


def numeric_exact_match(pred_items: Sequence[str], gold: int) -> float:
    """Numeric EM (golongrl.md 8.1): pred[0] parsed as optional `-` then digits equals `gold`.

    Args:
        pred_items: predicted items.
        gold: the gold integer.

    Returns:
        1.0 if the first item is exactly that integer, 0.0 if it differs or does not parse.
    """
    pred = _items("pred_items", pred_items)
    if not pred or not _INTEGER.fullmatch(pred[0]):
        return 0.0
    return float(int(pred[0]) == int(gold))


def set_f1(pred_items: Sequence[str], gold_items: Sequence[str]) -> float:
    """Set F1 over distinct items: F1 = 2PR/(P+R) with P, R from |set(pred) & set(gold)|.

    Args:
        pred_items: predicted items.
        gold_items: gold items.

    Returns:
        The F1 in [0, 1]; 0 if the intersection or either set is empty.
    """
    pred, gold = set(_items("pred_items", pred_items)), set(_items("gold_items", gold_items))
    common = len(pred & gold)
    if common == 0:
        return 0.0
    return _f1(common / len(pred), common / len(gold))


def token_f1(pred: str, gold: str) -> float:
    """Bag-of-tokens F1 (SQuAD style): common = sum_x min(count_pred(x), count_gold(x)).

    Args:
        pred: predicted answer text.
        gold: gold answer text.

    Returns:
        2PR/(P+R) with P = common/|pred tokens|, R = common/|gold tokens|; 0 if common = 0.
    """
    pred_tokens, gold_tokens = tokens(pred), tokens(gold)
    common = _multiset_overlap(pred_tokens, gold_tokens)
    if common == 0:
        return 0.0
    return _f1(common / len(pred_tokens), common / len(gold_tokens))


def iou(pred_items: Sequence[str], gold_items: Sequence[str]) -> float:
    """Multiset Jaccard over rows: matches / (|pred| + |gold| - matches).

    Args:
        pred_items: predicted rows.
        gold_items: gold rows.

    Returns:
        The IoU in [0, 1]; 0 if the denominator is 0.
    """
    pred, gold = _items("pred_items", pred_items), _items("gold_items", gold_items)
    matches = _multiset_overlap(pred, gold)
    denominator = len(pred) + len(gold) - matches
    return matches / denominator if denominator else 0.0


def sub_em(pred_items: Sequence[str], gold_items: Sequence[str]) -> float:
    """SubEM: the fraction of gold items present in the prediction.

    Args:
        pred_items: predicted items.
        gold_items: gold items.

    Returns:
        (1/|gold|) sum_{a in gold} [a in pred]; 0 if either list is empty.
    """
    pred, gold = _items("pred_items", pred_items), _items("gold_items", gold_items)
    if not pred or not gold:
        return 0.0
    present = set(pred)
    return sum(item in present for item in gold) / len(gold)


def ndcg(pred_items: Sequence[str], gold_items: Sequence[str]) -> float:
    """NDCG@k with k = |gold| and graded relevance k - i for the gold item at position i.

    Duplicates in the prediction keep their LAST position (as the official scorer); the ranking is
    the unique predicted items in that order; non-gold items have relevance 0.

    Args:
        pred_items: predicted ranking.
        gold_items: gold ranking, most relevant first.

    Returns:
        DCG / IDCG in [0, 1]; 0 if either list is empty.
    """
    pred, gold = _items("pred_items", pred_items), _items("gold_items", gold_items)
    if not pred or not gold:
        return 0.0
    k = len(gold)
    relevance = {}
    for i, item in enumerate(gold):
        relevance.setdefault(item, k - i)
    last = _last_positions(pred)
    ranking = sorted(last, key=last.get)
    dcg = sum(relevance.get(item, 0) / math.log2(r + 2) for r, item in enumerate(ranking[:k]))
    idcg = sum((k - r) / math.log2(r + 2) for r in range(k))
    return dcg / idcg


def pairwise_accuracy(pred_items: Sequence[str], gold_items: Sequence[str]) -> float:
    """Pairwise ordering accuracy: correctly ordered gold pairs over C(|pred|, 2).

    idx(x) is the last position of x in pred; a gold pair (a before b) counts when both are in
    pred and idx(a) < idx(b). The denominator uses the predicted length, duplicates included.

    Args:
        pred_items: predicted order.
        gold_items: gold order.

    Returns:
        The score in [0, 1]; 0 if either list has at most one item.
    """
    pred, gold = _items("pred_items", pred_items), _items("gold_items", gold_items)
    if len(pred) <= 1 or len(gold) <= 1:
        return 0.0
    position = _last_positions(pred)
    correct = sum(
        1
        for i, a in enumerate(gold)
        for b in gold[i + 1 :]
        if a in position and b in position and position[a] < position[b]
    )
    return correct / math.comb(len(pred), 2)


def rouge_l(pred: str, refs: str | Sequence[str], *, rouge_f: str = "package") -> float:
    """ROUGE-L F-measure from the longest common token subsequence, max over references.

    With L = LCS(pred, ref), P = L/|pred|, R = L/|ref|:
    "package" (the official reward's package): beta = P/(R + 1e-12),
    F = (1 + beta^2) R P / (R + beta^2 P + 1e-12); "f1": F = 2PR/(P+R).

    Args:
        pred: predicted text.
        refs: one reference text or several.
        rouge_f: "package" or "f1".

    Returns:
        The F-measure in [0, 1]; 0 if L = 0 or a side is empty.
    """
    if rouge_f not in ROUGE_F_VARIANTS:
        raise ValueError(f"rouge_f must be one of {ROUGE_F_VARIANTS}, got {rouge_f!r}")
    ref_list = [refs] if isinstance(refs, str) else list(refs)
    if not ref_list:
        raise ValueError("refs must hold at least one reference, got an empty sequence")
    pred_tokens = tokens(pred)
    return max(_rouge_l_single(pred_tokens, tokens(ref), rouge_f) for ref in ref_list)


def _rouge_l_single(pred: list[str], ref: list[str], rouge_f: str) -> float:
    lcs = _lcs_length(pred, ref)
    if lcs == 0:
        return 0.0
    p, r = lcs / len(pred), lcs / len(ref)
    if rouge_f == "f1":
        return _f1(p, r)
    beta = p / (r + 1e-12)
    return (1 + beta**2) * r * p / (r + beta**2 * p + 1e-12)


def _lcs_length(a: Sequence[str], b: Sequence[str]) -> int:
    previous = [0] * (len(b) + 1)
    for x in a:
        current = [0]
        for j, y in enumerate(b):
            current.append(previous[j] + 1 if x == y else max(previous[j + 1], current[j]))
        previous = current
    return previous[-1]


def _f1(precision: float, recall: float) -> float:
    return 2 * precision * recall / (precision + recall)


def _multiset_overlap(a: Sequence[str], b: Sequence[str]) -> int:
    return sum((collections.Counter(a) & collections.Counter(b)).values())


def _last_positions(items: Sequence[str]) -> dict[str, int]:
    return {item: i for i, item in enumerate(items)}


def _normalized_lines(text: str) -> str:
    return "\n".join(normalize_text(line) for line in text.split("\n")).strip("\n")


def _items(name: str, items: Sequence[str]) -> list[str]:
    if isinstance(items, str):
        raise ValueError(
            f"{name} must be a list of items (see answer_items), got the string {items!r}"
        )
    return [normalize_text(item) for item in items]


def _check_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"{name} must be a str, got {type(value).__name__}: {value!r}")
