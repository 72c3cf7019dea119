"""Replaying a whole response in an episode: how multi-turn families verify a response offline."""

from __future__ import annotations

from collections.abc import Iterable

from rljax.envs.base import Episode, Verdict


def replay(episode: Episode, actions: Iterable[str]) -> Verdict:
    """Plays `actions` in `episode`, one per turn, until it is done, and judges it.

    Blank actions are skipped (splitting a response on a delimiter leaves empty pieces); actions
    after the episode is done are ignored.

    Args:
        episode: a fresh episode of the task.
        actions: the response cut into the text of its assistant turns.

    Returns:
        The episode's verdict.
    """
    for action in actions:
        if action.strip() and episode.step(action).done:
            break
    return episode.verdict()
