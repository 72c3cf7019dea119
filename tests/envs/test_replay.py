"""Replaying a response in an episode (the shared verifier helper)."""

from rljax.envs.base import Observation, Verdict
from rljax.envs.replay import replay


class CountingEpisode:
    """Ends after `length` actions; the verdict lists the actions it saw."""

    def __init__(self, length: int):
        self.length, self.seen = length, []

    def step(self, action: str) -> Observation:
        self.seen.append(action)
        return Observation("ok", done=len(self.seen) >= self.length)

    def verdict(self) -> Verdict:
        return Verdict(float(len(self.seen)), {"reason": " ".join(self.seen)})


def test_replay_skips_blank_actions_and_stops_when_done():
    verdict = replay(CountingEpisode(2), ["a", "  ", "", "b", "c"])
    assert verdict == Verdict(2.0, {"reason": "a b"})


def test_replay_of_a_short_response_judges_the_unfinished_episode():
    assert replay(CountingEpisode(5), iter(["a", "b"])).reward == 2.0
    assert replay(CountingEpisode(5), []).reward == 0.0
