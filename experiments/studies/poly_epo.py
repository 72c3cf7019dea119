"""Poly-EPO on HiddenKey: does rewarding set-level strategy diversity keep pass@k at large k?

`python -m rljax.experiments.reproduce poly_epo` (3 seeds; designed for 90 minutes on a 2-core
CPU). poly_epo.md section 8: six strategies, each solving a hidden share of the instances (the
best alone 55%, all together 89.6%); the SFT warm start writes uniformly random strategies. A
per-response method (Dr.GRPO) should raise pass@1 towards 0.55 while its pass@k curve flattens
(the warm start overtaking it at moderate k); Poly-EPO should keep a strategy mixture and the
highest pass@k at large k.
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
from rljax.experiments import poly_epo as experiment
from rljax.experiments import presets
from rljax.experiments.studies import Study

from rljax import losses
from rljax.train.collect import sample_trajectories
from rljax.train.config import MethodSection

NAME = "poly_epo"
STEPS = 100
KS = (1, 2, 4, 8, 16, 32, 64)
MAJ_KS = (1, 4, 16, 64)
MAJ_SUBSETS = 100  # random k-subsets per instance for maj@k (poly_epo.md section 8)
PROBE_KEY = 20260  # the probe's sampling key: the same draws for every arm and seed


def config():
    """The Poly-EPO `cpu` preset (uniform-strategy SFT, 16 prompts x 8 samples, lr 1e-4, 64-token
    episodes) for 100 RL steps, eight held-out samples.

    An episode takes 22 tokens of prompt (the tokenizer is character-level) and 12 of response
    with its end token; the 32-token budget first declared cut every demonstration before its end
    token, so the warm start never stopped and every sample was malformed (now refused by
    `sft.demonstrations`)."""
    return presets.cpu(
        NAME,
        experiment.TASK,
        MethodSection(name="grpo_div", kwargs={"coef": 0.0}),
        steps=STEPS,
        learning_rate=1e-4,
        sft_steps=600,
        sft_noise=0.05,
        sft_demos=4096,
        eval_every=20,
        eval_prompts=64,
        eval_samples=8,
        checkpoint_every=20,
    )


def smoke_config():
    """Two RL steps of the same pipeline on the 2-layer smoke model (2 prompts x 8 samples: the
    n = 6 arm needs groups of at least 6), evaluated with 8 samples so pass@8 exists."""
    base = presets.smoke(
        NAME,
        experiment.TASK,
        MethodSection(name="grpo_div", kwargs={"coef": 0.0}),
        prompts=2,
        group_size=8,
    )
    return dataclasses.replace(base, train=dataclasses.replace(base.train, eval_samples=8))


def _maj(answers: list, correct: np.ndarray, k: int, rng: np.random.Generator):
    """maj@k and the winner's vote share over random k-subsets, ties broken uniformly."""
    wins, shares = [], []
    n = len(answers)
    for _ in range(MAJ_SUBSETS):
        subset = rng.choice(n, size=k, replace=False)
        votes: dict = {}
        for i in subset:
            if answers[i] is not None:
                votes.setdefault(answers[i], []).append(i)
        if not votes:
            wins.append(0.0)
            shares.append(0.0)
            continue
        top = max(len(v) for v in votes.values())
        leaders = [a for a, v in votes.items() if len(v) == top]
        winner = leaders[rng.integers(len(leaders))]
        wins.append(float(correct[votes[winner][0]]))
        shares.append(top / k)
    return float(np.mean(wins)), float(np.mean(shares))


def probe(trainer, *, smoke: bool) -> dict:
    """pass@k and maj@k curves, strategy entropy and coverage on fresh held-out instances.

    `n` samples (128; smoke 8) of each of the first instances (32; smoke 2) of the held-out
    split at the training temperature, drawn with one fixed key for every arm and seed.
    """
    instances, samples = (2, 8) if smoke else (32, 128)
    family, task_cfg = trainer.family, trainer.config.task
    tasks = [family.generate("heldout", i) for i in range(instances)]
    traj = sample_trajectories(
        trainer.policy,
        family,
        tasks,
        trainer.tokenizer,
        task_cfg,
        jax.random.key(PROBE_KEY),
        group_size=samples,
    )
    correct = np.asarray(traj.rewards).reshape(instances, samples) >= 1.0
    infos = [traj.info[i * samples : (i + 1) * samples] for i in range(instances)]
    ks = [k for k in KS if k <= samples]
    pass_at = {
        k: float(np.mean([losses.pass_at_k(samples, int(c.sum()), k) for c in correct])) for k in ks
    }
    rng = np.random.default_rng(PROBE_KEY)
    maj_ks = [k for k in MAJ_KS if k <= samples]
    maj = {k: [] for k in maj_ks}
    share = {k: [] for k in maj_ks}
    entropy, successful, degenerate = [], [], []
    for c, info in zip(correct, infos):
        answers = [i.get("answer") for i in info]
        for k in maj_ks:
            m, s = _maj(answers, c, k, rng)
            maj[k].append(m)
            share[k].append(s)
        used = [i["strategy"] for i in info if i.get("strategy") is not None]
        degenerate.append(1.0 - len(used) / samples)
        if used:
            _, counts = np.unique(used, return_counts=True)
            p = counts / counts.sum()
            entropy.append(float(-(p * np.log(p)).sum()))
        else:
            entropy.append(0.0)
        successful.append(len({i["strategy"] for i, ok in zip(info, c) if ok}))
    top = maj_ks[-1]
    return {
        "scalars": {
            **{f"pass@{k}": pass_at[k] for k in (1, 8, ks[-1])},
            f"maj@{top}": float(np.mean(maj[top])),
            f"vote_share@{top}": float(np.mean(share[top])),
            "strategy_entropy": float(np.mean(entropy)),
            "successful_strategies": float(np.mean(successful)),
            "malformed_rate": float(np.mean(degenerate)),
        },
        "curves": {
            "pass@k": {"x": ks, "y": [pass_at[k] for k in ks]},
            "maj@k": {"x": maj_ks, "y": [float(np.mean(maj[k])) for k in maj_ks]},
        },
    }


POLY_EPO = "method.name=poly_epo"
STUDY = Study(
    name=NAME,
    title="Poly-EPO on HiddenKey strategies",
    description=(
        "Eight arms fine-tune the same SFT warm start (the Poly-EPO `cpu` preset's: a 4-layer, "
        "128-wide decoder trained for 600 steps on 4,096 demonstrations of uniformly random "
        "strategies, 5% with a wrong work token) for 100 RL steps of 16 prompts x 8 samples "
        "(AdamW lr 1e-4, gradient clip 1.0, temperature 1). Held-out pass@8 (64 instances x 8) "
        "every 20 steps; the probe draws 128 samples of 32 fresh held-out instances from each "
        "final policy and from the warm start (the 'base model'). poly_epo.md section 8 expects "
        "Dr.GRPO's pass@1 to rise towards 0.55 while its pass@k flattens below the base model's at "
        "moderate k, and Poly-EPO to keep a strategy mixture and the highest pass@k at large k "
        "(the paper: up to 20% better pass@k). The judge-noise arm relabels each response's cluster "
        "at random with probability 0.2 (rewards unchanged); the SFT cache is keyed by the task "
        "section, so it trains its own warm start from the same demonstrations and seed. "
        "Outcome of the committed run (6 of the 8 arms x 3 seeds; GRPO+DIV 0.1 and the "
        "judge-noise arm were not run for lack of time): Dr.GRPO collapses to one strategy as "
        "expected: probe pass@1 0.28 -> 0.58 (the best single strategy covers 0.55), strategy "
        "entropy 1.77 -> 0.02 nats, a flat pass@k (0.58 at k = 1, 0.62 at k = 64) that the warm "
        "start overtakes from k = 4 (0.66 vs 0.60). Poly-EPO (n = 4) keeps a mixture (entropy "
        "1.50) and raises pass@1 to 0.38 while its pass@64 stays at the warm start's (0.903 vs "
        "0.906): +0.286 [+0.242, +0.329] over Dr.GRPO (46% relative, more than the paper's 'up "
        "to 20%'), but no gain in large-k coverage over the base model, and GRPO+DIV 0.5 keeps "
        "almost as much (0.897). n = 6 and the indicator variant keep all of it (0.906), n = 2 "
        "less (0.868, entropy 1.04). maj@64: Dr.GRPO 0.594 (vote share 0.98); Poly-EPO 0.624, "
        "+0.030 [-0.010, +0.070], not separated; only the indicator variant (0.673, +0.079 "
        "[+0.007, +0.151]) and n = 6 (0.656, interval includes 0) end above the warm start's "
        "0.637."
    ),
    config=config,
    smoke_config=smoke_config,
    arms={
        # Dr.GRPO (r - mean r, seq-mean-token-sum-norm, clip 0.2/0.2) written as GRPO+DIV with
        # lambda 0: the same advantages, and the diversity diagnostics logged like every arm's.
        "drgrpo": (),
        "grpo_div_0.1": ("method.kwargs={'coef': 0.1}",),
        "grpo_div_0.5": ("method.kwargs={'coef': 0.5}",),
        # Paper settings: n = 4 (all 70 subsets of 8), mean form, clip 0.2/0.28, dual clip 3.
        "poly_epo": (POLY_EPO, "method.kwargs={'set_size': 4}"),
        "poly_epo_n2": (POLY_EPO, "method.kwargs={'set_size': 2}"),
        "poly_epo_n6": (POLY_EPO, "method.kwargs={'set_size': 6}"),
        # Indicator variant: a set with fewer than two distinct valid strategies scores 0.
        "poly_epo_indicator": (POLY_EPO, "method.kwargs={'set_size': 4, 'min_clusters': 2}"),
        # Cluster-judge noise epsilon = 0.2 (epsilon 0 is the `poly_epo` arm): each response's
        # cluster is relabelled uniformly at random with probability 0.2; rewards are unchanged.
        "poly_epo_judge_noise": (
            POLY_EPO,
            "method.kwargs={'set_size': 4}",
            f"task.kwargs={ {**experiment.TASK.kwargs, 'judge_noise': 0.2}!r}",
        ),
    },
    arm_task_kwargs=("judge_noise",),
    baseline="drgrpo",
    metric="pass@8",
    target=0.85,  # set from the seed-0 warm start (pass@8 0.81) before any RL result
    diagnostics=(
        "strategy_clusters",
        "successful_strategies",
        "strategy_entropy",
        "zero_reward_positive_adv",
        "adv_abs_mean",
        "entropy",
    ),
    tuning=(
        "No arm was tuned. The shared settings (task, model, SFT, lr 1e-4, batch 16 x 8, "
        "gradient clip 1.0, 100 steps) are the Poly-EPO `cpu` preset's, fixed in the issue-21 "
        "diagnosis before this study (that diagnosis changed the SFT mixture, not the RL "
        "settings); the paper's gradient clip 0.3 for Poly-EPO was not used, so every arm has the "
        "same optimiser. Each arm's own knobs are the paper's (Poly-EPO n = 4, clip 0.2/0.28, dual "
        "clip 3; Dr.GRPO clip 0.2/0.2) or the grid of section 8 (lambda 0.1/0.5, n 2/6, "
        "indicator, judge noise epsilon 0.2). Zero tuning runs per arm. The held-out target 0.85 "
        "was set from the seed-0 warm start (pass@8 0.81) before any RL result; no arm reached "
        "it. A first attempt with 32-token episodes was stopped after one run: the demonstrations "
        "(34 tokens) were cut, the warm start never ended a response and every reward was 0."
    ),
    seeds=3,
    budget_minutes=90.0,
    probe=probe,
)
