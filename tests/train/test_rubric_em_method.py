"""The RubricEM method's answer-only option (REM-7, terminal broadcast) on rubric_em.md's E3 group,
jitted and not: every stage token of a rollout gets its normalised answer score, tokens outside
the stages get 0, and the default stays SS-GRPO."""

import numpy as np
import pytest

from rljax import methods
from rljax.methods import PrepareInputs

# rubric_em.md section 6, E3: four rollouts, K = 4 stage scores each.
E3 = [[0.8, 0.5, 0.6, 0.7], [0.4, 0.9, 0.9, 0.3], [0.6, 0.6, 0.2, 0.5], [1.0, 0.0, 0.0, 0.0]]
E3_BROADCAST = [1.25676, -0.290021, 0.483368, -1.45010]
E3_SS_GRPO = [
    [1.40282, 0.569558, 0.915688, 1.25676],
    [0.256430, 0.914745, 0.873587, -0.290021],
    [-0.286599, 0.189853, -0.263129, 0.483368],
    [-1.37266, -1.67416, -1.52615, -1.45010],
]
# Six tokens per row: a prompt token (-1), then one token of each stage, then padding (-1).
STAGE_IDS = [-1, 0, 1, 2, 3, -1]


def _inputs():
    g, t = 4, len(STAGE_IDS)
    zeros = np.zeros((g, t), np.float32)
    ids = np.tile(np.asarray(STAGE_IDS, np.int32), (g, 1))
    return PrepareInputs(
        rewards=np.asarray(E3, np.float32)[None, :, -1],
        task_ids=np.zeros(1, np.int32),
        group_mask=np.ones(1, bool),
        action_mask=ids >= 0,
        env_mask=zeros.astype(bool),
        warning_mask=zeros.astype(bool),
        stage_ids=ids,
        stage_rewards=np.asarray(E3, np.float32)[None],
        cluster_ids=np.zeros((1, g), np.int32),
        old_logprobs=zeros,
        old_entropy=zeros,
        lengths=np.full(g, t, np.int32),
    )


def test_terminal_broadcast_gives_every_stage_the_answer_advantage(variant):
    adv, _, metrics = variant(methods.rubric_em(terminal_broadcast=True).prepare)(_inputs(), ())
    expected = np.asarray(E3_BROADCAST)[:, None] * (np.asarray(STAGE_IDS) >= 0)
    np.testing.assert_allclose(adv, expected, atol=1e-5)
    for k in range(4):
        assert float(metrics[f"stage_adv_abs_{k}"]) == pytest.approx(np.mean(np.abs(E3_BROADCAST)))


def test_default_is_ss_grpo(variant):
    adv, _, _ = variant(methods.rubric_em().prepare)(_inputs(), ())
    np.testing.assert_allclose(np.asarray(adv)[:, 1:5], E3_SS_GRPO, atol=1e-5)
    assert np.all(np.asarray(adv)[:, [0, 5]] == 0)


def test_terminal_broadcast_refuses_a_dependence_matrix():
    with pytest.raises(ValueError, match="terminal_broadcast ignores the stage scores"):
        methods.rubric_em(terminal_broadcast=True, dependence=np.eye(4))


def test_registry_passes_the_option():
    method = methods.make_method("rubric_em", terminal_broadcast=True)
    assert method.name == "rubric_em" and "stages" in method.needs and "reference" in method.needs
