"""The DelTA studies: arms and settings, the probe's coefficient statistics against delta.md's
worked example, its per-update log-prob moves, and the probe end to end on a smoke trainer."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from rljax.experiments.studies import delta, delta_f0, delta_f32, delta_llama

from rljax import methods
from rljax.data.tokenizer import load_tokenizer
from rljax.envs.arithmetic import FILLER_WORDS, ArithmeticFamily
from rljax.rollout import expert_trajectories
from rljax.train.loop import Trainer
from rljax.train.sft import fingerprint

STUDIES = {
    "delta": (delta.STUDY, 8, "qwen3"),
    "delta_f0": (delta_f0.STUDY, 0, "qwen3"),
    "delta_f32": (delta_f32.STUDY, 32, "qwen3"),
    "delta_llama": (delta_llama.STUDY, 8, "llama"),
}


@pytest.mark.parametrize("name", STUDIES)
def test_arms_and_settings(name):
    study, filler, family = STUDIES[name]
    assert study.name == name and study.baseline == "dapo_c1" and study.seeds == 5
    expected = {
        "dapo_c1": {"c_min": 1.0, "c_max": 1.0},
        "delta": {},
        "delta_nrefine0": {"n_refine": 0},
        "delta_range_0.5_1.5": {"c_min": 0.5, "c_max": 1.5},
        "delta_proxy_h": {"proxy": "h"},
    }
    if name != "delta":  # the variants run the headline pair only
        expected = {k: expected[k] for k in ("dapo_c1", "delta")}
    for smoke in (False, True):
        configs = {arm: study.run_config(arm, 0, smoke=smoke) for arm in study.arms}
        assert {a: c.method.kwargs for a, c in configs.items()} == expected
        assert {c.method.name for c in configs.values()} == {"delta"}
        assert len({fingerprint(c) for c in configs.values()}) == 1  # one warm start per seed
        config = configs["delta"]
        assert config.task.kwargs["filler"] == filler
        model = methods.make_method(config.method.name, **config.method.kwargs)
        assert model.filter_groups is False  # no dynamic sampling in any arm
        # The study's architecture, also in the smoke model.
        overrides = config.model.overrides
        assert overrides.get("family", "qwen3") == family
        assert overrides.get("qk_norm", True) is (family == "qwen3")
        if not smoke:
            assert overrides["num_layers"] == 2 and config.train.steps == delta.STEPS
    for kwargs in expected.values():  # every arm's method builds
        methods.make_method("delta", **kwargs)


@pytest.mark.parametrize("filler", [0, 8, 32])
def test_budgets_fit_the_longest_expert_response(filler):
    """The longest sum with F filler words, EOS included, fits the response budget, and
    prompt plus response fit the context."""
    tokenizer = load_tokenizer()
    task_section = delta.task(filler)
    family = ArithmeticFamily(**task_section.kwargs)
    longest = max(
        len(
            tokenizer.encode(
                family.expert(family.generate("train", i), rng), add_special_tokens=False
            )
        )
        for rng in [np.random.default_rng(0)]
        for i in range(200)
    )
    assert longest == filler + 8  # "<answer>", 2 digits (9 + 9 = 18), "</answer>"
    assert longest + 1 <= task_section.max_new_tokens  # + EOS
    assert task_section.max_len >= delta.PROMPT_BUDGET + task_section.max_new_tokens


def _types(tokenizer, rows):
    """Token ids of rows of words ("d" a digit, "f" a filler word, "<" a format token)."""
    word = {"d": "7", "f": FILLER_WORDS[0], "<": "<"}
    ids = np.array(
        [[tokenizer.encode(word[w], add_special_tokens=False)[0] for w in row] for row in rows]
    )
    return ids, delta.token_types(ids, tokenizer)


def test_coefficient_stats_worked_example():
    """delta.md section 6: H = 2, P = 2, G = 2, T = 2, proxy = h (p ~ 0). Row 0 (Pos) and row 1
    (Neg) each hold a "decisive" token (a digit here) and a second token (filler here)."""
    tokenizer = load_tokenizer()
    tokens, types = _types(tokenizer, ["df", "df", "<<", "<<"])
    hidden = jnp.array(
        [[[2, 0], [0, 1]], [[-2, 0], [1, 1]], [[0.5, 0.5], [0, 0]], [[0.3, 0.3], [0, 0]]],
        jnp.float32,
    )
    mask = np.array([[1, 1], [1, 1], [1, 0], [1, 0]], bool)
    logprobs = jnp.full((4, 2), -200.0)  # p = 0: v = (1 - p) h = h
    advantages = jnp.array([0.707106, -0.707106, 0.0, 0.0])
    got = delta.coefficient_stats(hidden, logprobs, advantages, mask, types)
    assert got["coef_digits_pos"] == pytest.approx(1.18004, abs=1e-5)
    assert got["coef_filler_pos"] == pytest.approx(0.979859, abs=1e-5)
    assert got["coef_digits_neg"] == pytest.approx(1.16203, abs=1e-5)
    assert got["coef_filler_neg"] == pytest.approx(0.913975, abs=1e-5)
    assert got["coef_scale"] == pytest.approx(6 / 5.83590, abs=1e-5)
    assert got["coef_saturated"] == 0.0  # the nearest end is 1.2 - 1.18004 > 1% of 0.4 away
    assert "coef_format_pos" not in got and "coef_format_neg" not in got  # only Zero rows
    mu_pos, mu_neg = np.array([1.32109, 0.339457]), np.array([-1.05229, 0.315903])
    cos = mu_pos @ mu_neg / np.linalg.norm(mu_pos) / np.linalg.norm(mu_neg)
    assert got["centroid_cos"] == pytest.approx(cos, abs=1e-5)
    assert got["centroid_dist"] == pytest.approx(np.linalg.norm(mu_pos - mu_neg), abs=1e-5)
    assert got["centroid_dist_initial"] == pytest.approx(1.5, abs=1e-6)  # (1, .5) vs (-.5, .5)
    # Without the filler each side is its decisive token: (2, 0) and (-2, 0), opposite.
    assert got["centroid_cos_no_filler"] == pytest.approx(-1.0, abs=1e-6)
    # No wrong response: no Neg statistics and no contrast.
    one_side = delta.coefficient_stats(
        hidden, logprobs, jnp.array([0.707106, 0.0, 0.0, 0.0]), mask, types
    )
    assert set(one_side) == {"coef_scale", "coef_saturated", "coef_digits_pos", "coef_filler_pos"}
    # A one-token side takes c = c_max (delta.md section 3, edge cases): saturated.
    lone = np.array([[1, 0], [1, 1], [1, 0], [1, 0]], bool)
    assert delta.coefficient_stats(hidden, logprobs, advantages, lone, types)[
        "coef_saturated"
    ] == pytest.approx(1 / 3)


def test_token_types_refuse_a_multi_token_filler_word():
    class Split:  # a tokenizer spelling every word letter by letter
        def encode(self, text, add_special_tokens=False):
            return [ord(c) for c in text]

    with pytest.raises(ValueError, match="filler word ' think' is 6 tokens"):
        delta.token_types(np.zeros((1, 1), int), Split())


@pytest.fixture(scope="module")
def trainer(tmp_path_factory):
    """The `delta` study's smoke trainer at its random initialisation."""
    config = delta.STUDY.run_config("delta", 0, smoke=True)
    return Trainer(config, tmp_path_factory.mktemp("delta") / "run")


# The two trainer tests compile a forward and an update (~40 s of CPU, 2-3 min under load): slow,
# like the delta studies' whole smoke runs in tests/experiments/test_reproduce.py (there the probe
# runs end to end on a random policy). The default suite checks the probe's statistics above.
@pytest.mark.slow
def test_measure_on_expert_groups_leaves_the_policy_as_it_was(trainer):
    """`measure` on 4 groups of 2 noisy expert responses (F = 8 filler words, then the answer):
    both sides, every token type, and the trainer's state restored after the two updates."""
    tasks = [trainer.family.generate("heldout", i) for i in range(4)]
    rows = [task for task in tasks for _ in range(2)]
    traj = expert_trajectories(
        trainer.family, rows, trainer.tokenizer, np.random.default_rng(1), noise=0.5,
        max_tokens=trainer.config.task.max_len, pad_multiple=16,
    )  # fmt: skip
    rewards = np.asarray(traj.rewards).reshape(4, 2)
    assert (rewards.min(1) != rewards.max(1)).any()  # a mixed group: both sides exist
    before = jax.tree.map(np.asarray, trainer.state)
    got = delta.measure(trainer, traj, tasks, group_size=2)
    kinds = [f"coef_{k}_{s}" for k in ("digits", "filler", "format") for s in ("pos", "neg")]
    moves = [f"dlogp_{k}_{c}" for k in ("digits", "filler") for c in ("c1", "delta")]
    assert set(got) == {
        "probe_accuracy", "coef_scale", "coef_saturated", *kinds, "centroid_cos",
        "centroid_dist", "centroid_dist_initial", "centroid_cos_no_filler", *moves,
        "filler_move_ratio",
    }  # fmt: skip
    assert 0.0 <= got["coef_saturated"] <= 1.0
    assert got["probe_accuracy"] == pytest.approx(np.mean(rewards))
    assert all(0.8 <= got[k] <= 1.2 for k in kinds)
    assert all(got[k] > 0 for k in moves)
    after = jax.tree.map(np.asarray, trainer.state)
    jax.tree.map(np.testing.assert_array_equal, before, after)


@pytest.mark.slow
def test_update_moves(trainer):
    """Zero credit leaves every log-prob in place (no weight decay); real credit moves them."""
    tasks = [trainer.family.generate("heldout", i) for i in range(4)]
    traj = expert_trajectories(
        trainer.family, tasks * 2, trainer.tokenizer, np.random.default_rng(0),
        max_tokens=trainer.config.task.max_len, pad_multiple=16,
    )  # fmt: skip
    _, batch, fwd = trainer.prepare_inputs(traj, tasks, np.ones(4, bool), group_size=2)
    mask = np.asarray(traj.action_mask, bool)
    # Every other column counts as "filler", the rest as "digits".
    columns = np.arange(mask.shape[1])[None, :] % 2 == 0
    types = {"filler": np.broadcast_to(columns, mask.shape), "digits": ~columns}
    advantages = jnp.asarray(np.where(np.arange(8) % 2, 1.0, -1.0), jnp.float32)
    credit = {
        "c1": jnp.zeros(mask.shape, jnp.float32),
        "delta": advantages[:, None] * mask,
    }
    got = delta.update_moves(trainer, batch, fwd.logprobs, credit, types, mask)
    assert got["dlogp_filler_c1"] == got["dlogp_digits_c1"] == 0.0
    assert got["dlogp_filler_delta"] > 0 and got["dlogp_digits_delta"] > 0
    assert "filler_move_ratio" not in got  # undefined when the c = 1 update does not move
