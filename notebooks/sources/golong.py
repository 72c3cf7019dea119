# %% [markdown]
# # GoLongRL TMN-Reweight: one advantage scale per task, not per prompt
#
# Long-context RL mixes nine capabilities whose rewards live on different scales: binary exact
# match next to F1, NDCG or ROUGE-L with tiny within-group spreads. GRPO divides each prompt's
# centred rewards by that prompt's own std, which blows small spreads up to full-size
# advantages; Dr.GRPO does not divide at all and lets binary tasks dominate. TMN-Reweight
# (arXiv 2605.19577, `methods/golongrl.md`) divides by a **task-level** scale (the RMS of the
# within-prompt stds of all prompts of that reward type in the batch) and multiplies by a
# difficulty weight exp(+-(0.5 - p_hat)). Its diagnostic is the gradient-share balance: the
# coefficient of variation across tasks of the mean |advantage| (lower = more even).
#
# Part 1 runs the `smoke` preset of `experiments/golong.py` and its GRPO baseline. Part 2
# measures the diagnostic where rewards actually vary: groups of answers by the scripted expert
# (with mistakes) on all nine capabilities, scored by the real verifiers.

# %%
import matplotlib.pyplot as plt
import nbhelpers
import numpy as np
from rljax.experiments import golong

from rljax import losses
from rljax.data import token_counter
from rljax.envs import registry
from rljax.envs.longcontext import CAPABILITY_NAMES, NUM_TASKS
from rljax.train.config import apply_overrides

# %% [markdown]
# ## 1. Two short runs: TMN-Reweight and the GRPO baseline
#
# TMN-Reweight trains with DAPO dynamic sampling: groups whose rewards are all equal are dropped
# and replaced (here at most one extra batch per step, `train.max_gen_rounds=2`). A tiny model
# warm-started for a few SFT steps earns almost no reward on 150-300-token contexts, so expect
# `groups_kept` near 0: with nothing to compare inside a group, neither method has a signal. That
# is why Part 2 uses expert groups.

# %%
config = apply_overrides(
    golong.PRESETS["smoke"](),
    [
        "train.steps=2",
        "train.eval_every=0",
        "train.max_gen_rounds=2",
    ],
)
golong_trainer, golong_run = nbhelpers.train(config)
grpo_trainer, grpo_run = nbhelpers.train(nbhelpers.with_method(config, "grpo"))
fig = nbhelpers.plot_curves(
    {"TMN-Reweight": golong_run.metrics, "GRPO": grpo_run.metrics},
    ["reward", "groups_kept", "tmn_task_cv"],
    title="training curves (tmn_task_cv: the method's LONG-10 diagnostic)",
)

# %% [markdown]
# ## 2. Advantage scale per task on expert groups
#
# Two prompts per capability, eight answers each by the scripted expert with a 50% mistake rate
# (`family.expert(task, rng, noise)`), scored by each capability's own verifier. That gives the
# mix the method was designed for: 0/1 rewards on the exact-match tasks, graded ones on the
# others. Context lengths count the policy's tokens, as in training: the families get the
# trainer's tokenizer counter.

# %%
G, PER_TASK, NOISE = 8, 2, 0.5
rng = np.random.default_rng(0)
count_tokens = token_counter(golong_trainer.tokenizer)
rewards, task_ids = [], []
for name in CAPABILITY_NAMES:
    family = registry.make(f"longcontext/{name}", **config.task.kwargs, count_tokens=count_tokens)
    for index in range(PER_TASK):
        task = family.generate("train", index)
        answers = [family.expert(task, rng, NOISE) for _ in range(G)]
        rewards.append([family.verify(task, answer).reward for answer in answers])
        task_ids.append(task.task_id)
rewards, task_ids = np.asarray(rewards, np.float32), np.asarray(task_ids, np.int32)
print(np.round(rewards, 2))

# %% [markdown]
# Four estimators on the same rewards: GRPO (per-prompt std), Dr.GRPO (centring only), TMN
# (task-level scale) and TMN-Reweight (alpha = 0.8, the method's default). For each task, M_j is
# the mean |A| over its responses; `losses.task_advantage_cv` is the coefficient of variation of
# M_j across tasks. Groups with all-equal rewards are masked out as dynamic sampling would.

# %%
keep = np.asarray(losses.dynamic_sampling_mask(rewards))
estimators = {
    "GRPO": losses.group_advantages(rewards),
    "Dr.GRPO": losses.group_advantages(rewards, scale="none"),
    "TMN": losses.tmn_advantages(rewards, task_ids, num_tasks=NUM_TASKS, group_mask=keep),
    "TMN-Reweight": losses.tmn_reweight_advantages(
        rewards, task_ids, num_tasks=NUM_TASKS, alpha=0.8, group_mask=keep
    ),
}
fig, ax = plt.subplots(figsize=(11, 3.2))
width = 0.8 / len(estimators)
present = sorted(set(task_ids[keep].tolist()))
for index, (label, adv) in enumerate(estimators.items()):
    adv = np.asarray(adv)
    per_task = [np.abs(adv[keep & (task_ids == j)]).mean() for j in present]
    cv = float(losses.task_advantage_cv(adv, task_ids, num_tasks=NUM_TASKS, group_mask=keep))
    ax.bar(
        np.arange(len(present)) + (index - 1.5) * width,
        per_task,
        width=width,
        label=f"{label} (CV {cv:.2f})",
    )
    print(f"{label:13s} cross-task CV of mean |A| = {cv:.3f}")
ax.set_xticks(
    np.arange(len(present)), [CAPABILITY_NAMES[j] for j in present], rotation=20, fontsize=8
)
ax.set_ylabel("mean |advantage|  (M_j)")
ax.legend(fontsize=8, ncols=4, loc="lower center", bbox_to_anchor=(0.5, 1.0))
fig.tight_layout()

# %% [markdown]
# Across tasks, GRPO and TMN both bring every task to a similar scale, unlike Dr.GRPO, whose
# binary tasks dominate. They differ inside a task. GRPO rescales every prompt to unit spread,
# so a prompt whose answers all score 0.9-1.0 gets advantages as large as a 0-or-1 prompt; TMN
# measures the spread over the task's prompts, so such a prompt keeps small advantages, and the
# difficulty weight then amplifies the rare successes of hard prompts and the rare failures of
# easy ones. (The method's `prepare` computes exactly these TMN-Reweight advantages in training
# and logs their CV as `tmn_task_cv`.) Grey rows are groups dynamic sampling would drop.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 3.6), sharey=True, layout="constrained")
limit = max(np.abs(np.asarray(estimators[k])[keep]).max() for k in ("GRPO", "TMN-Reweight"))
for ax, label in zip(axes, ("GRPO", "TMN-Reweight")):
    image = ax.imshow(
        np.where(keep[:, None], np.asarray(estimators[label]), np.nan),
        cmap="RdBu_r",
        vmin=-limit,
        vmax=limit,
        aspect="auto",
    )
    ax.set_title(label)
    ax.set_xlabel("sample g")
axes[0].set_yticks(
    np.arange(len(task_ids)),
    [f"{CAPABILITY_NAMES[j]} #{i % PER_TASK}" for i, j in enumerate(task_ids)],
    fontsize=7,
)
fig.colorbar(image, ax=axes, label="advantage")
