"""Fused vocabulary kernels: token statistics and the fused policy loss without [N, V] logits."""

from kernels.token_stats import IMPLS, token_stats
from kernels.types import BlockSizes, TokenStats

__all__ = ["IMPLS", "BlockSizes", "TokenStats", "token_stats"]
