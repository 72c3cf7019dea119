"""The RL-step speed levers keep the training math: the update's own log-probs as old log-probs
(no separate no-grad forward) and a narrower padded width give the loss and gradient of the
unoptimised path, jitted and not."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from rljax import methods
from rljax.methods import TrainBatch
from rljax.models import Decoder, ModelConfig
from rljax.train.step import init_state, make_forward_fn, make_update_fn, split_model

B, T, PROMPT = 8, 12, 4


def _model():
    config = ModelConfig.tiny(
        vocab_size=64,
        hidden_size=32,
        intermediate_size=64,
        num_layers=2,
        num_heads=2,
        num_kv_heads=1,
        head_dim=16,
        tie_embeddings=False,
    )
    return Decoder(config, rngs=nnx.Rngs(0))


def _batch(width=T, seed=0):
    """Rows of 6..T tokens (a 4-token prompt, then actions) right-padded to `width` columns."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(6, T + 1, size=B)
    seg = (np.arange(width)[None] < lengths[:, None]).astype(np.int32)
    action = seg.copy()
    action[:, :PROMPT] = 0
    tokens = np.zeros((B, width), np.int32)
    tokens[:, :T] = rng.integers(1, 64, size=(B, T))
    return TrainBatch.create(
        action_mask=action.astype(np.float32),
        tokens=tokens * seg,
        positions=(np.arange(width)[None].repeat(B, 0) * seg).astype(np.int32),
        segment_ids=seg,
        advantages=rng.normal(size=B).astype(np.float32),
    )


def _step(batch, *, old_logprobs, jit=True):
    """(loss, kl, updated params) after one SGD(1) step: params - gradient."""
    graphdef, params, rest = split_model(_model())
    method = methods.grpo(mode="seq-mean-token-mean", kl_beta=0.04, kl_kind="k3")
    optimizer = optax.sgd(1.0)
    state, _ = init_state(params, optimizer, method, seed=0)
    forward = make_forward_fn(
        graphdef, temperature=1.0, impl="xla_chunked", with_hidden=False, with_teacher=False
    )
    # A reference policy apart from the policy, so the KL term and its gradient are not zero.
    ref_params = jax.tree.map(lambda x: x * 1.1, state.params)
    state = state.replace(ref_params=ref_params)
    batch = batch.replace(ref_logprobs=forward(ref_params, rest, batch).logprobs)
    if old_logprobs == "batch":
        batch = batch.replace(old_logprobs=forward(state.params, rest, batch).logprobs)
    update = make_update_fn(
        graphdef,
        method,
        optimizer,
        temperature=1.0,
        impl="xla_chunked",
        old_logprobs=old_logprobs,
    )
    if jit:
        state, metrics = update(state, rest, batch)
    else:
        with jax.disable_jit():
            state, metrics = update(state, rest, batch)
    return float(metrics["loss"]), float(metrics["kl"]), state.params


def _assert_same(a, b, *, atol):
    np.testing.assert_allclose(a[0], b[0], rtol=0, atol=atol)
    np.testing.assert_allclose(a[1], b[1], rtol=0, atol=atol)
    jax.tree.map(lambda x, y: np.testing.assert_allclose(x, y, rtol=0, atol=atol), a[2], b[2])


@pytest.mark.parametrize("jit", [True, False])
def test_current_logprobs_equal_a_separate_forward(jit):
    batch = _batch()
    separate = _step(batch, old_logprobs="batch", jit=jit)
    current = _step(batch, old_logprobs="current", jit=jit)
    assert separate[1] > 1e-4  # the KL term is live
    # The separate forward's log-probs equal the update's own to float rounding (~1e-7), so the
    # clipped ratio is 1 on both paths: the same loss and gradient.
    _assert_same(current, separate, atol=2e-6)


def test_current_logprobs_ignore_the_batch_field():
    batch = _batch()
    with_field = _step(
        batch.replace(old_logprobs=np.zeros((B, T), np.float32)), old_logprobs="current"
    )
    _assert_same(with_field, _step(batch, old_logprobs="current"), atol=0)


@pytest.mark.parametrize("jit", [True, False])
def test_narrow_width_equals_wide_padding(jit):
    """A batch packed to its longest row (12) and one packed to 64 columns train identically
    (token-mean and seq-mean-token-mean do not see padding)."""
    narrow = _step(_batch(T), old_logprobs="current", jit=jit)
    wide = _step(_batch(64), old_logprobs="current", jit=jit)
    _assert_same(narrow, wide, atol=2e-6)


def test_unknown_old_logprobs_source_is_refused():
    graphdef, _, _ = split_model(_model())
    with pytest.raises(ValueError, match="old_logprobs='sampler'"):
        make_update_fn(
            graphdef,
            methods.grpo(),
            optax.sgd(1.0),
            temperature=1.0,
            impl="xla_chunked",
            old_logprobs="sampler",
        )


def test_trainer_step_without_the_forward_pass_equals_the_step_with_it(tmp_path):
    """One GRPO step with a KL term through the trainer: skipping the no-grad forward (the
    default with one update per batch) gives the parameters of the step that runs it."""
    from rljax.experiments.presets import SMOKE_MODEL

    from rljax.envs.arithmetic import ArithmeticFamily
    from rljax.train import (
        ExperimentConfig,
        MethodSection,
        SFTSection,
        TaskSection,
        Trainer,
        TrainSection,
    )

    config = ExperimentConfig(
        name="levers",
        model=SMOKE_MODEL,
        method=MethodSection(name="grpo", kwargs={"kl_beta": 0.04}),
        task=TaskSection(prompts_per_step=2, group_size=4, max_new_tokens=4, max_len=32),
        train=TrainSection(steps=1, eval_prompts=0),
        sft=SFTSection(steps=0),
    )

    def rewards(task, response):  # varied groups: a live policy gradient
        return float(len(response) % 2)

    def one_step(reuse):
        trainer = Trainer(config, tmp_path / str(reuse), family=ArithmeticFamily(digits=1),
                          reward_fn=rewards)  # fmt: skip
        assert trainer.reuse_logprobs
        if not reuse:  # the unoptimised path: a separate forward gives the old log-probs
            trainer.reuse_logprobs = False
            trainer.update = make_update_fn(
                trainer.graphdef, trainer.method, trainer.optimizer, temperature=1.0,
                impl="auto", mesh=trainer.mesh, state_sharding=trainer.state_sharding,
            )  # fmt: skip
        metrics = trainer.step()
        return metrics, jax.tree.map(np.asarray, trainer.state.params)

    fast, slow = one_step(True), one_step(False)
    assert fast[0]["loss"] == pytest.approx(slow[0]["loss"], abs=2e-6)
    assert fast[0]["rollout_entropy"] == pytest.approx(slow[0]["rollout_entropy"], rel=1e-5)
    assert "sampler_logprob_gap" in slow[0]
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=0, atol=2e-6), fast[1], slow[1])
