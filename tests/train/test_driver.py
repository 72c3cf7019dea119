"""The driver and the public API: skipped updates, any optax optimiser, family/reward objects,
capability and vocabulary checks, the jitted prepare and the derived normaliser."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from rljax.experiments.presets import SMOKE_MODEL

from rljax import losses, methods
from rljax.envs.arithmetic import ArithmeticFamily
from rljax.envs.reward import RewardFamily
from rljax.methods import PrepareInputs
from rljax.train import (
    ExperimentConfig,
    MethodSection,
    ModelSection,
    SFTSection,
    TaskSection,
    Trainer,
    TrainSection,
    build_policy,
    make_prepare_fn,
)

CONFIG = ExperimentConfig(
    name="driver",
    model=SMOKE_MODEL,
    method=MethodSection(name="dapo"),
    task=TaskSection(prompts_per_step=2, group_size=4, max_new_tokens=4, max_len=32),
    train=TrainSection(steps=2, eval_prompts=0, max_gen_rounds=1),
    sft=SFTSection(steps=0),
)


def _counts(opt_state):
    """Every step counter (`count` field) in an optimiser state: Adam's and the schedule's."""
    return [
        int(x)
        for path, x in jax.tree_util.tree_flatten_with_path(opt_state)[0]
        if jax.tree_util.keystr(path).endswith(".count")
    ]


def _host(tree):
    return jax.tree.map(lambda x: np.array(x), tree)


def _equal(a, b):
    return all(jax.tree.leaves(jax.tree.map(np.array_equal, a, b)))


@pytest.mark.slow
def test_empty_dynamic_sampling_skips_the_update_and_a_kept_group_does_not(tmp_path, monkeypatch):
    trainer = Trainer(
        CONFIG,
        tmp_path,
        family=ArithmeticFamily(digits=1),
        reward_fn=lambda task, response: 0.0,  # every group all-equal: dynamic sampling keeps none
        # A plain optax optimiser (the trainer adds the non-finite guard) with a schedule.
        optimizer=optax.adamw(optax.linear_schedule(1e-2, 0.0, 10)),
    )
    assert isinstance(trainer.family, RewardFamily)
    params, opt_state = _host(trainer.state.params), _host(trainer.state.opt_state)
    assert len(_counts(opt_state)) == 2 and set(_counts(opt_state)) == {0}  # Adam, schedule

    metrics = trainer.step()
    assert metrics["update_skipped"] == 1.0 and metrics["groups_kept"] == 0.0
    assert "loss" not in metrics
    assert int(trainer.state.step) == 1
    assert _equal(params, _host(trainer.state.params))
    assert _equal(opt_state, _host(trainer.state.opt_state))
    assert set(_counts(trainer.state.opt_state)) == {0}

    def collect_varied(key):  # the same rollouts with rewards 0, 1, 0, 1, ... (groups kept)
        tasks = next(trainer.data)
        traj = trainer._sample(tasks, key)
        rewards = np.tile(np.float32([0.0, 1.0]), traj.batch_size // 2)
        return traj.replace(rewards=rewards), tasks, np.ones(len(tasks), bool), {}

    monkeypatch.setattr(trainer, "collect", collect_varied)
    metrics = trainer.step()
    assert metrics["update_skipped"] == 0.0 and metrics["adv_abs_mean"] > 0
    assert metrics["skipped_updates"] == 0.0  # the non-finite guard the trainer added
    assert int(trainer.state.step) == 2
    assert not _equal(params, _host(trainer.state.params))
    assert set(_counts(trainer.state.opt_state)) == {1}


def test_a_missing_capability_names_family_method_and_protocol(tmp_path):
    config = dataclasses.replace(CONFIG, method=MethodSection(name="anti_sd"))
    with pytest.raises(ValueError) as err:
        Trainer(config, tmp_path, family=ArithmeticFamily())
    message = str(err.value)
    assert "'arithmetic'" in message and "'anti_sd'" in message
    assert "TeacherContextFamily" in message and "teacher_context" in message
    with pytest.raises(ValueError, match="ReflectiveFamily"):
        Trainer(
            dataclasses.replace(CONFIG, train=dataclasses.replace(CONFIG.train, reflection={})),
            tmp_path,
        )


def test_a_model_vocabulary_unlike_the_tokenizer_is_refused():
    model = ModelSection(preset="tiny", overrides={**SMOKE_MODEL.overrides, "vocab_size": 512})
    with pytest.raises(ValueError, match="vocab_size=512 does not match the tokenizer's 1024"):
        build_policy(model, seed=0)


def _inputs(seed, b=4, t=6, g=2):
    rng = np.random.default_rng(seed)
    mask = (rng.random((b, t)) < 0.7).astype(np.float32)
    zeros = np.zeros((b, t), np.float32)
    return PrepareInputs(
        rewards=jnp.asarray(rng.integers(0, 2, (b // g, g)), jnp.float32),
        task_ids=jnp.zeros(b // g, jnp.int32),
        group_mask=jnp.ones(b // g, bool),
        action_mask=jnp.asarray(mask),
        env_mask=jnp.asarray(zeros),
        warning_mask=jnp.asarray(zeros),
        stage_ids=jnp.full((b, t), -1, jnp.int32),
        stage_rewards=jnp.zeros((b // g, g, 0), jnp.float32),
        cluster_ids=jnp.zeros((b // g, g), jnp.int32),
        old_logprobs=jnp.asarray(rng.normal(-2.0, 0.5, (b, t)), jnp.float32),
        old_entropy=jnp.asarray(zeros),
        lengths=jnp.asarray(mask.sum(-1), jnp.int32),
    )


def test_jitted_prepare_equals_eager_and_compiles_once_per_shape():
    method = methods.grpo()
    prepare = make_prepare_fn(method)
    for seed in range(3):
        inputs = _inputs(seed)
        eager_adv, _, eager_metrics = method.prepare(inputs, ())
        adv, _, metrics = prepare(inputs, ())
        np.testing.assert_allclose(adv, eager_adv, rtol=1e-6)
        # adv_abs_mean = token-mean of |A_b| over the action tokens, computed here in numpy.
        mask = np.asarray(inputs.action_mask)
        expected = (np.abs(np.asarray(eager_adv))[:, None] * mask).sum() / mask.sum()
        np.testing.assert_allclose(metrics["adv_abs_mean"], expected, rtol=1e-6)
    assert prepare._cache_size() == 1
    prepare(_inputs(0, b=8), ())
    assert prepare._cache_size() == 2


def test_normaliser_is_the_aggregation_denominator():
    mask = jnp.array([[0, 1, 1, 0], [0, 0, 0, 0], [1, 1, 1, 1]], jnp.float32)
    # token-mean: 6 tokens; seq-mean-token-mean: 2 rows with a token; -sum-norm and ECHO: B = 3.
    assert float(methods.grpo().normalizer(mask)) == 6.0
    assert float(methods.grpo(mode="seq-mean-token-mean").normalizer(mask)) == 2.0
    assert float(methods.drgrpo().normalizer(mask)) == 3.0
    assert float(methods.echo().normalizer(mask)) == 3.0
    assert float(losses.aggregate_sums(mask, mask, mode="token-mean")[1]) == 6.0
    with pytest.raises(ValueError, match="aggregation mode"):
        dataclasses.replace(methods.grpo(), mode="token-sum")


def test_reward_family_scores_with_the_function():
    family = RewardFamily(ArithmeticFamily(digits=1), lambda task, response: len(response) / 10)
    task = family.generate("train", 3)
    assert task == ArithmeticFamily(digits=1).generate("train", 3)
    assert family.verify(task, "12345").reward == 0.5 and family.name == "arithmetic+reward"
