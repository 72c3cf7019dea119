"""Fused vocabulary kernels: token statistics and the fused policy loss without [N, V] logits."""

from rljax.kernels.fused_policy_loss import fused_policy_loss
from rljax.kernels.token_stats import IMPLS, token_stats
from rljax.kernels.types import BlockSizes, TokenStats

__all__ = ["IMPLS", "BlockSizes", "TokenStats", "fused_policy_loss", "token_stats"]
