"""RubricEM's credit-assignment claim on a toy: the "stage-chain bandit" (methods/rubric_em.md 8.2).

    python -m rljax.experiments.rubric_em_bandit [--seeds N] [--steps S] [--out DIR] [--smoke]

A trajectory is K = 4 sequential 8-way choices conditioned on a context c; stage k is right
(q_k = 1) iff its choice equals a fixed random table h_k(c). The judge scores the stages
    R_0 = q_0,  R_1 = q_1 (0.5 + 0.5 q_0),  R_2 = q_2 (0.5 + 0.5 mean(q_0, q_1)),
    R_3 = mean(q_0, .., q_3),
and reports R~_k = clip(R_k + N(0, sigma^2), 0, 1) for the intermediate stages k < 3 (R_3 is
exact). Two arms train the same tabular softmax policy (logits [C, K, 8], zero at the start) with
the same update and differ only in the advantage function (REM-4 / REM-7):
    terminal broadcast: `losses.terminal_broadcast_advantages` (every stage gets the group-
        normalised R_3, i.e. GRPO on the final reward);
    SS-GRPO: `losses.stagewise_advantages` with the paper's Lambda (`PAPER_STAGE_DEPENDENCE`),
        population std, eps 1e-8 (the library defaults, as `rljax.methods.rubric_em` uses them).
Each step draws P contexts (uniformly, with replacement) and G rollouts per context; the stage
advantages become per-"token" advantages through `losses.stage_token_advantages` (one token per
stage) and one Adam step is taken on `losses.policy_loss` (token-mean, on-policy, so the ratio is
1 and the clip is inactive: the gradient is -mean_k A_k grad log pi(a_k | c)). No KL term: there is
no reference model in a bandit, and the toy isolates credit assignment.

The metric is the noise-free expected final reward E[R_3] = mean_c mean_k pi_k(h_k(c) | c), exact
(no sampling), after every update; the outcome is the first step at which it reaches 0.9.
Randomness comes from the seed alone (the tables h, each step's contexts, action draws and judge
noise), so both arms of a seed see the same tables and contexts and the same random numbers.
Every (arm, seed, sigma, learning rate) run is one `jax.jit(jax.vmap(...))` call; the learning
rate is chosen from a grid on separate tuning seeds, the same value for both arms.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
from etils import epath
from rljax.experiments import stats, study_report

from rljax import losses

NUM_STAGES = 4
NUM_ACTIONS = 8
SIGMAS = (0.0, 0.1, 0.3, 0.6, 1.0)
TARGET = 0.9
LEVEL = 0.95
LEARNING_RATES = (0.03, 0.1, 0.3, 1.0, 3.0)
TUNING_SEED_OFFSET = 1000
DEFAULT_OUT = epath.Path(__file__).parent / "results" / "rubric_em"
PLOT_NAME = "bandit.png"

AdvantageFn = Callable[[jax.Array], jax.Array]


def ss_grpo_advantages(stage_rewards: jax.Array) -> jax.Array:
    """SS-GRPO (REM-3, REM-4) with the paper's Lambda and the library's std/eps defaults."""
    return losses.stagewise_advantages(stage_rewards, losses.PAPER_STAGE_DEPENDENCE)


ARMS: dict[str, AdvantageFn] = {
    "broadcast": losses.terminal_broadcast_advantages,
    "ss_grpo": ss_grpo_advantages,
}
"""Arm name -> advantage function [P, G, K] stage rewards -> [P, G, K] advantages."""
BASELINE = "broadcast"


@dataclasses.dataclass(frozen=True)
class Config:
    """The training setup, the same for both arms.

    Attributes:
        num_contexts: C, the number of distinct contexts (rows of the tables h_k).
        prompts: P, contexts drawn per step.
        group_size: G, rollouts per context.
        steps: policy updates per run.
    """

    num_contexts: int = 16
    prompts: int = 16
    group_size: int = 8
    steps: int = 400

    def __post_init__(self):
        for name in ("num_contexts", "prompts", "steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise ValueError(
                f"group_size must be >= 2 (group-normalised advantages), got {self.group_size}"
            )


class Draws(NamedTuple):
    """Every random number of one seed's run, drawn before training (shared by both arms).

    Attributes:
        targets: [C, K] int32 the tables h_k(c) (correct choices, uniform over the 8 actions).
        contexts: [S, P] int32 the contexts of each step (uniform, with replacement).
        uniforms: [S, P, G, K] float32 in [0, 1): the choice of stage k is the inverse CDF of
            pi_k(. | c) at this number.
        noise: [S, P, G, K] float32 standard normal; the judge adds sigma * noise to R_k, k < 3.
    """

    targets: jax.Array
    contexts: jax.Array
    uniforms: jax.Array
    noise: jax.Array


class Trace(NamedTuple):
    """What one run records.

    Attributes:
        expected_r3: [S + 1] noise-free E[R_3] before the first update and after each.
        batch_rewards: [S, K] the batch mean of the (noisy) stage rewards the arm trained on.
    """

    expected_r3: jax.Array
    batch_rewards: jax.Array


def stage_rewards(correct: chex.Array) -> jax.Array:
    """The judge's exact stage scores R_0..R_3 from the per-stage hits q (spec 8.2).

    Args:
        correct: [..., 4] q_k in {0, 1} (bool or float).

    Returns:
        [..., 4] float32 (R_0, R_1, R_2, R_3).
    """
    chex.assert_axis_dimension(correct, -1, NUM_STAGES)
    q = jnp.asarray(correct, jnp.float32)
    q0, q1, q2 = q[..., 0], q[..., 1], q[..., 2]
    r1 = q1 * (0.5 + 0.5 * q0)
    r2 = q2 * (0.5 + 0.5 * (q0 + q1) / 2.0)
    return jnp.stack([q0, r1, r2, jnp.mean(q, axis=-1)], axis=-1)


def judge_noise(rewards: chex.Array, noise: chex.Array, sigma: chex.Numeric) -> jax.Array:
    """R~_k = clip(R_k + sigma * noise_k, 0, 1) for the intermediate stages k < 3; R_3 exact.

    Args:
        rewards: [..., 4] exact stage scores.
        noise: [..., 4] standard normal draws (entry 3 is unused).
        sigma: the judge noise standard deviation (>= 0; may be traced).

    Returns:
        [..., 4] float32 noisy stage scores.
    """
    chex.assert_axis_dimension(rewards, -1, NUM_STAGES)
    chex.assert_equal_shape([rewards, noise])
    r = jnp.asarray(rewards, jnp.float32)
    noisy = jnp.clip(r + sigma * jnp.asarray(noise, jnp.float32), 0.0, 1.0)
    return r.at[..., :-1].set(noisy[..., :-1])


def make_draws(key: chex.PRNGKey, config: Config) -> Draws:
    """All random numbers of one seed: the tables, and each step's contexts, choices and noise."""
    c, p, g, s = config.num_contexts, config.prompts, config.group_size, config.steps
    table_key, context_key, choice_key, noise_key = jax.random.split(key, 4)
    return Draws(
        targets=jax.random.randint(table_key, (c, NUM_STAGES), 0, NUM_ACTIONS),
        contexts=jax.random.randint(context_key, (s, p), 0, c),
        uniforms=jax.random.uniform(choice_key, (s, p, g, NUM_STAGES)),
        noise=jax.random.normal(noise_key, (s, p, g, NUM_STAGES)),
    )


_draws_over_seeds = jax.jit(jax.vmap(make_draws, in_axes=(0, None)), static_argnums=1)


def seed_draws(seeds: Sequence[int], config: Config) -> Draws:
    """`make_draws` for each seed (key = `jax.random.key(seed)`), stacked on a leading axis."""
    return _draws_over_seeds(jnp.stack([jax.random.key(seed) for seed in seeds]), config)


def expected_final_reward(logits: chex.Array, targets: chex.Array) -> jax.Array:
    """Noise-free E[R_3] under the policy, averaged over contexts: mean_c mean_k pi_k(h_k(c) | c).

    Args:
        logits: [C, K, 8] policy logits.
        targets: [C, K] correct choices.
    """
    chex.assert_rank([logits, targets], [3, 2])
    probs = jax.nn.softmax(logits, axis=-1)
    return jnp.mean(jnp.take_along_axis(probs, targets[..., None], axis=-1)[..., 0])


def sample_choices(logits: chex.Array, uniforms: chex.Array) -> jax.Array:
    """Inverse-CDF sampling: the first action whose cumulative probability exceeds u.

    Args:
        logits: [P, K, 8] the drawn contexts' logits.
        uniforms: [P, G, K] numbers in [0, 1).

    Returns:
        [P, G, K] int32 actions, distributed as softmax(logits) for uniform u.
    """
    chex.assert_rank([logits, uniforms], [3, 3])
    cdf = jnp.cumsum(jax.nn.softmax(logits, axis=-1), axis=-1)[:, None]  # [P, 1, K, 8]
    below = jnp.sum(cdf <= uniforms[..., None], axis=-1)
    return jnp.minimum(below, NUM_ACTIONS - 1).astype(jnp.int32)


def _action_logprobs(logits: jax.Array, contexts: jax.Array, actions: jax.Array) -> jax.Array:
    """log pi(a_k | c): logits [C, K, 8], contexts [P], actions [P, G, K] -> [P, G, K]."""
    logp = jax.nn.log_softmax(logits[contexts], axis=-1)  # [P, K, 8]
    logp = jnp.broadcast_to(logp[:, None], (*actions.shape, NUM_ACTIONS))
    return jnp.take_along_axis(logp, actions[..., None], axis=-1)[..., 0]


def _policy_gradient_loss(
    logits: jax.Array, contexts: jax.Array, actions: jax.Array, stage_adv: jax.Array
) -> jax.Array:
    """The library's token-mean policy loss with one token per stage (REM-5, REM-6)."""
    logp = _action_logprobs(logits, contexts, actions)
    p, g, k = logp.shape
    logp = logp.reshape(p * g, k)  # [B, K]: token k is the stage-k choice
    stage_ids = np.broadcast_to(np.arange(k, dtype=np.int32), (p * g, k))
    token_adv = losses.stage_token_advantages(stage_adv.reshape(p * g, k), stage_ids)
    loss, _ = losses.policy_loss(
        logp, jax.lax.stop_gradient(logp), token_adv, jnp.ones_like(logp), mode="token-mean"
    )
    return loss


def make_train(
    advantage_fns: Sequence[AdvantageFn],
) -> Callable[[jax.Array, Draws, jax.Array, jax.Array], Trace]:
    """`train(arm, draws, sigma, learning_rate) -> Trace`: one run, pure and jittable.

    `arm` indexes `advantage_fns`; nothing else differs between arms. The policy starts uniform
    (zero logits); each step samples P x G trajectories from the draws, scores them, computes
    the arm's stage advantages and takes one Adam step.
    """

    def advantages(arm: jax.Array, rewards: jax.Array) -> jax.Array:
        return jax.lax.switch(arm, list(advantage_fns), rewards)

    def train(arm: jax.Array, draws: Draws, sigma: jax.Array, learning_rate: jax.Array) -> Trace:
        num_contexts = draws.targets.shape[0]
        optimiser = optax.adam(learning_rate)
        logits = jnp.zeros((num_contexts, NUM_STAGES, NUM_ACTIONS), jnp.float32)

        def step(carry, batch):
            logits, opt_state = carry
            contexts, uniforms, noise = batch
            actions = sample_choices(logits[contexts], uniforms)  # [P, G, K]
            correct = actions == draws.targets[contexts][:, None, :]
            rewards = judge_noise(stage_rewards(correct), noise, sigma)
            stage_adv = advantages(arm, rewards)  # [P, G, K]
            grads = jax.grad(_policy_gradient_loss)(logits, contexts, actions, stage_adv)
            updates, opt_state = optimiser.update(grads, opt_state)
            logits = optax.apply_updates(logits, updates)
            record = (expected_final_reward(logits, draws.targets), rewards.mean((0, 1)))
            return (logits, opt_state), record

        batches = (draws.contexts, draws.uniforms, draws.noise)
        _, (r3, batch_rewards) = jax.lax.scan(step, (logits, optimiser.init(logits)), batches)
        start = expected_final_reward(logits, draws.targets)[None]
        return Trace(jnp.concatenate([start, r3]), batch_rewards)

    return train


@functools.cache
def _compiled(advantage_fns: tuple[AdvantageFn, ...]) -> Callable[..., Trace]:
    """`make_train` vmapped over arms, seeds, sigmas and learning rates (in that order), jitted."""
    over_lr = jax.vmap(make_train(advantage_fns), in_axes=(None, None, None, 0))
    over_sigma = jax.vmap(over_lr, in_axes=(None, None, 0, None))
    over_seed = jax.vmap(over_sigma, in_axes=(None, 0, None, None))
    return jax.jit(jax.vmap(over_seed, in_axes=(0, None, None, None)))


def run_arms(
    arms: dict[str, AdvantageFn],
    draws: Draws,
    sigmas: Sequence[float],
    learning_rates: Sequence[float],
) -> dict[str, Trace]:
    """Every (arm, seed, sigma, learning rate) run in one jitted call, all on the same draws.

    Args:
        arms: name -> advantage function, [P, G, K] stage rewards -> [P, G, K] advantages.
        draws: `seed_draws(seeds, config)`, leading axis = seeds.
        sigmas: judge noise levels (>= 0).
        learning_rates: Adam learning rates (>= 0; 0 leaves the policy uniform).

    Returns:
        name -> Trace of numpy arrays with leading axes [seeds, sigmas, learning rates].
    """
    for name, values in (("judge noise sigmas", sigmas), ("learning rates", learning_rates)):
        bad = [v for v in values if not v >= 0]
        if bad:
            raise ValueError(f"{name} must be >= 0, got {bad}")
    trace = _compiled(tuple(arms.values()))(
        jnp.arange(len(arms)),
        draws,
        jnp.asarray(sigmas, jnp.float32),
        jnp.asarray(learning_rates, jnp.float32),
    )
    return {name: Trace(*(np.asarray(x[i]) for x in trace)) for i, name in enumerate(arms)}


def steps_to_target(curve: np.ndarray) -> int | None:
    """The first step (0 = before any update) at which E[R_3] reaches TARGET; None if none does."""
    return study_report.steps_to_target(dict(enumerate(curve.tolist())), TARGET)


def _censored(reach: dict[int, int | None], steps: int) -> dict[int, float]:
    """Steps to the target per seed, a run that never reached it counted as steps + 1."""
    return {seed: float(steps + 1 if s is None else s) for seed, s in reach.items()}


def _arm_cell(curves: np.ndarray, seeds: Sequence[int], steps: int) -> dict:
    """Per-seed and interval summaries of one arm at one (sigma, learning rate): curves [seeds, S+1]."""
    reach = {seed: steps_to_target(curve) for seed, curve in zip(seeds, curves)}
    return {
        "steps_to_target": reach,
        "reached": sum(s is not None for s in reach.values()),
        "steps": stats.t_interval(list(_censored(reach, steps).values()), level=LEVEL).to_dict(),
        "final_r3": stats.t_interval(curves[:, -1].tolist(), level=LEVEL).to_dict(),
    }


def summarize_grid(
    traces: dict[str, Trace],
    seeds: Sequence[int],
    sigmas: Sequence[float],
    learning_rates: Sequence[float],
    steps: int,
) -> dict[float, dict[float, dict]]:
    """Per sigma and learning rate: each arm's summaries and the paired difference of
    steps to the target (each other arm minus the baseline), over `seeds`."""
    grid: dict[float, dict[float, dict]] = {}
    for i, sigma in enumerate(sigmas):
        grid[sigma] = {}
        for j, lr in enumerate(learning_rates):
            arms = {
                arm: _arm_cell(trace.expected_r3[:, i, j], seeds, steps)
                for arm, trace in traces.items()
            }
            base = _censored(arms[BASELINE]["steps_to_target"], steps)
            differences = {
                arm: stats.paired_difference(
                    _censored(cell["steps_to_target"], steps), base, level=LEVEL
                ).to_dict()
                for arm, cell in arms.items()
                if arm != BASELINE
            }
            grid[sigma][lr] = {"arms": arms, "paired_difference": differences}
    return grid


def select_learning_rate(tuning: dict[float, dict[float, dict]]) -> tuple[float, dict]:
    """The one learning rate for every arm and sigma: the grid value with the fewest mean steps
    to the target summed over arms and sigmas (unreached runs count as steps + 1); ties go to
    the smaller rate. Returns it and the score of every rate."""
    learning_rates = next(iter(tuning.values())).keys()
    scores = {
        lr: sum(
            cell["steps"]["mean"]
            for per_lr in tuning.values()
            for cell in per_lr[lr]["arms"].values()
        )
        for lr in learning_rates
    }
    best = min(sorted(scores), key=lambda lr: scores[lr])
    return best, scores


def mean_sd_curves(trace: Trace, sigma_index: int, lr_index: int) -> dict[str, list[float]]:
    """Mean and sd over seeds of E[R_3] per step at one (sigma, learning rate)."""
    curves = trace.expected_r3[:, sigma_index, lr_index]
    sd = curves.std(axis=0, ddof=1) if curves.shape[0] > 1 else np.zeros(curves.shape[1])
    return {"mean": curves.mean(axis=0).tolist(), "sd": sd.tolist()}


def verdict(by_sigma: dict[float, dict]) -> dict:
    """Whether the expected pattern (REM-8) holds at one learning rate.

    Args:
        by_sigma: {sigma: grid cell} at one learning rate (see `summarize_grid`).

    Returns:
        "faster_at_small_sigma": the paired difference (SS-GRPO minus broadcast, steps to the
        target) at the smallest sigma has its interval below 0; "slower_at_large_sigma": the one
        at the largest sigma has its interval above 0; "monotone": the mean differences do not
        decrease with sigma; "crossover_sigma": the smallest sigma with a positive mean
        difference (None if none); "reproduces": faster at small and slower at large sigma.
    """
    sigmas = sorted(by_sigma)
    diffs = [by_sigma[s]["paired_difference"]["ss_grpo"] for s in sigmas]
    means = [d["mean"] for d in diffs]
    faster = diffs[0]["high"] is not None and diffs[0]["high"] < 0
    slower = diffs[-1]["low"] is not None and diffs[-1]["low"] > 0
    return {
        "faster_at_small_sigma": faster,
        "slower_at_large_sigma": slower,
        "monotone": all(b >= a for a, b in zip(means, means[1:])),
        "crossover_sigma": next((s for s, m in zip(sigmas, means) if m > 0), None),
        "reproduces": faster and slower,
    }


def _f(value: float | None, signed: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value:+.1f}" if signed else f"{value:.1f}"


def _interval(d: dict, signed: bool = False) -> str:
    sd = "" if d["sd"] is None else f" +- {d['sd']:.1f}"
    bounds = "" if d["low"] is None else f" [{_f(d['low'], signed)}, {_f(d['high'], signed)}]"
    return f"{_f(d['mean'], signed)}{sd}{bounds}"


def _steps_text(cell: dict) -> str:
    n = len(cell["steps_to_target"])
    unreached = "" if cell["reached"] == n else f" ({n - cell['reached']}/{n} unreached)"
    return _interval(cell["steps"]) + unreached


def _verdict_text(v: dict, by_sigma: dict[float, dict]) -> str:
    sigmas = sorted(by_sigma)
    diffs = ", ".join(
        f"{s:g}: {_f(by_sigma[s]['paired_difference']['ss_grpo']['mean'], True)}" for s in sigmas
    )
    small, large = sigmas[0], sigmas[-1]
    if v["reproduces"]:
        head = (
            f"**Reproduces.** SS-GRPO reaches {TARGET} in fewer steps than terminal broadcast at "
            f"sigma = {small:g} and in more at sigma = {large:g}, both with 95% intervals "
            "excluding 0"
        )
    elif v["faster_at_small_sigma"]:
        head = (
            f"**Partly reproduces.** SS-GRPO is faster at sigma = {small:g} (interval below 0), "
            f"but not significantly slower at sigma = {large:g}"
        )
    else:
        head = (
            f"**Does not reproduce.** SS-GRPO is not significantly faster than terminal "
            f"broadcast at sigma = {small:g}"
        )
    order = "rises monotonically" if v["monotone"] else "does not rise monotonically"
    cross = (
        "never turns positive"
        if v["crossover_sigma"] is None
        else f"first turns positive at sigma = {v['crossover_sigma']:g}"
    )
    return f"{head}. The mean paired difference {order} with sigma ({diffs}) and {cross}."


def run_study(
    config: Config,
    seeds: Sequence[int],
    tuning_seeds: Sequence[int],
    sigmas: Sequence[float],
    learning_rates: Sequence[float],
) -> dict:
    """Both arms over the grid on the tuning and the report seeds; the learning rate is chosen
    on the tuning seeds and the report seeds give the table. Returns every number."""
    if set(seeds) & set(tuning_seeds):
        raise ValueError(
            f"tuning seeds {sorted(tuning_seeds)} overlap report seeds {sorted(seeds)}"
        )
    draws = seed_draws([*seeds, *tuning_seeds], config)
    traces = run_arms(ARMS, draws, sigmas, learning_rates)
    n = len(seeds)
    report = {arm: Trace(*(x[:n] for x in t)) for arm, t in traces.items()}
    tuning = {arm: Trace(*(x[n:] for x in t)) for arm, t in traces.items()}
    tuning_grid = summarize_grid(tuning, tuning_seeds, sigmas, learning_rates, config.steps)
    lr, scores = select_learning_rate(tuning_grid)
    grid = summarize_grid(report, seeds, sigmas, learning_rates, config.steps)
    j = list(learning_rates).index(lr)
    return {
        "config": dataclasses.asdict(config),
        "arms": {arm: f"{fn.__module__}.{fn.__name__}" for arm, fn in ARMS.items()},
        "baseline": BASELINE,
        "target": TARGET,
        "level": LEVEL,
        "seeds": list(seeds),
        "tuning_seeds": list(tuning_seeds),
        "sigmas": list(sigmas),
        "learning_rates": list(learning_rates),
        "tuning_scores": scores,
        "learning_rate": lr,
        "grid": grid,
        "verdict": verdict({s: grid[s][lr] for s in sigmas}),
        "verdict_per_learning_rate": {
            rate: verdict({s: grid[s][rate] for s in sigmas}) for rate in learning_rates
        },
        "curves": {
            sigma: {arm: mean_sd_curves(t, i, j) for arm, t in report.items()}
            for i, sigma in enumerate(sigmas)
        },
    }


def markdown(summary: dict, *, plotted: bool) -> str:
    """The report page: setup, provenance, the table at the chosen learning rate, the verdict
    and every learning rate of the grid (`summary` from `run_study` with "command", "commit",
    "wall_s" and "smoke" added)."""
    cfg, lr, sigmas = summary["config"], summary["learning_rate"], summary["sigmas"]
    n, steps = len(summary["seeds"]), cfg["steps"]
    lines = [
        "# RubricEM toy: the stage-chain bandit (methods/rubric_em.md 8.2)"
        + (" (smoke run)" if summary["smoke"] else ""),
        "",
        f"K = {NUM_STAGES} stages of {NUM_ACTIONS}-way choices, {cfg['num_contexts']} contexts, "
        f"a tabular softmax policy (zero logits at the start). Each step: {cfg['prompts']} "
        f"contexts x G = {cfg['group_size']} rollouts, one Adam step on the library's token-mean "
        f"`policy_loss` (on-policy, one token per stage), {steps} steps, {n} seeds. Arms "
        "differ only in the advantage function: `broadcast` = "
        "`rljax.losses.terminal_broadcast_advantages` (REM-7, GRPO on R_3), `ss_grpo` = "
        "`rljax.losses.stagewise_advantages` with `PAPER_STAGE_DEPENDENCE` (REM-3/4, population "
        "std, eps 1e-8). Judge noise on R_0..R_2 only; the metric is the exact noise-free E[R_3] "
        f"over all contexts; outcome = first step with E[R_3] >= {TARGET}.",
        "",
        f"- Command: `{summary['command']}`",
        f"- Commit: `{summary['commit']}`",
        f"- Wall time: {summary['wall_s']:.0f} s (both arms, {len(summary['learning_rates'])} "
        f"learning rates x {len(sigmas)} sigmas x {n} report + {len(summary['tuning_seeds'])} "
        "tuning seeds in one jitted call, compilation included)",
        "- Seeds and pairing: seed s fixes the tables h_k, every step's contexts, the uniforms the "
        "choices are drawn from (inverse CDF) and the judge's standard-normal noise; both arms "
        "(and every sigma and learning rate) use the same draws, so arms are compared paired by "
        "seed (`experiments/stats.py`, Student t, 95%).",
        f"- Tuning (equal for both arms): Adam learning rate from the grid "
        f"{summary['learning_rates']}, one value for both arms and every sigma: the one with the "
        "fewest mean steps to the target summed over both arms and all sigmas on separate tuning "
        f"seeds {summary['tuning_seeds'][0]}..{summary['tuning_seeds'][-1]} (scores: "
        + ", ".join(f"{k:g}: {v:.0f}" for k, v in summary["tuning_scores"].items())
        + f"). Chosen: **{lr:g}**. Every grid value is reported below.",
        f"- A run that never reaches {TARGET} counts as {steps + 1} steps (so its mean is a lower "
        "bound); the table says how many did not. The broadcast arm does not depend on sigma: "
        "its advantages read only the noise-free R_3.",
        "",
        f"## Steps to {TARGET} at learning rate {lr:g}",
        "",
        "mean +- sd [95% interval] over seeds; difference = ss_grpo - broadcast, paired by seed.",
        "",
        "| sigma | broadcast | ss_grpo | difference | final E[R_3] broadcast | final E[R_3] ss_grpo |",
        "|---|---|---|---|---|---|",
    ]
    lines += [_table_row(sigma, summary["grid"][sigma][lr]) for sigma in sigmas]
    by_sigma = {s: summary["grid"][s][lr] for s in sigmas}
    lines += ["", _verdict_text(summary["verdict"], by_sigma), ""]
    lines += _grid_lines(summary)
    figure = (
        f"![E[R_3] per step]({PLOT_NAME})"
        if plotted
        else "No figure: matplotlib is not installed (`pip install -e '.[plot]'`)."
    )
    lines += ["", figure, ""]
    return "\n".join(lines)


def _table_row(sigma: float, cell: dict) -> str:
    arms = cell["arms"]
    final = [f"{arms[a]['final_r3']['mean']:.3f}" for a in ("broadcast", "ss_grpo")]
    return (
        f"| {sigma:g} | {_steps_text(arms['broadcast'])} | {_steps_text(arms['ss_grpo'])} | "
        f"{_interval(cell['paired_difference']['ss_grpo'], signed=True)} | "
        f"{final[0]} | {final[1]} |"
    )


def _grid_lines(summary: dict) -> list[str]:
    """Every learning rate: mean steps per arm and the paired difference, per sigma."""
    lines = [
        "## Every learning rate of the grid",
        "",
        "Mean steps to the target (unreached runs in parentheses) and the paired difference "
        "ss_grpo - broadcast with its 95% interval.",
        "",
        "| lr | sigma | broadcast | ss_grpo | difference | pattern at this lr |",
        "|---|---|---|---|---|---|",
    ]
    n = len(summary["seeds"])
    for lr in summary["learning_rates"]:
        v = summary["verdict_per_learning_rate"][lr]
        pattern = "reproduces" if v["reproduces"] else "does not reproduce"
        for sigma in summary["sigmas"]:
            cell = summary["grid"][sigma][lr]
            arms = cell["arms"]
            means = [
                _f(arms[a]["steps"]["mean"])
                + ("" if arms[a]["reached"] == n else f" ({n - arms[a]['reached']})")
                for a in ("broadcast", "ss_grpo")
            ]
            diff = cell["paired_difference"]["ss_grpo"]
            lines.append(
                f"| {lr:g} | {sigma:g} | {means[0]} | {means[1]} | "
                f"{_f(diff['mean'], True)} [{_f(diff['low'], True)}, {_f(diff['high'], True)}] | "
                f"{pattern if sigma == summary['sigmas'][0] else ''} |"
            )
    return lines


def plot(summary: dict, path: epath.Path) -> bool:
    """Draws E[R_3] per step for each sigma (mean over seeds, band +-1 sd) and the paired
    difference against sigma for every learning rate; False when matplotlib is missing."""
    try:
        from matplotlib.figure import Figure
    except ImportError:
        return False
    sigmas, lr = summary["sigmas"], summary["learning_rate"]
    rows = len(sigmas) // 3 + 1  # one panel per sigma and one for the differences
    fig = Figure(figsize=(13.2, 3.2 * rows))
    axes = list(fig.subplots(rows, 3).flat)
    slowest = max(
        cell["steps"]["mean"] for s in sigmas for cell in summary["grid"][s][lr]["arms"].values()
    )
    x_max = min(summary["config"]["steps"], int(2 * slowest) + 1)  # the curves' rise, not the tail
    for ax, sigma in zip(axes, sigmas):
        for i, (arm, curve) in enumerate(summary["curves"][sigma].items()):
            mean, sd = np.asarray(curve["mean"]), np.asarray(curve["sd"])
            x = np.arange(mean.size)
            ax.plot(x, mean, color=f"C{i}", lw=1.3, label=arm)
            ax.fill_between(x, mean - sd, mean + sd, color=f"C{i}", alpha=0.2, lw=0)
        ax.axhline(TARGET, color="gray", ls=":", lw=1)
        ax.set_xlim(0, x_max)
        ax.set_title(f"sigma = {sigma:g}, lr = {lr:g}: noise-free E[R_3]", fontsize=9)
        ax.set_xlabel("step", fontsize=8)
        ax.legend(fontsize=7)
    _plot_differences(axes[len(sigmas)], summary)
    for extra in axes[len(sigmas) + 1 :]:
        extra.axis("off")
    for ax in axes:
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    n = len(summary["seeds"])
    fig.suptitle(f"Stage-chain bandit: mean over {n} seeds, band +-1 sd", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    return True


def _plot_differences(ax, summary: dict) -> None:
    """Paired difference ss_grpo - broadcast in steps to the target vs sigma, one line per lr."""
    sigmas = summary["sigmas"]
    for i, lr in enumerate(summary["learning_rates"]):
        diffs = [summary["grid"][s][lr]["paired_difference"]["ss_grpo"] for s in sigmas]
        mean = np.asarray([d["mean"] for d in diffs])
        low = np.asarray([d["mean"] if d["low"] is None else d["low"] for d in diffs])
        high = np.asarray([d["mean"] if d["high"] is None else d["high"] for d in diffs])
        ax.errorbar(
            sigmas,
            mean,
            yerr=[mean - low, high - mean],
            color=f"C{i + 2}",
            marker="o",
            ms=3,
            lw=1,
            capsize=2,
            label=f"lr {lr:g}",
        )
    ax.axhline(0.0, color="gray", lw=1)
    ax.set_yscale("symlog", linthresh=10)
    ax.set_title("steps to 0.9: ss_grpo - broadcast (95% interval)", fontsize=9)
    ax.set_xlabel("judge noise sigma", fontsize=8)
    ax.legend(fontsize=7)


def write_report(summary: dict, out: epath.Path) -> epath.Path:
    """Writes bandit.json, bandit.png and bandit.md into `out`; returns the markdown's path."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "bandit.json").write_text(json.dumps(summary, indent=1) + "\n")
    plotted = plot(summary, out / PLOT_NAME)
    (out / "bandit.md").write_text(markdown(summary, plotted=plotted))
    return out / "bandit.md"


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m rljax.experiments.rubric_em_bandit",
        description="RubricEM stage-chain bandit: SS-GRPO vs terminal broadcast (rubric_em.md 8.2).",
    )
    parser.add_argument("--seeds", type=int, default=20, help="report seeds 0..N-1 (default 20)")
    parser.add_argument("--steps", type=int, default=400, help="updates per run (default 400)")
    parser.add_argument("--out", type=epath.Path, default=DEFAULT_OUT, help="report folder")
    parser.add_argument(
        "--smoke", action="store_true", help="5 steps, 2 seeds, sigmas 0 and 1 (what CI runs)"
    )
    args = parser.parse_args(argv)
    if args.seeds < 1:
        parser.error(f"--seeds must be >= 1, got {args.seeds}")
    return args


def main(argv: Sequence[str] | None = None) -> epath.Path:
    """Runs the study and writes the report; returns the markdown's path."""
    args = parse_args(argv)
    seeds, steps, sigmas = args.seeds, args.steps, SIGMAS
    if args.smoke:
        seeds, steps, sigmas = 2, 5, (SIGMAS[0], SIGMAS[-1])
    start = time.time()
    summary = run_study(
        Config(steps=steps),
        seeds=list(range(seeds)),
        tuning_seeds=list(range(TUNING_SEED_OFFSET, TUNING_SEED_OFFSET + seeds)),
        sigmas=sigmas,
        learning_rates=LEARNING_RATES,
    )
    argv_text = " ".join(sys.argv[1:] if argv is None else argv)
    summary.update(
        command=f"python -m rljax.experiments.rubric_em_bandit {argv_text}".strip(),
        commit=study_report.commit(),
        wall_s=time.time() - start,
        smoke=args.smoke,
    )
    path = write_report(summary, args.out)
    print(f"wrote {path}")
    return path


if __name__ == "__main__":
    main()
