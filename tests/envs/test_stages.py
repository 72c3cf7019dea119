"""Stage schemes: character boundaries of RubricEM's stages in a response (rubric_em.md REM-1)."""

from rljax.envs.stages import MINI_RESEARCH_STAGES, StageScheme


def test_boundaries_by_hand():
    text = "<plan>p</plan> <call>c</call> <state>s</state> <review>r</review> <answer>a</answer>"
    research, review, answer = MINI_RESEARCH_STAGES.boundaries(text)
    assert text[:research] == "<plan>p</plan>"
    assert text[research:review] == " <call>c</call> "
    assert text[review:answer] == "<state>s</state> <review>r</review> "
    assert text[answer:] == "<answer>a</answer>"


def test_missing_tags_leave_stages_empty():
    scheme = StageScheme(plan_end="</plan>", review_start="<review>", answer_start="<answer>")
    assert scheme.boundaries("<answer>a</answer>") == (0, 0, 0)  # no plan: Research empty
    assert scheme.boundaries("<plan>p</plan> more") == (14, 19, 19)  # truncated: no Answer
