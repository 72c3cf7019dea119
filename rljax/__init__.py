"""rljax: JAX-native reinforcement learning for LLMs.

Subpackages (import the one you need; `from rljax import *` imports them all):
`losses` (pure functions on arrays), `methods` (Method compositions, `TrainBatch`), `models`,
`sampling`, `envs`, `data`, `rollout`, `train` (`from rljax.train import train, Trainer`),
`parallel`, plus `rljax.kernels` and `rljax.experiments`.
"""

import os

# transformers (tokenizers only here) logs an advisory "PyTorch was not found" line at import;
# rljax never needs PyTorch, so importing it stays quiet (an explicit user setting wins).
os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")

__all__ = [
    "data",
    "envs",
    "losses",
    "methods",
    "models",
    "parallel",
    "rollout",
    "sampling",
    "train",
]
