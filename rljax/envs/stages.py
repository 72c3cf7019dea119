"""Stage schemes: the tags that segment a generated response into RubricEM's stages.

rubric_em.md REM-1 segments a response deterministically on its generated text into Plan ->
Research -> Review -> Answer. A task family declares its scheme (`StageScheme`); the rollout
(`rljax.rollout.stages.stage_ids`) turns the segmentation into per-token stage ids.
"""

from __future__ import annotations

import dataclasses


@dataclasses.dataclass(frozen=True)
class StageScheme:
    """The tags that delimit the four stages of a generated response (rubric_em.md REM-1).

    On the text T of all generated tokens of one row (actions of every turn, concatenated):
    Plan runs from the start through the first `plan_end`; Research follows up to the Review;
    Review starts at the last `review_lead` before the first `review_start` after the Plan (at
    `review_start` itself when `review_lead` is None or absent) and runs up to the Answer; Answer
    starts at the first `answer_start` after the Plan and runs to the end.

    Library choices where REM-1 is silent: with no `plan_end`, the Plan runs up to the Review
    (or Answer) and Research is empty; with no `review_start`, Review is empty; with no
    `answer_start`, Answer is empty (a truncated rollout's Research runs to the end, as REM-1 says).

    Attributes:
        plan_end: closing tag of the plan, e.g. "</plan>".
        review_start: opening tag of the review, e.g. "<review>".
        answer_start: opening tag of the answer, e.g. "<answer>".
        review_lead: optional tag whose last occurrence before `review_start` opens the Review
            (the final `<state>` for MiniResearch, the final `<think>` for the paper's scaffold).
    """

    plan_end: str
    review_start: str
    answer_start: str
    review_lead: str | None = None

    def boundaries(self, text: str) -> tuple[int, int, int]:
        """Returns the character offsets where Research, Review and Answer start in `text`."""
        plan_close = text.find(self.plan_end)
        search_from = 0 if plan_close < 0 else plan_close + len(self.plan_end)
        answer = text.find(self.answer_start, search_from)
        answer = len(text) if answer < 0 else answer
        review = text.find(self.review_start, search_from, answer)
        if review < 0:
            review = answer
        elif self.review_lead is not None:
            lead = text.rfind(self.review_lead, search_from, review)
            review = review if lead < 0 else lead
        research = search_from if plan_close >= 0 else review
        return research, review, answer


MINI_RESEARCH_STAGES = StageScheme(
    plan_end="</plan>", review_start="<review>", answer_start="<answer>", review_lead="<state>"
)
"""rubric_em.md section 8.1 (MiniResearch): Review opens at the last `<state>` (the one ending DONE)."""

PAPER_STAGES = StageScheme(
    plan_end="</structured_plan>",
    review_start="<review>",
    answer_start="<answer>",
    review_lead="<think>",
)
"""rubric_em.md REM-1 with the paper's appendix tag names."""
