# %% [markdown]
# # Poly-EPO: credit for sets of answers that cover different strategies
#
# Per-response RL collapses onto the strategy that works most often, and pass@k at large k
# suffers. Poly-EPO (arXiv 2604.17654, `methods/poly_epo.md`) scores every set of n = 4 of the
# G = 8 samples of a prompt by (mean reward) x (fraction of distinct strategy clusters), and
# credits each sample with the mean set advantage of the 35 sets that contain it. A wrong answer
# that brings a new strategy to correct set-mates can earn positive credit.
#
# The task is HiddenKey: the response names a strategy `[S_s]` (s = 1..6) and one work token;
# each strategy secretly works on a different share of the instances (55% for s = 1 down to 15%
# for s = 6), so covering several strategies pays off at large k. We train a tiny model with the
# `smoke` preset of `experiments/poly_epo.py` (groups of 8, one work token, a longer SFT warm
# start on uniformly random strategies), once with Poly-EPO and once with GRPO, and compare the
# paper's diagnostics: strategy coverage and pass@k.

# %%
import matplotlib.pyplot as plt
import nbhelpers
import numpy as np
from rljax.experiments import poly_epo

from rljax import losses
from rljax.train.batches import cluster_ids
from rljax.train.config import apply_overrides

# %% [markdown]
# ## 1. Two short runs: Poly-EPO and the GRPO baseline
#
# Both evaluate 8 samples on each of 8 held-out prompts before and after training, so
# `eval.jsonl` holds pass@1..8.

# %%
config = apply_overrides(
    poly_epo.PRESETS["smoke"](),
    [
        "task.kwargs.work_tokens=1",
        "task.prompts_per_step=2",
        "task.group_size=8",
        "sft.steps=1000",
        "sft.num_demos=1024",
        "sft.batch_size=32",
        "train.steps=4",
        "train.eval_every=0",
        "train.eval_prompts=8",
        "train.eval_samples=8",
    ],
)
poly_trainer, poly_run = nbhelpers.train(config)
grpo_trainer, grpo_run = nbhelpers.train(nbhelpers.with_method(config, "grpo"))
fig = nbhelpers.plot_curves(
    {"Poly-EPO": poly_run.metrics, "GRPO": grpo_run.metrics},
    ["reward", "strategy_clusters", "adv_abs_mean"],
    title="training curves (strategy_clusters: distinct valid strategies per group)",
)

# %%
ks = [k for k in (1, 2, 4, 8) if f"pass@{k}" in poly_run.evals[-1]]
fig, ax = plt.subplots(figsize=(5, 3))
ax.plot(ks, [poly_run.evals[0][f"pass@{k}"] for k in ks], "k--", marker="o", label="warm start")
for label, run in (("GRPO", grpo_run), ("Poly-EPO", poly_run)):
    ax.plot(ks, [run.evals[-1][f"pass@{k}"] for k in ks], marker="o", label=label)
ax.set_xscale("log", base=2)
ax.set_xticks(ks, [str(k) for k in ks])
ax.set_xlabel("k")
ax.set_ylabel("held-out pass@k")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 2. Strategy coverage
#
# 8 samples on each of 8 held-out prompts from each policy. `Verdict.info["cluster"]` holds the
# strategy the verifier parsed (-1 for a malformed response); `rljax.train.batches.cluster_ids` reads it for
# the trainer's `PrepareInputs.cluster_ids`. The paper tracks the number of distinct strategies
# among a prompt's samples, and among its *correct* samples.

# %%
coverage = {}
for label, trainer in (("GRPO", grpo_trainer), ("Poly-EPO", poly_trainer)):
    traj, _, _ = nbhelpers.rollout_batch(trainer, num_prompts=8, seed=1)
    rewards = traj.rewards_by_group(config.task.group_size)  # [P, G]
    clusters = cluster_ids(traj).reshape(rewards.shape)  # [P, G]
    distinct = [len(set(c[c >= 0])) for c in clusters]
    solved = [len(set(c[(c >= 0) & (r > 0)])) for c, r in zip(clusters, rewards)]
    coverage[label] = (clusters, rewards)
    print(
        f"{label:8s} reward {rewards.mean():.3f} | distinct strategies per prompt "
        f"{np.mean(distinct):.2f} | distinct successful strategies {np.mean(solved):.2f} | "
        f"malformed {np.mean(clusters < 0):.2f}"
    )

fig, ax = plt.subplots(figsize=(6, 3))
strategies = np.arange(-1, poly_trainer.family.num_strategies + 1)
for offset, (label, (clusters, _)) in zip((-0.2, 0.2), coverage.items()):
    ax.bar(strategies + offset, [(clusters == s).sum() for s in strategies], width=0.4, label=label)
ax.set_xticks(strategies, ["malformed"] + [f"S_{s}" for s in strategies[1:]])
ax.set_ylabel("samples")
ax.legend()
fig.tight_layout()

# %% [markdown]
# ## 3. Set credit vs GRPO credit on the same groups
#
# On the Poly-EPO policy's batch: `losses.poly_epo_advantages` (the method's `prepare` computes
# the same) against GRPO's z-scores, one bar per sample, grouped by prompt. Poly-EPO's
# advantages are not std-normalised (about ten times smaller); a wrong sample with a positive
# Poly-EPO advantage is exploration that GRPO would have punished.

# %%
clusters, rewards = coverage["Poly-EPO"]
adv_poly = np.asarray(losses.poly_epo_advantages(rewards, clusters, set_size=4))
adv_grpo = np.asarray(losses.group_advantages(rewards))
np.testing.assert_allclose(adv_poly.sum(1), 0.0, atol=1e-5)  # mean form sums to 0
wrong = rewards == 0
print(
    f"wrong samples with a positive advantage: Poly-EPO {np.mean(adv_poly[wrong] > 1e-6):.2f}, "
    f"GRPO {np.mean(adv_grpo[wrong] > 1e-6):.2f}"
)
fig = nbhelpers.plot_response_credit(
    {"GRPO / 10": adv_grpo.reshape(-1) / 10, "Poly-EPO": adv_poly.reshape(-1)},
    group_size=config.task.group_size,
    ylabel="advantage",
    title="per-sample advantage (GRPO scaled down 10x)",
)
