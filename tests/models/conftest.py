"""Shared helpers for the model tests: a small config, randomised models, eager/jit forward."""

from collections.abc import Callable

import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from rljax.models import Decoder, ModelConfig


@pytest.fixture
def make_config() -> Callable[..., ModelConfig]:
    """`make_config(**overrides)`: the small config below with fields overridden."""
    return small_config


def small_config(**overrides) -> ModelConfig:
    """2 layers, hidden 64, 4 query heads over 2 kv heads (GQA), vocab 61."""
    fields = dict(
        vocab_size=61,
        hidden_size=64,
        intermediate_size=96,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        head_dim=16,
    )
    fields.update(overrides)
    return ModelConfig.tiny(**fields)


@pytest.fixture
def make_model() -> Callable[..., Decoder]:
    """`make_model(config, seed=0)`: a Decoder with every parameter random."""
    return random_model


def random_model(config: ModelConfig, seed: int = 0) -> Decoder:
    """A Decoder with numpy-random parameters: N(1, 0.2) norm scales, N(0, 0.1) everything else (biases too).

    Filling an abstract model from numpy avoids compiling one random kernel per parameter shape.
    """
    graphdef, state = nnx.split(nnx.eval_shape(lambda: Decoder(config, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(seed)
    flat = []
    for path, var in nnx.to_flat_state(state):
        shape = var.get_value().shape
        value = (
            1 + 0.2 * rng.standard_normal(shape)
            if path[-1] == "scale"
            else 0.1 * rng.standard_normal(shape)
        )
        flat.append((path, var.replace(jnp.asarray(value, config.param_dtype))))
    return nnx.merge(graphdef, nnx.from_flat_state(flat))


# One jitted entry point for every test: models of the same config and inputs of the same shapes
# share one compilation across tests and files.
_JITTED_CALL = nnx.jit(lambda model, tokens, kwargs: model(tokens, **kwargs))


def jit_call(model: Decoder, tokens, **kwargs):
    """`model(tokens, **kwargs)` under nnx.jit (numpy inputs converted to jax arrays)."""
    kwargs = {k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    return _JITTED_CALL(model, jnp.asarray(tokens), kwargs)


@pytest.fixture
def run() -> Callable:
    """`run(model, tokens, **kwargs) -> (hidden, cache)` under nnx.jit."""
    return jit_call


@pytest.fixture(params=[False, True], ids=["eager", "jit"])
def call(request) -> Callable:
    """`call(model, tokens, **kwargs) -> (hidden, cache)`, run eagerly or under nnx.jit."""
    if request.param:
        return jit_call
    return lambda model, tokens, **kwargs: model(
        jnp.asarray(tokens),
        **{k: jnp.asarray(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()},
    )
