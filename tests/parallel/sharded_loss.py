"""The model, batch and loss shared by the sharding tests and the multi-host worker."""

import jax
import jax.numpy as jnp
import numpy as np

from rljax.models import ModelConfig

TOKENS = np.random.default_rng(0).integers(0, 64, size=(8, 16)).astype(np.int32)


def tiny_config() -> ModelConfig:
    """2-layer tiny decoder: vocab 64, hidden 128, MLP 384, 4 heads, 2 kv heads (all split 2 or 4 ways)."""
    return ModelConfig.tiny(vocab_size=64, num_layers=2)


def mean_logprob_loss(model, tokens: jax.Array) -> jax.Array:
    """Mean next-token log-prob of `tokens` [B, T] under `model` (float32)."""
    log_probs = jax.nn.log_softmax(model.logits(tokens)[:, :-1], axis=-1)
    return jnp.mean(jnp.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1))
