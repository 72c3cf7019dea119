"""Anti-SD's deliberation task and its privileged teacher context (anti_sd.md section 8, ASD-7).

`KeySearchFamily` (registry name "keysearch") is the hidden-key search with checker feedback; its
`teacher_context` is the text the self-teacher reads, which `rljax.rollout.teacher` tokenises.
"""

from rljax.envs.deliberation.keysearch import TEACHER_MODE, KeySearchEpisode, KeySearchFamily

__all__ = ["TEACHER_MODE", "KeySearchEpisode", "KeySearchFamily"]
