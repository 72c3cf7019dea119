"""GoLongRL's nine long-context capabilities as task families (golongrl.md section 8).

Task ids (`Task.task_id`, the order of `CAPABILITY_NAMES`):

    0 precise_retrieval      EM                   "value of ATTR for Exx ?"
    1 comprehension          accuracy (MCQ)       who holds an item after a story of transfers
    2 exhaustive_retrieval   set F1               all entities with color = v
    3 numerical_reasoning    numeric EM           a total score, or a year difference
    4 structured_extraction  IoU                  rows `Exx , yyyy` of the entities in a city
    5 structured_matching    SubEM                entities whose year differs between two sources
    6 graded_ranking         NDCG@k               top k entities by score
    7 sequence_ordering      pairwise accuracy    events in chronological order
    8 summarization          ROUGE-L              one line per flagged record

Each capability is a family registered as `longcontext/<name>`; `LongContextFamily` (registered
as `longcontext`) mixes them. The context length knob `context_tokens` counts tokens with the
family's `count_tokens` (text -> number of tokens; a run sets the policy tokenizer's). Example:

    count_tokens = rljax.data.token_counter(rljax.data.load_tokenizer())
    family = LongContextFamily(context_tokens=2000, weights=PAPER_WEIGHTS, count_tokens=count_tokens)
    task = family.generate("train", 0)
    family.verify(task, family.expert(task, np.random.default_rng(0))).reward   # 1.0
"""

from rljax.envs.longcontext.base import CAPABILITY_NAMES, SYSTEM_PROMPT, CapabilityFamily, Draft
from rljax.envs.longcontext.mixture import (
    CAPABILITY_FAMILIES,
    NUM_TASKS,
    PAPER_WEIGHTS,
    LongContextFamily,
    per_task_mean_reward,
)
from rljax.envs.longcontext.reasoning import (
    ComprehensionFamily,
    GradedRankingFamily,
    NumericalReasoningFamily,
    SequenceOrderingFamily,
    SummarizationFamily,
)
from rljax.envs.longcontext.retrieval import (
    ExhaustiveRetrievalFamily,
    PreciseRetrievalFamily,
    StructuredExtractionFamily,
    StructuredMatchingFamily,
)

__all__ = [
    "CAPABILITY_FAMILIES",
    "CAPABILITY_NAMES",
    "CapabilityFamily",
    "ComprehensionFamily",
    "Draft",
    "ExhaustiveRetrievalFamily",
    "GradedRankingFamily",
    "LongContextFamily",
    "NUM_TASKS",
    "NumericalReasoningFamily",
    "PAPER_WEIGHTS",
    "PreciseRetrievalFamily",
    "SYSTEM_PROMPT",
    "SequenceOrderingFamily",
    "StructuredExtractionFamily",
    "StructuredMatchingFamily",
    "SummarizationFamily",
    "per_task_mean_reward",
]
