"""Rollouts: task family + decode session -> `Trajectories` (tokens and per-token masks)."""

from rljax.rollout.agent import SingleTurnEpisode, rollout, start_episode
from rljax.rollout.batch import bucket_length, pack_rows
from rljax.rollout.expert import expert_actions, expert_trajectories
from rljax.rollout.session import DecodeSessionProtocol, ScriptedSession
from rljax.rollout.stages import stage_ids
from rljax.rollout.types import Trajectories

__all__ = [
    "DecodeSessionProtocol",
    "ScriptedSession",
    "SingleTurnEpisode",
    "Trajectories",
    "bucket_length",
    "expert_actions",
    "expert_trajectories",
    "pack_rows",
    "rollout",
    "stage_ids",
    "start_episode",
]
