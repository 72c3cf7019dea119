"""Anti-SD's deliberation task and its privileged teacher context (anti_sd.md section 8, ASD-7).

`KeySearchFamily` (registry name "keysearch") is the hidden-key search with checker feedback;
`teacher.build_teacher_batch` turns a rollout batch into the self-teacher's token arrays.
"""

from rljax.envs.deliberation.keysearch import TEACHER_MODE, KeySearchEpisode, KeySearchFamily
from rljax.envs.deliberation.teacher import (
    REFERENCE,
    build_teacher_batch,
    response_text,
    solution_rows,
)

__all__ = [
    "REFERENCE",
    "TEACHER_MODE",
    "KeySearchEpisode",
    "KeySearchFamily",
    "build_teacher_batch",
    "response_text",
    "solution_rows",
]
