"""MiniResearch: RubricEM's offline research environment (rubric_em.md section 8.1).

A seeded document corpus with `search` and `open` tools, multi-document questions, the four tagged
stages (Plan, Research, Review, Answer), a rule-based stagewise judge behind the `StageJudge`
interface, the evolving rubric buffer (REM-9) and the reflection bank (REM-10, REM-11).
`MiniResearchFamily` (registry name "miniresearch") ties them together.
"""

from rljax.envs.research.buffer import DEFAULT_ADDITIONS, DEFAULT_CAPS, RubricBuffer, StageScores
from rljax.envs.research.corpus import ATTRIBUTES, Corpus, Document, make_corpus
from rljax.envs.research.episode import ResearchEpisode
from rljax.envs.research.expert import (
    IMPERFECTION_RATES,
    REFLECTION_IMPERFECTION_RATES,
    SFT_NOISE,
    expert_actions,
    expert_reflection,
)
from rljax.envs.research.family import SYSTEM_PROMPT, MiniResearchFamily, is_reflection_task
from rljax.envs.research.grammar import ParsedTurn, Transcript, parse_turn
from rljax.envs.research.judge import ProgrammaticJudge, Rubric, StageJudge
from rljax.envs.research.queries import KINDS, Query
from rljax.envs.research.reflection import (
    BankEntry,
    Reflection,
    ReflectionBank,
    ReflectionEpisode,
    ReflectionScore,
    parse_reflection,
    score_reflections,
)

__all__ = [
    "ATTRIBUTES",
    "DEFAULT_ADDITIONS",
    "DEFAULT_CAPS",
    "IMPERFECTION_RATES",
    "KINDS",
    "REFLECTION_IMPERFECTION_RATES",
    "SFT_NOISE",
    "SYSTEM_PROMPT",
    "BankEntry",
    "Corpus",
    "Document",
    "MiniResearchFamily",
    "ParsedTurn",
    "ProgrammaticJudge",
    "Query",
    "Reflection",
    "ReflectionBank",
    "ReflectionEpisode",
    "ReflectionScore",
    "ResearchEpisode",
    "Rubric",
    "RubricBuffer",
    "StageJudge",
    "StageScores",
    "Transcript",
    "expert_actions",
    "expert_reflection",
    "is_reflection_task",
    "make_corpus",
    "parse_reflection",
    "parse_turn",
    "score_reflections",
]
